#!/usr/bin/env python3
"""Side-by-side speed table: lowbit against llama.cpp's llama-bench on the same GGUF files, in one run.

Usage:
  LLAMA_BENCH=/path/to/llama-bench python3 bench/side_by_side.py [--build build] [-t 2] [-r 3]
      [--pp 64,512] [--tg 32] [--levels native,avx2] [--out FILE.md] MODEL.gguf [MODEL.gguf ...]

For every model and every round, lowbit and the peer run one after the other (the order swaps each
round, so neither always runs on a warmer or cooler machine); the table gives medians over the rounds.
Each `--levels` entry is a lowbit column: `native` lets lowbit pick its kernels, `avx2` / `scalar`
set LOWBIT_CPU to force that level, `plain` is native with LOWBIT_REPACK=0 (Q4_0 kept in the file's
layout instead of repacked into 8-row groups). The read bandwidth is measured in the same run (bench_bandwidth,
2 threads, before and after the models) and the generation floor is that bandwidth divided by the bytes
of weights read per token (every tensor but the token embedding). The peer is built outside this
repository; its binary comes from LLAMA_BENCH (LLAMA_VERSION, if set, names its version in the table).
"""
import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit("side_by_side: %s failed (%d):\n%s" % (" ".join(cmd), r.returncode, r.stderr[-2000:]))
    return r.stdout


def bandwidth(build):
    out = run([os.path.join(build, "bench_bandwidth"), "2"])
    m = re.search(r"2 threads:\s+([0-9.]+) GB/s median", out)
    return float(m.group(1))


def read_bytes(build, model):
    """Bytes of weights one generated token reads: every tensor but token_embd (one row of it)."""
    out = run([os.path.join(build, "lowbit"), "inspect", model])
    total = 0
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0].endswith(".weight") and f[0] != "token_embd.weight" and f[-1].isdigit():
            total += int(f[-1])
    return total


def lowbit_once(build, model, threads, pp, tg, level):
    env = dict(os.environ)
    if level == "plain":
        env["LOWBIT_REPACK"] = "0"
    elif level != "native":
        env["LOWBIT_CPU"] = level
    res = {}
    exe = os.path.join(build, "lowbit")
    for i, p in enumerate(pp):
        n = tg if i == 0 else 0
        d = json.loads(run([exe, "bench", "-m", model, "-t", str(threads), "-p", str(p), "-n", str(n),
                            "-r", "1", "--json"], env))
        res["pp%d" % p] = d["pp_tok_s"]
        if n:
            res["tg%d" % n] = d["tg_tok_s"]
    return res


def peer_once(peer, model, threads, pp, tg):
    out = run([peer, "-m", model, "-t", str(threads), "-p", ",".join(map(str, pp)), "-n", str(tg),
               "-r", "1", "-o", "json"])
    res, info = {}, {}
    for d in json.loads(out):
        key = "pp%d" % d["n_prompt"] if d["n_prompt"] else "tg%d" % d["n_gen"]
        res[key] = d["avg_ts"]
        info = {"build": os.environ.get("LLAMA_VERSION") or "%s (%s)" % (d.get("build_number"), d.get("build_commit"))}
    return res, info


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        txt = f.read()
    name = re.search(r"model name\s*:\s*(.*)", txt).group(1).strip()
    flags = re.search(r"flags\s*:\s*(.*)", txt).group(1).split()
    keep = [x for x in flags if re.match(r"(avx|fma|f16c|amx)", x)]
    return name, " ".join(keep)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--build", default="build")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--rounds", type=int, default=3)
    ap.add_argument("--pp", default="64,512")
    ap.add_argument("--tg", type=int, default=32)
    ap.add_argument("--levels", default="native")
    ap.add_argument("--out")
    a = ap.parse_args()
    peer = os.environ.get("LLAMA_BENCH")
    if not peer or not os.access(peer, os.X_OK):
        sys.exit("side_by_side: set LLAMA_BENCH to the peer's llama-bench binary")
    pp = [int(x) for x in a.pp.split(",") if x]
    levels = a.levels.split(",")
    keys = ["pp%d" % p for p in pp] + ["tg%d" % a.tg]
    bw0 = bandwidth(a.build)
    rows, peer_info = [], {}
    for model in a.models:
        with open(model, "rb") as f:  # warm the page cache so neither program pays the first read
            while f.read(1 << 24):
                pass
        lb = {lv: {k: [] for k in keys} for lv in levels}
        pe = {k: [] for k in keys}
        for r in range(a.rounds):
            order = ["peer"] + levels if r % 2 else levels + ["peer"]
            for who in order:
                if who == "peer":
                    res, peer_info = peer_once(peer, model, a.threads, pp, a.tg)
                    for k in keys:
                        pe[k].append(res[k])
                else:
                    res = lowbit_once(a.build, model, a.threads, pp, a.tg, who)
                    for k in keys:
                        lb[who][k].append(res[k])
            print("%s round %d done" % (os.path.basename(model), r + 1), file=sys.stderr)
        rows.append((model, {lv: {k: statistics.median(v) for k, v in d.items()} for lv, d in lb.items()},
                     {k: statistics.median(v) for k, v in pe.items()}, read_bytes(a.build, model)))
    bw1 = bandwidth(a.build)
    bw = min(bw0, bw1)
    name, flags = cpu_flags()
    lines = ["Measured %s UTC on %s, %d cores; CPU flags: %s." % (
                 datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), name, os.cpu_count(), flags),
             "%d threads; read bandwidth (bench_bandwidth, 2 threads) %.1f GB/s before and %.1f after the models; "
             "floors use the lower, %.1f. Peer: llama.cpp llama-bench build %s. Medians of %d alternating rounds; "
             "lowbit levels: %s." % (a.threads, bw0, bw1, bw, peer_info.get("build", "?"), a.rounds, ", ".join(levels)),
             ""]
    head = "| model | " + " | ".join("%s lowbit%s / peer (ratio)" % (k, "" if len(levels) == 1 else " [" + "/".join(levels) + "]")
                                   for k in keys) + " | floor tok/s | lowbit share of floor |"
    lines += [head, "|" + "---|" * (len(keys) + 3)]
    for model, lbm, pem, rb in rows:
        floor = bw * 1e9 / rb
        cells = []
        for k in keys:
            vals = "/".join("%.1f" % lbm[lv][k] for lv in levels)
            ratios = "/".join("%.2fx" % (lbm[lv][k] / pem[k]) for lv in levels)
            cells.append("%s / %.1f (%s)" % (vals, pem[k], ratios))
        share = "/".join("%.0f%%" % (100 * lbm[lv]["tg%d" % a.tg] / floor) for lv in levels)
        lines.append("| %s | %s | %.1f | %s |" % (os.path.basename(model), " | ".join(cells), floor, share))
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
