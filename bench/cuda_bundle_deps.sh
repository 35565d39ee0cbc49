#!/usr/bin/env bash
# Run HERE (the build machine) before bench/cuda_device.sh goes to a GPU machine that may lack
# the -dev packages: copies the headers and libraries lowbit links (from this machine's Debian
# packages) and the stories260K model the CUDA test reads into bench/cuda_deps/, which is left
# untracked (never committed: third-party files) but travels with the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
d=bench/cuda_deps
rm -rf "$d"
mkdir -p "$d/include/cjson" "$d/lib" "$d/models/stories260K-gguf"
for h in lz4.h lz4hc.h lz4frame.h pcre2.h xxhash.h xxh3.h zstd.h zstd_errors.h; do cp "/usr/include/$h" "$d/include/"; done
cp /usr/include/cjson/cJSON.h "$d/include/cjson/"
L=/usr/lib/x86_64-linux-gnu
for a in libpcre2-8.a libzstd.a liblz4.a libxxhash.a; do cp "$L/$a" "$d/lib/"; done
# no static cJSON in Debian: the shared library (needs only libc), found through an rpath
# (plain copies, no symlinks: the copy to the GPU machine may drop links)
cp "$(readlink -f "$L/libcjson.so.1")" "$d/lib/libcjson.so.1"
cp "$d/lib/libcjson.so.1" "$d/lib/libcjson.so"
shared=${LB_SHARED_DIR:-../shared}
cp "$shared/models/stories260K-gguf/stories260K.gguf" "$d/models/stories260K-gguf/"
du -sh "$d"
