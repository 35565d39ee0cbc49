#!/usr/bin/env bash
# IQ4_NL / IQ4_XS interop with llama.cpp on tinystories-512d: the peer's llama-quantize files
# scored by lowbit and by llama-perplexity, and lowbit-written files scored by both.
# Usage: LLAMA_BIN=/path/to/llama.cpp/build/bin bench/iq4_interop.sh LOWBIT SHARED_DIR OUTDIR
# Prints one line per (file, tool): perplexity over 128-token windows, second halves scored.
set -euo pipefail
LOWBIT=$1 SHARED=$2 OUT=$3
: "${LLAMA_BIN:?set LLAMA_BIN to the folder holding llama-quantize and llama-perplexity}"
MODEL=$SHARED/models/tinystories-512d TEXT=$SHARED/corpus/tinystories-sampled.txt
mkdir -p "$OUT"
"$LOWBIT" quantize "$MODEL" "$OUT/f16.gguf" --type f16 >/dev/null
for t in IQ4_NL IQ4_XS; do
    "$LLAMA_BIN/llama-quantize" --pure "$OUT/f16.gguf" "$OUT/peer_$t.gguf" $t 2 >/dev/null 2>&1
    "$LOWBIT" quantize "$MODEL" "$OUT/lowbit_$t.gguf" --type "${t,,}" --pure >/dev/null
done
for f in f16 peer_IQ4_NL lowbit_IQ4_NL peer_IQ4_XS lowbit_IQ4_XS; do
    lb=$("$LOWBIT" perplexity -m "$OUT/$f.gguf" -f "$TEXT" -c 128 --kl-base "$MODEL" --json -t 1)
    peer=$("$LLAMA_BIN/llama-perplexity" -m "$OUT/$f.gguf" -f "$TEXT" -c 128 -b 128 -t 1 2>&1 |
           sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
    echo "$f lowbit=$lb llama-perplexity=$peer"
done
