#!/usr/bin/env bash
# Hardening reproducers of issue 11 (FIFOs, .lbz bombs and budgets, same-file and bad outputs,
# kill -9 temps, truncated-file messages) through the CLI (see cli_harden.py).
exec /usr/bin/python3 "$(dirname "$0")/cli_harden.py" "$1" "$2"
