#!/usr/bin/env bash
# Q4_0 repacked at load into 8-row groups (src/quant/repack.h), end to end through `lowbit run`:
# at the scalar level the repacked kernel computes the plain one's results bit for bit, so the
# greedy text (and --parallel's batched text) is the same with LOWBIT_REPACK=1 and =0; the memory
# report names the repacked bytes; a prompt batched with others gets its text alone (AVX2, AVX-512, where AVX-512 repacks by default); lb_model_set_repack's fallback under a tight --mem-budget is
# in test_repack. $1: the lowbit binary, $2: the shared folder.
set -u
LB=$1
SHARED=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
check() { # name, then the command that must succeed
    local name=$1
    shift
    if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $name" >&2; fi
}

"$LB" quantize "$SHARED/models/tinystories-512d" "$T/q4.gguf" --type q4_0 >"$T/q.log" 2>&1
check "quantize tinystories-512d to Q4_0" test -s "$T/q4.gguf"
gen() { # level repack out [extra args]
    local level=$1 rp=$2 out=$3
    shift 3
    LOWBIT_CPU=$level LOWBIT_REPACK=$rp "$LB" run -m "$T/q4.gguf" -p "Once upon a time" -n 24 -t 2 "$@" >"$out" 2>"$out.err"
}
gen scalar 0 "$T/plain.txt"
gen scalar 1 "$T/r8.txt" --mem-report
check "scalar: plain layout generates" test -s "$T/plain.txt"
check "scalar: repacked text == plain text" cmp -s "$T/plain.txt" "$T/r8.txt"
check "the memory report names the repacked bytes" grep -q "Q4_0 repacked into 8-row groups" "$T/r8.txt.err"
check "the report lists Q4_0_R8 tensors" grep -q "Q4_0_R8" "$T/r8.txt.err"
gen scalar 0 "$T/plain0.txt" --mem-report
check "LOWBIT_REPACK=0: nothing repacked" bash -c "! grep -q Q4_0_R8 '$T/plain0.txt.err'"
printf 'Once upon a time\nThe cat sat\nA little girl named Lily\n' >"$T/prompts.txt"
par() { # level repack out
    LOWBIT_CPU=$1 LOWBIT_REPACK=$2 "$LB" run -m "$T/q4.gguf" -f "$T/prompts.txt" --parallel 3 -n 16 -t 2 >"$3" 2>"$3.err"
}
par scalar 0 "$T/p0.txt"
par scalar 1 "$T/p1.txt"
check "scalar batched: repacked == plain" cmp -s "$T/p0.txt" "$T/p1.txt"
check "batched output has 3 prompts" test "$(grep -c '^--- ' "$T/p1.txt")" = 3
if grep -q avx2 /proc/cpuinfo; then # the AVX2 kernel: a prompt in a batch of 3 == that prompt alone
    LOWBIT_CPU=avx2 LOWBIT_REPACK=1 "$LB" run -m "$T/q4.gguf" -p "The cat sat" -n 16 -t 2 >"$T/a1.txt" 2>/dev/null
    par avx2 1 "$T/pa.txt"
    awk '/^--- 2: /{on=1; next} /^--- /{on=0} on' "$T/pa.txt" >"$T/pa2.txt"
    check "avx2: batched text of prompt 2 == alone" cmp -s <(tr -d '\n' <"$T/a1.txt") <(tr -d '\n' <"$T/pa2.txt")
fi
if grep -q avx512_vnni /proc/cpuinfo && [ -z "${LOWBIT_CPU:-}" ]; then
    # AVX-512 repacks by default, and its kernel gives a prompt in a batch of 3 its text alone
    LOWBIT_REPACK= "$LB" run -m "$T/q4.gguf" -p "The cat sat" -n 16 -t 2 --mem-report >"$T/b1.txt" 2>"$T/b1.err"
    check "avx512: repacked by default" grep -q "Q4_0_R8" "$T/b1.err"
    LOWBIT_REPACK= "$LB" run -m "$T/q4.gguf" -f "$T/prompts.txt" --parallel 3 -n 16 -t 2 >"$T/pb.txt" 2>/dev/null
    awk '/^--- 2: /{on=1; next} /^--- /{on=0} on' "$T/pb.txt" >"$T/pb2.txt"
    check "avx512: batched text of prompt 2 == alone" cmp -s <(tr -d '\n' <"$T/b1.txt") <(tr -d '\n' <"$T/pb2.txt")
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
