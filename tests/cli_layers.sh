#!/usr/bin/env bash
# Layers point down and liblowbit.so exports only lowbit.h (tests/layers.py); $1 is the lowbit
# binary, whose folder holds liblowbit.so.
exec /usr/bin/python3 "$(dirname "$0")/layers.py" "$(dirname "$0")/.." "$(dirname "$1")"
