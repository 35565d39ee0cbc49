#!/usr/bin/env bash
# lowbit serve end to end (see cli_serve.py): curl, raw sockets, the openai npm client and the chat
# page in headless Chromium (tests/node; .ci/run installs its packages with npm ci).
exec timeout 300 /usr/bin/python3 "$(dirname "$0")/cli_serve.py" "$1" "$2"
