#!/usr/bin/env bash
# lowbit pull / -m hf:// against a fake Hub on loopback (see cli_hub.py).
exec /usr/bin/python3 "$(dirname "$0")/cli_hub.py" "$1" "$2"
