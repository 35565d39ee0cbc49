#!/usr/bin/env bash
# llama-7b speed table: synth F16, quantize to each type, bench generation (and a short prompt).
# Usage: bash bench/llama7b.sh BUILD_DIR SCRATCH_DIR   (needs ~32 GB of disk; deletes as it goes)
set -euo pipefail
B=$1; T=$2
mkdir -p "$T"
[ -f "$T/f16.gguf" ] || "$B/lowbit" synth --preset llama-7b --dtype f16 -o "$T/f16.gguf" 2>/dev/null
for ty in f16 q8_0 q4_0 q4_k tq2_0; do
  f="$T/$ty.gguf"
  if [ "$ty" != f16 ]; then
    s=$(date +%s.%N); "$B/lowbit" quantize "$T/f16.gguf" "$f" --type $ty -t 2 2>/dev/null; e=$(date +%s.%N)
    q=$(/usr/bin/python3 -c "print('%.0f' % (13.48e3 / ($e - $s) / 2))")
  else q=-; fi
  r=$("$B/lowbit" bench -m "$f" -t 2 -p 16 -n 16 -r 3 --json 2>/dev/null)
  sz=$(stat -c %s "$f")
  echo "| $ty | $(/usr/bin/python3 -c "print('%.2f GiB' % ($sz/2**30))") | $r | quantize MB/s/thread (wall, 2 threads): $q |"
  [ "$ty" != f16 ] && rm -f "$f"
done
rm -f "$T/f16.gguf"
