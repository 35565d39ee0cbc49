#!/usr/bin/env bash
# lowbit quantize --gptq end to end (see cli_gptq.py).
exec /usr/bin/python3 "$(dirname "$0")/cli_gptq.py" "$1" "$2"
