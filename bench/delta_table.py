"""Table (a) of bench/results_delta.md: stories260K-hf -> stories260K-ft-dogs deltas at several
thresholds: delta size, ratio, KL(fine-tune || reconstructed) over the corpus, greedy match.
KL is computed here from `lowbit logits` rows (lowbit perplexity --kl-base was not merged yet).
Usage: python3 bench/delta_table.py LOWBIT SHARED_DIR"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

L, S = sys.argv[1], sys.argv[2]
base, ft = os.path.join(S, "models/stories260K-hf"), os.path.join(S, "models/stories260K-ft-dogs")
ref = json.load(open(os.path.join(S, "reference/stories260K-ft-dogs/greedy.json")))
text = open(os.path.join(S, "corpus/tinystories-sampled.txt")).read()
tmp = tempfile.mkdtemp()


def run(*a):
    return subprocess.run([L, *a], capture_output=True, check=True)


ids = json.loads(run("tokenize", "-m", ft, text).stdout)
windows = [ids[i:i + 256] for i in range(0, len(ids), 256)]  # stories260K context is 512


def logits(model):
    rows = []
    for k, w in enumerate(windows):
        out = os.path.join(tmp, "l.f32")
        run("logits", "-m", model, "--ids", ",".join(map(str, w)), "-o", out, "-t", "2")
        b = open(out, "rb").read()
        nv = len(b) // 4 // len(w)
        v = struct.unpack("<%df" % (len(b) // 4), b)
        rows += [v[i * nv:(i + 1) * nv] for i in range(len(w))]
    return rows


def logsoftmax(r):
    m = max(r)
    s = math.log(sum(math.exp(x - m) for x in r)) + m
    return [x - s for x in r]


P = [logsoftmax(r) for r in logits(ft)]
dense = os.path.getsize(os.path.join(ft, "model.safetensors"))
print("corpus: %d tokens in %d windows of <= 256" % (len(ids), len(windows)))
print("| mode | threshold | delta bytes | ratio (fine-tune / delta) | .lbz of delta | KL(ft ‖ recon) mean, nats | greedy = reference (prompts) |")
print("|---|---|---|---|---|---|---|")
for mode, th in [("lossless", 0), ("float", 1e-4), ("float", 1e-3), ("float", 3e-3), ("float", 1e-2), ("float", 3e-2),
                 ("int8", 0), ("int8", 1e-3), ("int8", 1e-2)]:
    d = os.path.join(tmp, "d.delta")
    a = ["delta", "create", base, ft, "-o", d, "-q"]
    if th: a += ["--threshold", str(th)]
    if mode == "int8": a += ["--int8"]
    run(*a)
    run("compress", d, d + ".lbz")
    out = os.path.join(tmp, "rec")
    subprocess.run(["rm", "-rf", out])
    run("delta", "apply", base, d, "-o", out)
    Q = [logsoftmax(r) for r in logits(out)]
    kl = sum(sum(math.exp(p) * (p - q) for p, q in zip(pr, qr)) for pr, qr in zip(P, Q)) / len(P)
    match = 0
    for c in ref:
        r = run("run", "-m", base, "--delta", d, "-p", c["prompt"], "-n", str(len(c["greedy_ids"])), "--json", "-t", "1")
        match += json.loads(r.stdout)["ids"] == c["greedy_ids"]
    sz = os.path.getsize(d)
    print("| %s | %g | %d | %.2f | %d (%.2f) | %.2e | %d/%d |" % (mode, th, sz, dense / sz, os.path.getsize(d + ".lbz"),
                                                                dense / os.path.getsize(d + ".lbz"), kl, match, len(ref)))
