#!/usr/bin/env bash
# Hardening part D: NaN weights at every CPU level, KV defaults and budget note, tokenizer-less
# conversions, long prompts, overlapping tensor data (see cli_harden_d.py).
exec /usr/bin/python3 "$(dirname "$0")/cli_harden_d.py" "$1" "$2"
