#!/usr/bin/env bash
# The full test suite: a release build and an AddressSanitizer + UBSan build, each running every
# CTest (unit tests, CLI end-to-end tests against ../shared/reference, Python package tests).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
passed=0
failed=0
for variant in release asan; do
  dir=build-test-$variant
  if [ "$variant" = asan ]; then flags="-DLOWBIT_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo"; else flags="-DCMAKE_BUILD_TYPE=Release"; fi
  echo "== $variant build"
  cmake -S . -B "$dir" $flags >/dev/null
  if cmake --build "$dir" -j"$jobs" 2>&1 | grep -E "(warning|error):"; then echo "build produced warnings or errors"; exit 1; fi
  cmake --build "$dir" -j"$jobs" >/dev/null
  echo "== $variant tests"
  rc=0
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$dir" --output-on-failure -j"$jobs" | tee "$dir/ctest.log" || rc=1
  total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$dir/ctest.log")
  bad=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of.*/\1/p' "$dir/ctest.log")
  passed=$((passed + ${total:-0} - ${bad:-0}))
  failed=$((failed + ${bad:-0}))
  if [ "$rc" != 0 ] || [ -z "$total" ]; then echo "tests: $passed passed, $((failed > 0 ? failed : 1)) failed"; exit 1; fi
done

# The CUDA backend: built (never run: no GPU here) where nvcc exists, sm_90 only to keep it short,
# with the same rule that any warning fails the suite.
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "== cuda build (no run)"
  PATH="$PATH:/usr/local/cuda/bin" cmake -S . -B build-test-cuda -DLOWBIT_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES=90-real >/dev/null
  if cmake --build build-test-cuda -j"$jobs" --target lowbit_cli test_cuda cuda_bandwidth 2>&1 | grep -E "(warning|error)[: ]"; then
    echo "cuda build produced warnings or errors"; echo "tests: $passed passed, $((failed + 1)) failed"; exit 1
  fi
  passed=$((passed + 1))
fi

# Fuzz targets: build with clang + libFuzzer and run each for a few seconds, so the harnesses
# keep compiling and the parsers get a short smoke fuzz on every run.
if command -v clang >/dev/null; then
  echo "== fuzz smoke"
  CC=clang cmake -S . -B build-test-fuzz -DLOWBIT_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build-test-fuzz -j"$jobs" >/dev/null
  for f in build-test-fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    # a target's checked-in seeds (fuzz/seeds_NAME) start its corpus, so the short run reaches
    # past the first checks; new inputs go to a scratch folder, never into the source tree
    name=$(basename "$f"); seeds="fuzz/seeds_${name#fuzz_}"; corpus="$f.corpus"
    rm -rf "$corpus"; mkdir -p "$corpus"
    dict=""; [ -f "fuzz/${name#fuzz_}.dict" ] && dict="-dict=fuzz/${name#fuzz_}.dict"
    [ -d "$seeds" ] || seeds=""
    "$f" -max_total_time=5 -rss_limit_mb=2048 $dict "$corpus" $seeds >/dev/null 2>"$f.log" || { echo "$(basename "$f") found a crash:"; tail -30 "$f.log"; echo "tests: $passed passed, $((failed + 1)) failed"; exit 1; }
    echo "$name: $(grep -o 'Done [0-9]* runs' "$f.log")${seeds:+ (seeds: $seeds)}"
    passed=$((passed + 1))
  done
fi
# one closing line for both builds' CTests and the fuzz smoke runs
echo "tests: $passed passed, $failed failed"
