#!/usr/bin/env bash
# Run ON the GPU machine from the repository root: builds with -DLOWBIT_CUDA=ON, runs the CUDA
# test (every op and whole models against the CPU backend), probes the device's bandwidth and
# benchmarks synth llama-1b / llama-7b in F16, Q8_0 and Q4_0 with `lowbit bench --device cuda`
# (LB_CUDA_PRESETS picks the presets; with LLAMA_BENCH=path, the peer's llama-bench runs on each file too;
# with LB_CUDA_BASE=dir, another lowbit source tree (say main's) is built too and benched on the same
# files, alternated with this one, LB_CUDA_ROUNDS=1|2 rounds: before and after in one lease;
# LB_CUDA_TEST=0 skips test_cuda, LB_CUDA_MV=0 the kernel sweep below; LB_CUDA_GRAPH_AB=1 benches
# this tree with LOWBIT_CUDA_GRAPH=0 and =1 alternated, the step's CUDA graphs off and on, and
# LB_CUDA_AB=VAR does the same for any such switch, e.g. LOWBIT_CUDA_ATTN;
# LB_CUDA_PROFILE=1 adds LOWBIT_CUDA_PROFILE=1 and =ops decode runs of each file: prof.txt).
# bench/cuda_mv.cu times the matrix-vector kernels alone on the models' shapes (mv.txt).
# Everything it prints goes to $OUT (at most 8 files). Without cmake, or without the -dev
# packages, it compiles with plain gcc/nvcc lines against bench/cuda_deps (made on the build
# machine by bench/cuda_bundle_deps.sh) and leaves out the HTTP server. Budget: under 9 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/lowbit-cuda-out}
mkdir -p "$OUT"
T0=$SECONDS
LIMIT=${LB_CUDA_LIMIT_S:-510}
JOBS=$(nproc)
B=build-cuda
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PATH="$CUDA_HOME/bin:$PATH"
log() { echo "[$((SECONDS - T0))s] $*" | tee -a "$OUT/summary.txt"; }
left() { echo $((LIMIT - (SECONDS - T0))); }

{ nvidia-smi 2>&1; nvcc --version 2>&1; gcc --version 2>&1 | head -1; cmake --version 2>&1 | head -1; } > "$OUT/env.txt"
deps="libcjson libpcre2-8 libzstd liblz4 libmicrohttpd"
DEPS=$PWD/bench/cuda_deps
SHARED_DIR=$DEPS # where test_cuda finds models/stories260K-gguf
for d in ../shared shared; do
  [ -f "$d/models/stories260K-gguf/stories260K.gguf" ] && { SHARED_DIR=$(cd "$d" && pwd); break; }
done

build_cmake() {
  cmake -S . -B "$B" -DLOWBIT_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="90-real;90-virtual" \
    -DLB_SHARED_DIR="$SHARED_DIR" &&
    cmake --build "$B" -j"$JOBS" --target lowbit_cli test_cuda cuda_bandwidth
}

# The same build as plain compile lines: library, CLI without the server, test, probe.
build_plain() {
  local D=$DEPS inc lib
  if [ -d "$D/include" ]; then inc="-I$D/include"; lib="$D/lib/libpcre2-8.a $D/lib/libzstd.a $D/lib/liblz4.a $D/lib/libxxhash.a -L$D/lib -lcjson -Wl,-rpath,$D/lib"
  else inc=""; lib="-lpcre2-8 -lzstd -llz4 -lxxhash -lcjson"; fi
  mkdir -p "$B/plain" && rm -f "$B"/plain/*.o
  local CF="-std=c11 -O2 -D_GNU_SOURCE -DLOWBIT_CUDA -fPIC -Iinclude -Isrc -I$CUDA_HOME/include $inc"
  local NF="-O3 -std=c++17 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 -Iinclude -Isrc"
  export CF NF B
  # the Hub client needs libcurl and libcrypto headers the GPU machine may lack: stubbed here
  # (the CLI says so), as the server is
  printf '#include "lowbit.h"\nlb_hub_params lb_hub_default_params(void) { lb_hub_params p = {0}; p.offline = -1; return p; }\nint lb_hub_is_ref(const char *s) { return s && !__builtin_strncmp(s, "hf://", 5); }\nlb_status lb_hub_resolve(const char *r, const lb_hub_params *p, char **o, lb_error *e) { (void)p; *o = 0; return lb_fail(e, LB_ERR_UNSUPPORTED, "%%s: built without the Hub client", r); }\n' > "$B/hub_stub.c"
  gcc $CF -c "$B/hub_stub.c" -o "$B/plain/hub_stub.o" || return 1
  find src -name '*.c' | grep -v '/io/hub' | sort | xargs -P "$JOBS" -I{} sh -c '
    f={}; o="$B/plain/$(echo "$f" | tr / _).o"; x=""
    case "$f" in *_avx2.c) x="-mavx2 -mfma -mf16c";; *_avx512.c) x="-mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 -mavx2 -mfma -mf16c";; esac
    gcc $CF $x -c "$f" -o "$o"' || return 1
  for f in src/kernels/cuda/*.cu; do nvcc $NF -c "$f" -o "$B/plain/$(echo "$f" | tr / _).o" & done
  wait || return 1
  ls "$B"/plain/src_kernels_cuda_*.cu.o >/dev/null || return 1
  ar rcs "$B/liblowbit.a" "$B"/plain/*.o || return 1
  printf '#include <stdio.h>\nint cmd_serve(int c, char **v) { (void)c; (void)v; fputs("lowbit: built without the server\\n", stderr); return 1; }\n' > "$B/serve_stub.c"
  local LL="$B/liblowbit.a $lib -L$CUDA_HOME/lib64 -lcublas -lcudart -Wl,-rpath,$CUDA_HOME/lib64 -lstdc++ -lpthread -lm -ldl -lrt"
  gcc $CF -Itools/lowbit $(ls tools/lowbit/*.c | grep -v '/serve') "$B/serve_stub.c" -o "$B/lowbit" $LL &&
    gcc $CF -Itests -DLB_SHARED_DIR="\"$SHARED_DIR\"" -DLB_BUILD_DIR="\"$B\"" tests/cuda/test_cuda.c -o "$B/test_cuda" $LL &&
    nvcc -O3 -gencode arch=compute_90,code=sm_90 bench/cuda_bandwidth.cu -o "$B/cuda_bandwidth"
}

# cmake where it and the -dev packages are there, else the plain lines; in the current directory
build_tree() {
  if [ -z "${LB_CUDA_PLAIN:-}" ] && command -v cmake >/dev/null && pkg-config --exists $deps 2>/dev/null; then
    build_cmake && return 0
  else
    echo "no cmake or no -dev packages ($deps): plain build"
  fi
  build_plain
}

log "build (cmake: $(command -v cmake || echo none))"
BASE=${LB_CUDA_BASE:+$(cd "$LB_CUDA_BASE" && pwd)}
[ -n "$BASE" ] && { (cd "$BASE" && build_tree) > "$OUT/build_base.log" 2>&1 & }
build_tree > "$OUT/build.log" 2>&1 || { log "build FAILED (see build.log)"; tail -30 "$OUT/build.log"; exit 1; }
nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 -Isrc -Iinclude bench/cuda_mv.cu src/kernels/cuda/matmul.cu \
  -o "$B/cuda_mv" >> "$OUT/build.log" 2>&1 || log "cuda_mv build failed"
if [ -n "$BASE" ]; then
  wait || true
  cat "$OUT/build_base.log" >> "$OUT/build.log" && rm -f "$OUT/build_base.log"
  [ -x "$BASE/$B/lowbit" ] || { log "base build FAILED"; BASE=; }
fi
log "build done"

log "device bandwidth probe"
timeout 60 "$B/cuda_bandwidth" 2>&1 | tee -a "$OUT/summary.txt"

if [ "${LB_CUDA_MV:-1}" != 0 ]; then
  log "matrix-vector kernels alone"
  timeout 90 "$B/cuda_mv" > "$OUT/mv.txt" 2>&1 || log "cuda_mv rc=$?"
fi

if [ "${LB_CUDA_TEST:-1}" != 0 ]; then
  log "test_cuda"
  timeout 180 "$B/test_cuda" > "$OUT/test_cuda.log" 2>&1
  rc=$?
  log "test_cuda rc=$rc: $(tail -1 "$OUT/test_cuda.log")"
  grep -E "^FAIL|greedy ids equal" "$OUT/test_cuda.log" | head -40 | tee -a "$OUT/summary.txt"
  if [ "$rc" != 0 ]; then # the tiled prompt attention is the newest kernel: without it, the benches run on tested code
    LOWBIT_CUDA_ATTN=0 timeout 180 "$B/test_cuda" > "$OUT/test_cuda_attn0.log" 2>&1 &&
      { export LOWBIT_CUDA_ATTN=0; log "test_cuda passes with LOWBIT_CUDA_ATTN=0: benches run with it"; } ||
      log "test_cuda fails with LOWBIT_CUDA_ATTN=0 too: $(tail -1 "$OUT/test_cuda_attn0.log")"
  fi
fi

LB="$B/lowbit"
M=/tmp/lowbit-cuda-models
mkdir -p "$M"
lb_bench() { # binary file label [VAR=value for its environment]
  local s=$(left)
  [ "$s" -gt 20 ] || { log "skip bench $3: time"; return; }
  log "bench $3"
  timeout $((s - 5)) env ${4:-LB_CUDA_NONE=1} "$1" bench -m "$2" --device cuda -p 512 -n 128 -r 3 > "$M/bench.txt" 2>&1 || log "bench $3 failed rc=$?"
  cat "$M/bench.txt" >> "$OUT/bench.log"
  grep -E "prompt:|generation:|lowbit:" "$M/bench.txt" | sed "s|^|  $3 |" | tee -a "$OUT/summary.txt"
}
bench_one() { # file label: this tree's lowbit, alternated with the base tree's when there is one
  local ab=${LB_CUDA_AB:-${LB_CUDA_GRAPH_AB:+LOWBIT_CUDA_GRAPH}}
  if [ -n "$ab" ]; then
    lb_bench "$LB" "$1" "$ab=0 $2" "$ab=0"; lb_bench "$LB" "$1" "$ab=1 $2" "$ab=1"
    [ "${LB_CUDA_ROUNDS:-2}" = 1 ] || { lb_bench "$LB" "$1" "$ab=1 $2" "$ab=1"; lb_bench "$LB" "$1" "$ab=0 $2" "$ab=0"; }
  elif [ -n "$BASE" ]; then
    lb_bench "$BASE/$B/lowbit" "$1" "base $2"; lb_bench "$LB" "$1" "new $2"
    [ "${LB_CUDA_ROUNDS:-2}" = 1 ] || { lb_bench "$LB" "$1" "new $2"; lb_bench "$BASE/$B/lowbit" "$1" "base $2"; }
  else
    lb_bench "$LB" "$1" "$2"
  fi
  if [ -n "${LB_CUDA_PROFILE:-}" ] && [ "$(left)" -gt 40 ]; then # where a decode step's time goes (prof.txt)
    for m in "1 -p 0 -n 64" "ops -p 0 -n 64" "ops -p 512 -n 0"; do
      echo "== $2 LOWBIT_CUDA_PROFILE=$m" >> "$OUT/prof.txt"
      read -r mode args <<< "$m"
      timeout 60 env LOWBIT_CUDA_PROFILE="$mode" "$LB" bench -m "$1" --device cuda $args -r 1 >> "$OUT/prof.txt" 2>&1 || log "profile $m rc=$?"
    done
  fi
  [ -n "${LLAMA_BENCH:-}" ] || return 0
  # the peer may still be building beside this script (LLAMA_BENCH names where it will be)
  while [ ! -x "$LLAMA_BENCH" ] && [ "$(left)" -gt 60 ]; do sleep 5; done
  [ -x "$LLAMA_BENCH" ] || { log "skip peer $2: $LLAMA_BENCH not built"; return; }
  # the peer on the same file right after (alternated per model), its own median-free mean of 3
  s=$(left); [ "$s" -gt 20 ] || { log "skip peer $2: time"; return; }
  log "peer bench $2"
  timeout $((s - 5)) "$LLAMA_BENCH" -m "$1" -ngl 99 -p 512 -n 128 -r 3 -o md > "$M/peer.txt" 2>> "$OUT/bench.log" || log "peer bench $2 failed rc=$?"
  cat "$M/peer.txt" >> "$OUT/bench.log"
  grep -E "pp512|tg128" "$M/peer.txt" | sed "s|^|  peer $2 |" | tee -a "$OUT/summary.txt"
}
for preset in ${LB_CUDA_PRESETS:-llama-1b llama-7b}; do
  [ "$(left)" -gt 60 ] || { log "skip $preset: time"; continue; }
  log "synth $preset f16"
  timeout $(($(left) - 10)) "$LB" synth --preset "$preset" --dtype f16 -o "$M/$preset-f16.gguf" > /dev/null 2>> "$OUT/bench.log" || { log "synth $preset failed"; continue; }
  echo "== $preset f16" >> "$OUT/bench.log"
  bench_one "$M/$preset-f16.gguf" "$preset-f16"
  if [ -n "${LB_CUDA_NSYS:-}" ]; then # where the decode step's GPU time goes (nsys.txt)
    NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
    if [ -n "$NSYS" ]; then
      log "nsys $preset-f16"
      timeout 120 "$NSYS" profile -t cuda -o "$M/prof" --force-overwrite true --stats=true \
        "$LB" bench -m "$M/$preset-f16.gguf" --device cuda -p 0 -n 64 -r 1 > "$OUT/nsys.txt" 2>&1 || log "nsys rc=$?"
    else log "no nsys"; fi
  fi
  for q in ${LB_CUDA_TYPES:-q8_0 q4_0}; do
    [ "$(left)" -gt 60 ] || { log "skip $preset $q: time"; continue; }
    log "quantize $preset $q"
    timeout $(($(left) - 30)) "$LB" quantize "$M/$preset-f16.gguf" "$M/$preset-$q.gguf" --type "$q" --pure -t "$JOBS" > /dev/null 2>> "$OUT/bench.log" ||
      { log "quantize $preset $q failed"; continue; }
    echo "== $preset $q" >> "$OUT/bench.log"
    bench_one "$M/$preset-$q.gguf" "$preset-$q"
    rm -f "$M/$preset-$q.gguf"
  done
  rm -f "$M/$preset-f16.gguf"
done
rm -rf "$M"
log "done in $((SECONDS - T0))s"
