#!/usr/bin/env bash
# lowbit serve --lookup end to end with curl (see cli_serve_spec.py).
exec timeout 600 /usr/bin/python3 "$(dirname "$0")/cli_serve_spec.py" "$1" "$2"
