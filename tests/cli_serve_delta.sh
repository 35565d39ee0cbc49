#!/usr/bin/env bash
# serve --delta under --mem-budget (see cli_serve_delta.py).
exec /usr/bin/python3 "$(dirname "$0")/cli_serve_delta.py" "$1" "$2"
