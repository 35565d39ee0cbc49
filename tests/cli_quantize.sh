#!/usr/bin/env bash
# lowbit quantize end to end (see cli_quantize.py).
exec /usr/bin/python3 "$(dirname "$0")/cli_quantize.py" "$1" "$2"
