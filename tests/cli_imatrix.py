"""End-to-end checks of `lowbit imatrix` and `lowbit quantize --imatrix` on tinystories-512d: the
corpus is cut in two, the first half calibrates, the second is held out. The file holds one entry
per block matrix in llama.cpp's layout (read here by an independent reader); a Q2_K quantized with
it runs and its KL from the BF16 model on the held-out half is not worse than without; bad input
(another model's imatrix, a truncated file, a too short text, missing options) fails cleanly.
Usage: cli_imatrix.py LOWBIT_BINARY SHARED_DIR"""
import json
import os
import struct
import sys
import tempfile

import lbtest
from lbtest import M, calib_split, check, kl, lowbit, run_json

lbtest.init(timeout=600, report=True)
MODEL = M("tinystories-512d")


def read_dat(path):
    """The legacy imatrix layout, read without lowbit: {name: (ncall, values)}, chunks, dataset."""
    with open(path, "rb") as f:
        b = f.read()
    o = 0
    (n,) = struct.unpack_from("<i", b, o)
    o += 4
    out = {}
    for _ in range(n):
        (ln,) = struct.unpack_from("<i", b, o)
        name = b[o + 4:o + 4 + ln].decode()
        o += 4 + ln
        ncall, nval = struct.unpack_from("<ii", b, o)
        o += 8
        out[name] = (ncall, struct.unpack_from("<%df" % nval, b, o))
        o += 4 * nval
    chunks, ln = struct.unpack_from("<ii", b, o)
    dataset = b[o + 8:o + 8 + ln].decode()
    check(o + 8 + ln == len(b), f"{path}: {len(b) - o - 8 - ln} bytes after the trailer")
    return out, chunks, dataset


with tempfile.TemporaryDirectory() as d:
    calib, held = calib_split(d)

    im = os.path.join(d, "im.dat")
    r = lowbit("imatrix", "-m", MODEL, "-f", calib, "-o", im, "-c", "128", "--chunks", "24", "-t", "2")
    check(r.returncode == 0 and os.path.exists(im), f"imatrix: exit {r.returncode}")
    check(b"24 chunks" in r.stderr, f"imatrix reports its chunks: {r.stderr[-300:]}")
    if os.path.exists(im):
        ents, chunks, dataset = read_dat(im)
        check(len(ents) == 6 * 7 + 1, f"{len(ents)} entries, expected 7 matrices x 6 layers and the head")
        head = ents.get("token_embd.weight")  # tied: the head is the embedding
        check(head is not None and len(head[1]) == 512 and head[0] == 24, "the head: 512 columns, ncall = chunks")
        check(chunks == 24 and dataset == calib, f"trailer: {chunks} chunks, dataset {dataset!r}")
        down = ents.get("blk.0.ffn_down.weight")
        check(down is not None and len(down[1]) == 1536 and down[0] == 24, "ffn_down: 1536 columns, ncall = chunks")
        check(all(v >= 0 for _, vals in ents.values() for v in vals), "values are sums of squares")
        q = ents.get("blk.3.attn_q.weight")
        check(q is not None and q[1] == ents["blk.3.attn_k.weight"][1], "q and k read the same input")

    base = os.path.join(d, "bf16.gguf")
    lowbit("quantize", MODEL, base, "--type", "bf16")
    plain, withim = os.path.join(d, "q2.gguf"), os.path.join(d, "q2im.gguf")
    r0 = lowbit("quantize", MODEL, plain, "--type", "q2_k", "--pure", "-t", "2")
    r1 = lowbit("quantize", MODEL, withim, "--type", "q2_k", "--pure", "-t", "2", "--imatrix", im)
    check(r0.returncode == 0 and r1.returncode == 0, "quantize with and without --imatrix")
    check(b"importance matrix" in r1.stderr and b"43 matrices" in r1.stderr, f"quantize names the imatrix: {r1.stderr[:300]}")
    with open(plain, "rb") as a, open(withim, "rb") as b:
        check(a.read() != b.read(), "the imatrix changes the quantized file")
    g = run_json(withim, "Once upon a time", 24)
    check(g.returncode == 0 and len(json.loads(g.stdout)["ids"]) == 24, "the imatrix-quantized model runs")
    k0, k1 = kl(plain, base, held), kl(withim, base, held)
    check(k0 is not None and k1 is not None and k1 <= k0, f"held-out KL with the imatrix {k1}, without {k0}")
    print(f"q2_k held-out KL: without {k0}, with imatrix {k1}")

    # bad input
    other = os.path.join(d, "other.dat")
    lowbit("imatrix", "-m", M("stories260K-gguf", "stories260K.gguf"), "-f", calib, "-o", other, "-c", "64", "--chunks", "2")
    r = lowbit("quantize", MODEL, os.path.join(d, "x.gguf"), "--type", "q4_k", "--imatrix", other, ok=False)
    check(r.returncode == 1 and b"another model" in r.stderr and not os.path.exists(os.path.join(d, "x.gguf")),
          f"another model's imatrix: {r.returncode} {r.stderr[-300:]}")
    cut_file = os.path.join(d, "cut.dat")
    with open(im, "rb") as f, open(cut_file, "wb") as g2:
        g2.write(f.read()[:5000])
    r = lowbit("quantize", MODEL, os.path.join(d, "x.gguf"), "--type", "q4_k", "--imatrix", cut_file, ok=False)
    check(r.returncode == 1 and b"cut.dat" in r.stderr and b"offset" in r.stderr, f"truncated imatrix: {r.stderr[-300:]}")
    short = os.path.join(d, "short.txt")
    with open(short, "w") as f:
        f.write("Once upon a time.")
    r = lowbit("imatrix", "-m", MODEL, "-f", short, "-o", os.path.join(d, "s.dat"), ok=False)
    check(r.returncode == 1 and b"fewer than one chunk" in r.stderr, f"short text: {r.stderr[-300:]}")
    r = lowbit("imatrix", "-m", MODEL, "-f", calib, ok=False)
    check(r.returncode == 2, f"no -o: exit {r.returncode}")
    r = lowbit("imatrix", "-m", MODEL, "-f", calib, "-o", calib, ok=False)
    check(r.returncode == 1, f"output over the input text: exit {r.returncode}")

sys.exit(lbtest.finish())
