#!/usr/bin/env bash
# Parallel decoding table: lowbit bench --parallel beside llama.cpp's llama-batched-bench on the
# same file with the same prompt/generation lengths and sequence counts, the two run alternately
# (round 1 lowbit, round 1 llama.cpp, round 2 ...) so a noisy neighbour hits both alike; the
# median of the rounds is reported. Set LLAMA_BATCHED_BENCH to the peer's binary (built outside
# this repository); without it only lowbit runs.
# Usage: bash bench/parallel.sh -m MODEL [-p 128] [-n 64] [-l 1,4,8,16,32] [-t THREADS] [-r 3]
#        [-b BUILD_DIR] [-o OUT.md]     (default OUT: bench/results_parallel.md)
set -euo pipefail
cd "$(dirname "$0")/.."
model= p=128 n=64 list=1,4,8,16,32 threads=$(nproc) rounds=3 B=build out=bench/results_parallel.md
while getopts "m:p:n:l:t:r:b:o:" o; do
  case $o in m) model=$OPTARG ;; p) p=$OPTARG ;; n) n=$OPTARG ;; l) list=$OPTARG ;; t) threads=$OPTARG ;;
    r) rounds=$OPTARG ;; b) B=$OPTARG ;; o) out=$OPTARG ;; *) sed -n 2,8p "$0"; exit 2 ;; esac
done
[ -n "$model" ] || { sed -n 2,8p "$0"; exit 2; }
[ -f "$model" ] || { echo "parallel.sh: $model: no such file" >&2; exit 1; }
peer=${LLAMA_BATCHED_BENCH:-}
[ -z "$peer" ] || [ -x "$peer" ] || { echo "parallel.sh: LLAMA_BATCHED_BENCH=$peer is not executable" >&2; exit 1; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
maxn=$(tr , '\n' <<<"$list" | sort -n | tail -1)
ctx=$((maxn * (p + n) + 64))
# read bandwidth in the same run, before and after (the table states both)
bw() { [ -x "$B/bench_bandwidth" ] && "$B/bench_bandwidth" "$threads" 2>/dev/null | sed -n "s/.*$threads threads:[[:space:]]*\([0-9.]*\) GB\/s median.*/\1/p" | head -1; }
bw0=$(bw || true)

for r in $(seq "$rounds"); do
  "$B/lowbit" bench -m "$model" -t "$threads" -p "$p" -n "$n" -r 1 --parallel "$list" --json > "$T/lowbit.$r.json"
  if [ -n "$peer" ]; then
    # its markdown rows: | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |
    "$peer" -m "$model" -t "$threads" -c "$ctx" -b 2048 -ub 512 -npp "$p" -ntg "$n" -npl "$list" \
      > "$T/peer.$r.txt" 2>"$T/peer.$r.err" || { echo "parallel.sh: llama-batched-bench failed:" >&2; tail -5 "$T/peer.$r.err" >&2; exit 1; }
  fi
done

bw1=$(bw || true)
/usr/bin/python3 - "$T" "$rounds" "$list" "$model" "$p" "$n" "$threads" "$peer" "$out" "${bw0:--}" "${bw1:--}" <<'PY'
import json, statistics, sys, subprocess, datetime, os
tmp, rounds, lst, model, p, n, threads, peer, out, bw0, bw1 = sys.argv[1:]
counts = [int(x) for x in lst.split(',')]
med = lambda v: statistics.median(v) if v else None
ours = {c: {"pp": [], "tg": []} for c in counts}
theirs = {c: {"pp": [], "tg": []} for c in counts}
kernels = ""
for r in range(1, int(rounds) + 1):
    for row in json.load(open(f"{tmp}/lowbit.{r}.json")):
        ours[row["parallel"]]["pp"].append(row["pp_tok_s"]); ours[row["parallel"]]["tg"].append(row["tg_tok_s"])
        kernels = row["kernels"]
    if peer:
        for line in open(f"{tmp}/peer.{r}.txt"):
            f = [x.strip() for x in line.strip().strip('|').split('|')]
            if len(f) == 10 and f[2].isdigit() and int(f[2]) in theirs:
                theirs[int(f[2])]["pp"].append(float(f[5])); theirs[int(f[2])]["tg"].append(float(f[7]))
flags = next((l.split(':', 1)[1].split() for l in open('/proc/cpuinfo') if l.startswith('flags')), [])
simd = ' '.join(x for x in flags if x.startswith(('avx', 'fma', 'f16c', 'amx')))
cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?')
fmt = lambda v: '-' if v is None else '%.1f' % v
with open(out, 'w') as o:
    o.write(f"Measured {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({cpu}), {threads} threads; "
            f"CPU flags: {simd}; lowbit kernels: {kernels}; read bandwidth (bench_bandwidth, {threads} threads) "
            f"{bw0} GB/s before and {bw1} after.\n")
    o.write(f"Model {os.path.basename(model)}; {p} prompt and {n} generated tokens per sequence; median of {rounds} "
            f"alternating round(s){'' if peer else '; llama-batched-bench not run (LLAMA_BATCHED_BENCH unset)'}.\n\n")
    o.write("| parallel | lowbit prompt tok/s | lowbit gen tok/s (all) | lowbit gen tok/s (per seq) | "
            "llama.cpp prompt tok/s | llama.cpp gen tok/s (all) | gen lowbit / llama.cpp |\n|---|---|---|---|---|---|---|\n")
    for c in counts:
        tg, ptg = med(ours[c]["tg"]), med(theirs[c]["tg"])
        ratio = '-' if not tg or not ptg else '%.2fx' % (tg / ptg)
        o.write(f"| {c} | {fmt(med(ours[c]['pp']))} | {fmt(tg)} | {fmt(tg / c if tg else None)} | "
                f"{fmt(med(theirs[c]['pp']))} | {fmt(ptg)} | {ratio} |\n")
PY
cat "$out"
