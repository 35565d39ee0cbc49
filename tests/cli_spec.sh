#!/usr/bin/env bash
# lowbit run --draft / --lookup against ../shared/reference (see cli_spec.py).
exec /usr/bin/python3 "$(dirname "$0")/cli_spec.py" "$1" "$2"
