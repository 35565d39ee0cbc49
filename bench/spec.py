#!/usr/bin/env python3
"""Speculative decoding speed table: `lowbit run` with --draft / --lookup against plain decoding of
the same target and prompt, in one run.

Usage:
  python3 bench/spec.py [--build build] [--shared ../shared] [--work /tmp/spec-bench] [-t 2] [-r 5]
      [-n 128] [--out FILE.md]

Targets: tinystories-512d as GGUF F32 and F16 (made with `lowbit quantize` into --work). Drafts:
stories260K (a different, 100x smaller model of the same vocabulary) and tinystories-512d itself in
Q4_0 and Q2_K; lookup (--lookup 3) on an input-copying prompt (a passage, then its start again), and
two drafts that fail (lookup on a story prompt, the ft-dogs fine-tune of stories260K) for the
adaptive-K floor. Every round runs plain and speculative one after the other, swapping the order each
round; the table gives medians over the rounds of tok/s of the generated tokens, the acceptance rate
(accepted / drafted) and the speedup of the medians. Greedy output is checked identical to plain in
every run. The read bandwidth (bench_bandwidth, 2 threads) is measured in the same run.
"""
import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys

STORY = "Once upon a time"
PASSAGE = ("Tom and his sister Sue went to the park with their dog Max. Max ran after a red ball and "
           "jumped into the pond. Tom laughed and Sue called Max back. They walked home and ate cake.")
COPY = PASSAGE + "\n\n" + PASSAGE + "\n\n" + PASSAGE[:40]


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit("spec: %s failed (%d):\n%s" % (" ".join(cmd), r.returncode, r.stderr[-2000:]))
    return r


def make_models(build, shared, work):
    os.makedirs(work, exist_ok=True)
    exe = os.path.join(build, "lowbit")
    src = os.path.join(shared, "models", "tinystories-512d")
    out = {}
    for t in ("f32", "f16", "q4_0", "q2_k"):
        path = os.path.join(work, "tinystories-512d-%s.gguf" % t)
        if not os.path.exists(path):
            run([exe, "quantize", src, path, "--type", t])
        out[t] = path
    out["stories260K"] = os.path.join(shared, "models", "stories260K-gguf", "stories260K.gguf")
    out["ft-dogs"] = os.path.join(shared, "models", "stories260K-ft-dogs")
    return out


def gen_once(build, target, prompt, n, threads, extra):
    r = run([os.path.join(build, "lowbit"), "run", "-m", target, "-p", prompt, "-n", str(n), "-t", str(threads),
             "--json", *extra])
    ids = json.loads(r.stdout)["ids"]
    tps = float(re.search(r"generated \d+ tok, ([0-9.]+) tok/s", r.stderr).group(1))
    m = re.search(r"drafted (\d+) tok, accepted (\d+)", r.stderr)
    return ids, tps, (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def bandwidth(build):
    out = run([os.path.join(build, "bench_bandwidth"), "2"]).stdout
    return float(re.search(r"2 threads:\s+([0-9.]+) GB/s median", out).group(1))


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        txt = f.read()
    name = re.search(r"model name\s*:\s*(.*)", txt).group(1).strip()
    flags = set(re.search(r"flags\s*:\s*(.*)", txt).group(1).split())
    return name, " ".join(f for f in ("avx2", "fma", "f16c", "avx512f") if f in flags)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    ap.add_argument("--work", default="/tmp/spec-bench")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--rounds", type=int, default=5)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--out")
    a = ap.parse_args()
    m = make_models(a.build, a.shared, a.work)
    cases = []
    for tgt in ("f32", "f16"):
        cases += [(tgt, "stories260K", STORY, ["--draft", m["stories260K"]]),
                  (tgt, "tinystories-512d Q4_0", STORY, ["--draft", m["q4_0"]]),
                  (tgt, "tinystories-512d Q2_K", STORY, ["--draft", m["q2_k"]]),
                  (tgt, "lookup 3 (copying prompt)", COPY, ["--lookup", "3"]),
                  (tgt, "lookup 3 (story: drafts fail)", STORY, ["--lookup", "3"]),
                  (tgt, "ft-dogs (drafts often fail)", STORY, ["--draft", m["ft-dogs"]])]
    bw0 = bandwidth(a.build)
    rows = []
    for tgt, name, prompt, extra in cases:
        plain, spec, acc = [], [], []
        for rnd in range(a.rounds):
            order = [False, True] if rnd % 2 == 0 else [True, False]
            for sp in order:
                ids, tps, (nd, na) = gen_once(a.build, m[tgt], prompt, a.n, a.threads, extra if sp else [])
                if sp:
                    spec.append(tps)
                    acc.append(na / nd if nd else 0.0)
                    spec_ids = ids
                else:
                    plain.append(tps)
                    plain_ids = ids
            if spec_ids != plain_ids:
                sys.exit("spec: %s, %s: speculative output differs from plain" % (tgt, name))
        p, s = statistics.median(plain), statistics.median(spec)
        rows.append((tgt.upper(), name, statistics.median(acc), p, s, s / p))
        print("%-4s %-32s acceptance %5.1f%%  plain %7.1f  spec %7.1f tok/s  %.2fx" %
              (rows[-1][0], name, 100 * rows[-1][2], p, s, s / p), flush=True)
    bw1 = bandwidth(a.build)
    cpu, flags = cpu_flags()
    lines = ["Speculative decoding, lowbit run -n %d -t %d, greedy, %d rounds (medians), %s UTC" %
             (a.n, a.threads, a.rounds, datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")),
             "CPU: %s (%s); read bandwidth %.1f / %.1f GB/s (2 threads, before / after)" % (cpu, flags, bw0, bw1),
             "", "| target | draft | acceptance | plain tok/s | speculative tok/s | speedup |",
             "|---|---|---:|---:|---:|---:|"]
    lines += ["| tinystories-512d %s | %s | %.0f%% | %.1f | %.1f | %.2fx |" % (t, n, 100 * ac, p, s, x)
              for t, n, ac, p, s, x in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
