#!/usr/bin/env bash
# lowbit convert and lowbit perplexity against ../shared (see cli_convert.py).
exec /usr/bin/python3 "$(dirname "$0")/cli_convert.py" "$1" "$2"
