#!/usr/bin/env bash
# Hardening part B: option ranges, defaults (see cli_harden_b.py).
exec /usr/bin/python3 "$(dirname "$0")/cli_harden_b.py" "$1" "$2"
