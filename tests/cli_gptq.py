"""End-to-end checks of `lowbit quantize --gptq` on tinystories-512d: the corpus is cut in two, the
first half calibrates (8 chunks of 128 tokens), the second is held out. A Q4_K written with GPTQ
runs, differs from the file without, and its KL from the BF16 model on the held-out half is lower
than the plain file's; the options' errors (memory limit naming the bytes, a missing or too short
text, a bad --gptq-damp) fail cleanly with no output left behind.
Usage: cli_gptq.py LOWBIT_BINARY SHARED_DIR"""
import json
import os
import sys
import tempfile

import lbtest
from lbtest import M, calib_split, check, kl, lowbit, run_json

lbtest.init(timeout=600, report=True)
MODEL = M("tinystories-512d")


with tempfile.TemporaryDirectory() as d:
    calib, held = calib_split(d)

    r = lowbit("quantize", "--help")
    check(r.returncode == 0 and b"--gptq TEXT" in r.stdout and b"--gptq-damp" in r.stdout, "--help names --gptq")

    base = os.path.join(d, "bf16.gguf")
    lowbit("quantize", MODEL, base, "--type", "bf16")
    plain, gq = os.path.join(d, "q4.gguf"), os.path.join(d, "q4g.gguf")
    r0 = lowbit("quantize", MODEL, plain, "--type", "q4_k", "--pure", "-t", "2")
    r1 = lowbit("quantize", MODEL, gq, "--type", "q4_k", "--pure", "-t", "2", "--gptq", calib, "-c", "128",
                "--gptq-chunks", "8")
    check(r0.returncode == 0 and r1.returncode == 0, "quantize with and without --gptq")
    check(b"GPTQ statistics" in r1.stderr and b"8 chunks" in r1.stderr, f"quantize reports the calibration: {r1.stderr[:400]}")
    check(b"tied embedding: no GPTQ" in r1.stderr, "the tied embedding is named as not compensated")
    with open(plain, "rb") as a, open(gq, "rb") as b:
        check(a.read() != b.read(), "GPTQ changes the quantized file")
    g = run_json(gq, "Once upon a time", 24)
    check(g.returncode == 0 and len(json.loads(g.stdout)["ids"]) == 24, "the GPTQ-quantized model runs")
    k0, k1 = kl(plain, base, held), kl(gq, base, held)
    check(k0 is not None and k1 is not None and k1 < k0, f"held-out KL with GPTQ {k1}, without {k0}")
    print(f"q4_k held-out KL: without {k0}, with GPTQ (8 chunks) {k1}")

    # errors
    x = os.path.join(d, "x.gguf")
    r = lowbit("quantize", MODEL, x, "--type", "q4_k", "--gptq", calib, "--gptq-max-mib", "1", ok=False)
    check(r.returncode == 1 and b"bytes" in r.stderr and b"limit" in r.stderr and not os.path.exists(x),
          f"memory limit: {r.returncode} {r.stderr[-300:]}")
    r = lowbit("quantize", MODEL, x, "--type", "q4_k", "--gptq", os.path.join(d, "missing.txt"), ok=False)
    check(r.returncode == 1 and b"missing.txt" in r.stderr and not os.path.exists(x), f"missing text: {r.stderr[-300:]}")
    short = os.path.join(d, "short.txt")
    with open(short, "w") as f:
        f.write("Once upon a time.")
    r = lowbit("quantize", MODEL, x, "--type", "q4_k", "--gptq", short, ok=False)
    check(r.returncode == 1 and b"fewer than one chunk" in r.stderr and not os.path.exists(x), f"short text: {r.stderr[-300:]}")
    r = lowbit("quantize", MODEL, x, "--type", "q4_k", "--gptq", calib, "--gptq-damp", "-1", ok=False)
    check(r.returncode == 2 and b"--gptq-damp" in r.stderr, f"bad damp: {r.returncode} {r.stderr[-300:]}")
    r = lowbit("quantize", MODEL, calib, "--type", "q4_k", "--gptq", calib, ok=False)
    check(r.returncode == 1, f"output over the calibration text: exit {r.returncode}")

sys.exit(lbtest.finish())
