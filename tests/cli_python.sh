#!/usr/bin/env bash
# Python package tests (python/tests, pytest + numpy from Debian) against the liblowbit.so that
# sits next to the CLI binary in the build folder. Usage: cli_python.sh LOWBIT_BINARY SHARED_DIR
set -euo pipefail
bin=$(readlink -f "$1")
repo=$(cd "$(dirname "$0")/.." && pwd)
lib="$(dirname "$bin")/liblowbit.so"
[ -f "$lib" ] || { echo "cli_python: no $lib next to $bin" >&2; exit 1; }
export LOWBIT_LIBRARY="$lib" LOWBIT_BINARY="$bin" LOWBIT_SHARED="$2"
py=/usr/bin/python3
"$py" -c "import numpy, pytest" || { echo "cli_python: $py lacks numpy or pytest (apt-get install python3-numpy python3-pytest)" >&2; exit 1; }
# A sanitizer build of the library only loads into python with its runtimes preloaded; python
# itself leaks by design, so leak checking is off there.
if ldd "$lib" | grep libasan >/dev/null; then
  cc=$(command -v gcc || command -v cc)
  for rt in libasan.so libubsan.so; do
    if ldd "$lib" | grep "${rt%.so}" >/dev/null; then
      f=$("$cc" -print-file-name="$rt")
      [ -f "$f" ] || f=$(ldd "$lib" | awk -v r="${rt%.so}" '$1 ~ r {print $3}')
      LD_PRELOAD="${LD_PRELOAD:+$LD_PRELOAD:}$f"
    fi
  done
  export LD_PRELOAD
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi
cd "$repo"
# -p no:cacheprovider: nothing written into the source tree
"$py" -m pytest -q -p no:cacheprovider -rs python/tests
