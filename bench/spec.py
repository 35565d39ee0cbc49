#!/usr/bin/env python3
"""Speculative decoding speed table: `lowbit run` with --draft / --lookup against plain decoding of
the same target and prompt, in one run.

Usage:
  python3 bench/spec.py [--build build] [--shared ../shared] [--work /tmp/spec-bench] [-t 2] [-r 5]
      [-n 128] [--only lookup|verify|serve] [--out FILE.md]

Targets: tinystories-512d as GGUF F32 and F16 (made with `lowbit quantize` into --work). Drafts:
stories260K (a different, 100x smaller model of the same vocabulary) and tinystories-512d itself in
Q4_0 and Q2_K; lookup (--lookup 1) on two prompts: a long story (400 tokens from "Once upon a
time": tinystories-512d fills it with its own repeated sentences, so the output copies itself, the
workload lookup is for) and an input-copying prompt (a passage twice, then its start again: this
model does not copy its input, so these drafts mostly fail), and the ft-dogs fine-tune of
stories260K as a draft that fails often (the adaptive-K floor).
The verify table times one batched pass of K + 1 tokens (`lowbit bench -p K+1`) against a plain
step (-n), which is what a speculative step costs. The serve table runs `lowbit serve --lookup 1` and
`--draft stories260K` against the same server without them on the long story, with 1 and 4
clients at once (the clients' completion tokens over wall time), the texts checked identical. Every round runs plain and speculative one after the other, swapping the order each
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
LONG = 400  # tokens of the long story: within tinystories-512d's 512-token context


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


def verify_costs(a, m):
    """ms of one pass of K + 1 tokens and of one plain step, from the same lowbit bench run."""
    out = []
    for tgt in ("f32", "f16"):
        for k in (1, 2, 4, 8, 16):
            pas, step = [], []
            for _ in range(a.rounds):
                r = run([os.path.join(a.build, "lowbit"), "bench", "-m", m[tgt], "-t", str(a.threads), "-p", str(k + 1),
                         "-n", "32", "-r", "3", "--json"])
                j = json.loads(r.stdout)
                pas.append(1e3 * (k + 1) / j["pp_tok_s"])
                step.append(1e3 / j["tg_tok_s"])
            p, s = statistics.median(pas), statistics.median(step)
            out.append((tgt.upper(), k, p, s, p / s))
            print("verify %s K=%d: %.2f ms vs %.2f ms plain: %.2f steps" % (tgt, k, p, s, p / s), flush=True)
    return out


class Server:
    def __init__(self, build, model, threads, extra):
        self.p = subprocess.Popen([os.path.join(build, "lowbit"), "serve", "-m", model, "--port", "0", "-np", "4",
                                   "-t", str(threads), *extra], stderr=subprocess.PIPE, text=True)
        for line in self.p.stderr:
            mt = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            if mt:
                self.url = "http://127.0.0.1:%s/v1/completions" % mt.group(1)
                break

    def stop(self):
        self.p.terminate()
        self.p.wait(60)


def serve_once(url, clients):
    """(tok/s over all clients, texts, drafted, accepted) of `clients` long-story requests at once."""
    import threading
    import time
    import urllib.request
    res = [None] * clients

    def one(i):
        body = json.dumps({"prompt": STORY, "max_tokens": LONG, "temperature": 0}).encode()
        res[i] = json.load(urllib.request.urlopen(url, body, timeout=600))
    t0 = time.time()
    ts = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    dt = time.time() - t0
    toks = sum(r["usage"]["completion_tokens"] for r in res)
    sp = [r.get("speculative", {}) for r in res]
    return toks / dt, [r["choices"][0]["text"] for r in res], sum(x.get("drafted", 0) for x in sp), \
        sum(x.get("accepted", 0) for x in sp)


def serve_rows(a, m):
    """Plain serving, --lookup 1 and --draft stories260K, alternating, on the long story."""
    out = []
    modes = (("plain", []), ("lookup", ["--lookup", "1"]), ("draft", ["--draft", m["stories260K"]]))
    for tgt in ("f32", "f16"):
        servers = {name: Server(a.build, m[tgt], a.threads, extra) for name, extra in modes}
        try:
            for clients in (1, 4):
                tps = {name: [] for name, _ in modes}
                acc = {name: [] for name, _ in modes}
                for rnd in range(a.rounds):
                    texts = {}
                    for name, _ in (modes if rnd % 2 == 0 else modes[::-1]):
                        t, texts[name], nd, na = serve_once(servers[name].url, clients)
                        tps[name].append(t)
                        acc[name].append(na / nd if nd else 0.0)
                    if len(set(json.dumps(t) for t in texts.values())) != 1:
                        sys.exit("spec: serve %s: speculative text differs from plain" % tgt)
                p = statistics.median(tps["plain"])
                row = [tgt.upper(), clients, p]
                for name in ("lookup", "draft"):
                    s = statistics.median(tps[name])
                    row += [100 * statistics.median(acc[name]), s, s / p]
                out.append(tuple(row))
                print("serve %s %d clients: plain %.1f | lookup %.0f%% %.1f tok/s %.2fx | draft %.0f%% %.1f tok/s %.2fx" % out[-1],
                      flush=True)
        finally:
            for srv in servers.values():
                srv.stop()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    ap.add_argument("--work", default="/tmp/spec-bench")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--rounds", type=int, default=5)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--only", choices=("draft", "lookup", "verify", "serve"),
                    help="one table: draft (every run row), lookup (the lookup rows and ft-dogs), verify, serve")
    ap.add_argument("--out")
    a = ap.parse_args()
    m = make_models(a.build, a.shared, a.work)
    cases = []
    for tgt in ("f32", "f16"):
        if a.only in (None, "draft"):
            cases += [(tgt, "stories260K", STORY, a.n, ["--draft", m["stories260K"]]),
                      (tgt, "tinystories-512d Q4_0", STORY, a.n, ["--draft", m["q4_0"]]),
                      (tgt, "tinystories-512d Q2_K", STORY, a.n, ["--draft", m["q2_k"]])]
        if a.only in (None, "draft", "lookup"):
            cases += [(tgt, "lookup 1 (long story: the output repeats itself)", STORY, LONG, ["--lookup", "1"]),
                      (tgt, "lookup 1 (copying prompt: the model does not copy)", COPY, a.n, ["--lookup", "1"]),
                      (tgt, "ft-dogs (drafts often fail)", STORY, a.n, ["--draft", m["ft-dogs"]])]
    bw0 = bandwidth(a.build)
    rows = []
    for tgt, name, prompt, n, extra in cases:
        plain, spec, acc = [], [], []
        for rnd in range(a.rounds):
            order = [False, True] if rnd % 2 == 0 else [True, False]
            for sp in order:
                ids, tps, (nd, na) = gen_once(a.build, m[tgt], prompt, n, a.threads, extra if sp else [])
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
        rows.append((tgt.upper(), name + ("" if n == a.n else ", -n %d" % n), statistics.median(acc), p, s, s / p))
        print("%-4s %-32s acceptance %5.1f%%  plain %7.1f  spec %7.1f tok/s  %.2fx" %
              (rows[-1][0], name, 100 * rows[-1][2], p, s, s / p), flush=True)
    verify = verify_costs(a, m) if a.only in (None, "verify") else []
    served = serve_rows(a, m) if a.only in (None, "serve") else []
    bw1 = bandwidth(a.build)
    cpu, flags = cpu_flags()
    lines = ["Speculative decoding, lowbit run -n %d -t %d, greedy, %d rounds (medians), %s UTC" %
             (a.n, a.threads, a.rounds, datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")),
             "CPU: %s (%s); read bandwidth %.1f / %.1f GB/s (2 threads, before / after)" % (cpu, flags, bw0, bw1),
             ""]
    if rows:
        lines += ["| target | draft | acceptance | plain tok/s | speculative tok/s | speedup |", "|---|---|---:|---:|---:|---:|"]
        lines += ["| tinystories-512d %s | %s | %.0f%% | %.1f | %.1f | %.2fx |" % (t, n, 100 * ac, p, s, x)
                  for t, n, ac, p, s, x in rows]
        lines.append("")
    if verify:
        lines += ["One verification pass of K + 1 tokens against one plain step (lowbit bench -p K+1 / -n 32, medians):", "",
                  "| target | K | pass ms | plain step ms | pass / step |", "|---|---:|---:|---:|---:|"]
        lines += ["| tinystories-512d %s | %d | %.2f | %.2f | %.2f |" % r for r in verify]
        lines.append("")
    if served:
        lines += ["lowbit serve --lookup 1 and --draft stories260K against plain serving (the long story, -n %d, -np 4; "
                  "N clients send it at once; tok/s: all clients' completion tokens over wall time):" % LONG, "",
                  "| target | clients | plain tok/s | lookup acceptance | --lookup 1 tok/s | speedup | draft acceptance "
                  "| --draft tok/s | speedup |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += ["| tinystories-512d %s | %d | %.1f | %.0f%% | %.1f | %.2fx | %.0f%% | %.1f | %.2fx |" % r for r in served]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
