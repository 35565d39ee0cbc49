#!/usr/bin/env bash
# Table (b) of bench/results_compress.md: lowbit compress/decompress (1 thread) vs zstd -3 / lz4 CLI
# on the same files; median of REPS runs (the machine is shared). Usage: compress_cli.sh LOWBIT REPS FILE...
L=$1; REPS=$2; shift 2
T=$(mktemp -d)
med() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
t() { local s=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc; }
echo "| file | size MB | tool | ratio | compress MB/s | decompress MB/s |"
echo "|---|---|---|---|---|---|"
for f in "$@"; do
  sz=$(stat -c %s "$f"); mb=$(echo "scale=1; $sz/1000000" | bc)
  for tool in "lbz zstd-1" "lbz lz4" "zstd -3" "lz4"; do
    c=(); d=()
    for r in $(seq "$REPS"); do
      rm -f $T/x $T/y
      case "$tool" in
        "lbz zstd-1") c+=($(t $L compress "$f" $T/x -t 1)); d+=($(t $L decompress $T/x $T/y -t 1));;
        "lbz lz4") c+=($(t $L compress "$f" $T/x -t 1 --codec lz4)); d+=($(t $L decompress $T/x $T/y -t 1));;
        "zstd -3") c+=($(t zstd -3 -q -f -T1 "$f" -o $T/x)); d+=($(t zstd -d -q -f $T/x -o $T/y));;
        "lz4") c+=($(t lz4 -q -f "$f" $T/x)); d+=($(t lz4 -d -q -f $T/x $T/y));;
      esac
    done
    cm=$(printf "%s\n" "${c[@]}" | med); dm=$(printf "%s\n" "${d[@]}" | med)
    cmp -s "$f" $T/y || echo "MISMATCH $tool $f" >&2
    printf "| %s | %s | %s | %.3f | %.0f | %.0f |\n" "$(basename $(dirname $f))/$(basename $f)" "$mb" "$tool" \
      "$(echo "$sz / $(stat -c %s $T/x)" | bc -l)" "$(echo "$sz/1000000/$cm" | bc -l)" "$(echo "$sz/1000000/$dm" | bc -l)"
  done
done
rm -rf $T
