#!/usr/bin/env bash
# test_cuda without a GPU: links tests/cuda/test_cuda.c and the backend's C files
# (src/kernels/cuda/*.c) against tests/cuda/fake_cuda.c, a CPU stand-in for the CUDA runtime,
# cuBLAS and the .cu launchers, and runs it under ASan + UBSan (FAKE_ASAN=0: without). It checks
# the backend's host logic (uploads, staging, the step's recording and graph replay, fusions'
# bookkeeping), never the CUDA kernels. Needs the CUDA headers (CUDA_HOME) and a CUDA build of
# the rest of the library: cmake -S . -B build-cuda -DLOWBIT_CUDA=ON (its C objects are reused).
# About 15 minutes on 2 loaded cores with ASan (the stand-in's kernels are plain loops).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build-cuda}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
O=$B/fake_cuda
mkdir -p "$O"
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer"
[ "${FAKE_ASAN:-1}" = 0 ] && SAN=""
CF="-std=c11 -O1 -g $SAN -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -DLOWBIT_CUDA -Iinclude -Isrc -Itests -I$CUDA_HOME/include"
objs=()
for f in src/kernels/cuda/*.c tests/cuda/fake_cuda.c; do
  o="$O/$(basename "$f" .c).o"
  gcc $CF -c "$f" -o "$o"
  objs+=("$o")
done
gcc $CF -DLB_SHARED_DIR="\"${LB_SHARED_DIR:-$(cd ../shared 2>/dev/null && pwd || echo ../shared)}\"" -DLB_BUILD_DIR="\"$B\"" \
  -c tests/cuda/test_cuda.c -o "$O/test_cuda.o"
lib=$(find "$B/CMakeFiles/lowbit_obj.dir" -name '*.c.o' | grep -v '/kernels/cuda/')
[ -n "$lib" ] || { echo "no library objects in $B: build it with -DLOWBIT_CUDA=ON first" >&2; exit 1; }
gcc $SAN -o "$O/test_cuda_fake" "$O/test_cuda.o" "${objs[@]}" $lib \
  -lpcre2-8 -lzstd -llz4 -lxxhash -lcjson -lcurl -lcrypto -lm -lpthread -ldl
"$O/test_cuda_fake"
