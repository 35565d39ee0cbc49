#!/bin/bash
# lowbit run streaming weights larger than --mem-budget (see cli_stream.py). usage: cli_stream.sh LOWBIT_BINARY [SHARED_DIR]
exec /usr/bin/python3 "$(dirname "$0")/cli_stream.py" "$@"
