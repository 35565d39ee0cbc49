#!/usr/bin/env bash
# Compression (.lbz) and delta-file checks through the CLI (see cli_delta.py).
exec /usr/bin/python3 "$(dirname "$0")/cli_delta.py" "$1" "$2"
