#!/usr/bin/env bash
# lowbit imatrix and quantize --imatrix end to end (see cli_imatrix.py).
exec /usr/bin/python3 "$(dirname "$0")/cli_imatrix.py" "$1" "$2"
