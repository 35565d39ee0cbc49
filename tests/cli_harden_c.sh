#!/usr/bin/env bash
# Hardening part C: format detection, GGUF strings (see cli_harden_c.py).
exec /usr/bin/python3 "$(dirname "$0")/cli_harden_c.py" "$1" "$2"
