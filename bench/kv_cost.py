#!/usr/bin/env python3
"""The cost of each KV cache type on a model: perplexity and KL against the exact (F32) cache
over a text (`lowbit perplexity --kv-type T --kl-base MODEL`, deterministic), and the bytes per
token of the cache (`lowbit run --mem-report`). Prints a markdown table.
Usage: bench/kv_cost.py LOWBIT MODEL TEXT [-c 256]"""
import argparse
import json
import re
import subprocess

ap = argparse.ArgumentParser()
ap.add_argument("lowbit")
ap.add_argument("model")
ap.add_argument("text")
ap.add_argument("-c", type=int, default=256)
a = ap.parse_args()


def run(*args):
    r = subprocess.run([a.lowbit, *args], capture_output=True, text=True, check=True)
    return r.stdout, r.stderr


rows = []
for kv in ("f32", "f16", "q8_0", "q4_0"):
    out, _ = run("perplexity", "-m", a.model, "-f", a.text, "-c", str(a.c), "--kv-type", kv, "--kl-base", a.model, "--json")
    _, err = run("run", "-m", a.model, "-p", "hi", "-n", "1", "-c", "64", "--kv-type", kv, "--mem-report")
    m = re.search(r"tokens x (\d+) bytes", err)
    rows.append((kv, int(m.group(1)) if m else 0, json.loads(out)))
f16 = dict((r[0], r[1]) for r in rows)["f16"]
print("| KV type | bytes / token (all layers, K+V) | vs f16 | perplexity | KL(f32 cache ‖ this), nats/token | same top token |")
print("|---|---|---|---|---|---|")
for kv, b, p in rows:
    print("| %s | %s | %s | %.4f | %.3g | %.2f%% |" % (kv, f"{b:,}", "%.2fx" % (b / f16) if f16 else "-", p["ppl"], p["kl"],
                                                 100 * p["top1"]))
