#!/usr/bin/env bash
# The fine-tune's GGUF metadata through delta create/apply (see cli_delta_meta.py).
exec /usr/bin/python3 "$(dirname "$0")/cli_delta_meta.py" "$1" "$2"
