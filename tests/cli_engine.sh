#!/usr/bin/env bash
# End-to-end engine checks against ../shared/reference (see e2e_engine.py).
exec /usr/bin/python3 "$(dirname "$0")/e2e_engine.py" "$1" "$2"
