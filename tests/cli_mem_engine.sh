#!/bin/bash
# lowbit run/bench memory options (see cli_mem_engine.py). usage: cli_mem_engine.sh LOWBIT_BINARY [SHARED_DIR]
exec /usr/bin/python3 "$(dirname "$0")/cli_mem_engine.py" "$@"
