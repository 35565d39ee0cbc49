"""Quality of every quantization type on one model: file size, bits per weight, perplexity, mean
KL divergence from the unquantized model and same-top-token share (`lowbit perplexity
--kl-base`, 128-token windows, second half scored). Runs the types in parallel.
Usage: quant_quality.py LOWBIT MODEL TEXT OUTDIR [JOBS]   (prints JSON lines, one per row)"""
import json
import os
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

# --pure: every tensor, embeddings included, in the type (the targets)
PURE = ["q8_0", "q6_k", "q5_k", "q4_k", "q4_0", "q3_k", "q2_k"]
# recipe defaults (head at Q6_K; q8_0 and q6_k equal their --pure files; tq1_0 holds the same
# values as tq2_0)
RECIPE = ["f16", "q5_k_m", "q5_k", "q4_k_m", "q4_k", "q4_0", "q4_1", "q5_0", "q5_1", "q3_k_m", "q3_k", "q2_k", "tq2_0"]


def weights_by_tensor(path, counts=None):
    """{tensor name: bytes} from the GGUF header; counts (a dict) receives element counts."""
    with open(path, "rb") as f:
        b = f.read(64 << 20)
    o = 4
    _, nt, nkv = struct.unpack_from("<IQQ", b, o)
    o += 20
    size = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip(t):
        nonlocal o
        if t == 8:
            (n,) = struct.unpack_from("<Q", b, o)
            o += 8 + n
        elif t == 9:
            et, n = struct.unpack_from("<IQ", b, o)
            o += 12
            for _ in range(n):
                skip(et)
        else:
            o += size[t]

    def rstr():
        nonlocal o
        (n,) = struct.unpack_from("<Q", b, o)
        o += 8 + n
        return b[o - n:o].decode("utf-8", "replace")

    for _ in range(nkv):
        skip(8)
        (t,) = struct.unpack_from("<I", b, o)
        o += 4
        skip(t)
    # bytes per block and block size of each GGML type id
    bpb = {0: (4, 1), 1: (2, 1), 30: (2, 1), 2: (18, 32), 3: (20, 32), 6: (22, 32), 7: (24, 32), 8: (34, 32),
           10: (84, 256), 11: (110, 256), 12: (144, 256), 13: (176, 256), 14: (210, 256), 34: (54, 256), 35: (66, 256)}
    out = {}
    for _ in range(nt):
        name = rstr()
        (nd,) = struct.unpack_from("<I", b, o)
        o += 4
        ne = struct.unpack_from("<%dQ" % nd, b, o)
        o += 8 * nd
        ty, _ = struct.unpack_from("<IQ", b, o)
        o += 12
        n = 1
        for x in ne:
            n *= x
        out[name] = n // bpb[ty][1] * bpb[ty][0]
        if counts is not None:
            counts[name] = n
    return out


def row(kind, typ):
    out = os.path.join(OUT, f"{typ}{'_pure' if kind == 'pure' else ''}.gguf")
    extra = ["--pure"] if kind == "pure" else []
    r = subprocess.run([LOWBIT, "quantize", MODEL, out, "--type", typ, "-t", "1", *extra], capture_output=True)
    if r.returncode:
        return {"kind": kind, "type": typ, "error": r.stderr.decode()[-300:]}
    r = subprocess.run([LOWBIT, "perplexity", "-m", out, "-f", TEXT, "-c", "128", "--kl-base", MODEL, "--json", "-t", "1"],
                       capture_output=True)
    if r.returncode:
        return {"kind": kind, "type": typ, "error": r.stderr.decode()[-300:]}
    res = json.loads(r.stdout)
    counts = {}
    nbytes = sum(weights_by_tensor(out, counts).values())
    params = sum(counts.values())
    res.update(kind=kind, type=typ, file_bytes=os.path.getsize(out), bpw=nbytes * 8 / params)
    os.remove(out)
    return res


if __name__ == "__main__":
    LOWBIT, MODEL, TEXT, OUT = sys.argv[1:5]
    JOBS = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    os.makedirs(OUT, exist_ok=True)
    jobs = [("pure", t) for t in PURE] + [("recipe", t) for t in RECIPE]
    with ThreadPoolExecutor(JOBS) as ex:
        for res in ex.map(lambda j: row(*j), jobs):
            print(json.dumps(res), flush=True)
