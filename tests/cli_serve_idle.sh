#!/usr/bin/env bash
# An idle lowbit serve uses no CPU, alone or beside a busy one (see cli_serve_idle.py).
exec timeout 600 /usr/bin/python3 "$(dirname "$0")/cli_serve_idle.py" "$1" "$2"
