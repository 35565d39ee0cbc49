"""Issue 11, leftovers (part D). Each check reproduces a finding with files the test makes itself:
NaN weights are refused at run (every CPU level alike) and named by inspect --check.
Usage: cli_harden_d.py LOWBIT_BINARY SHARED_DIR"""
import os
import struct
import subprocess
import sys
import tempfile

import lbtest
from lbtest import M, check, lowbit

lbtest.init(timeout=300, report=False)
GGUF = M("stories260K-gguf", "stories260K.gguf")
LEVELS = ("scalar", "avx2", None)  # None: the CPU's own level (AVX-512 here)


def write(d, name, data):
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


def at_level(level, *args):
    env = dict(os.environ)
    env.pop("LOWBIT_CPU", None)
    if level:
        env["LOWBIT_CPU"] = level
    return subprocess.run([lbtest.LOWBIT, *args], capture_output=True, timeout=300, env=env)


def patched(d, src, name, tensor, byte_off, data):
    """A copy of the GGUF src with data written at byte_off inside tensor's data."""
    g = lbtest.Gguf(src, 1 << 20)
    with open(src, "rb") as f:
        b = bytearray(f.read())
    at = g.data + g.tensors[tensor][2] + byte_off
    b[at:at + len(data)] = data
    return write(d, name, bytes(b))


def refuses_nan(path, what):
    """run exits 1 naming NaN logits at every CPU level (the SIMD levels gave finite logits)."""
    for level in LEVELS:
        r = at_level(level, "run", "-m", path, "-p", "Once upon a time", "-n", "4", "-t", "1")
        err = r.stderr.decode(errors="replace")
        check(r.returncode == 1 and "NaN logits" in err and "weights may be corrupt" in err,
              f"{what}, LOWBIT_CPU={level or 'native'}: exit {r.returncode}, stderr {err[-300:]!r}")


with tempfile.TemporaryDirectory() as d:
    nan = struct.pack("<f", float("nan"))
    # finding 8: a model with NaN weights generated "⁇ ⁇ ⁇" with exit 0
    p = patched(d, GGUF, "nan_norm.gguf", "output_norm.weight", 0, nan)
    refuses_nan(p, "NaN in output_norm.weight")
    r = lowbit("inspect", "--check", p)
    out = r.stdout.decode(errors="replace")
    check(r.returncode == 1 and "not finite: output_norm.weight: 1 of its values, the first NaN at element 0" in out
          and out.count("not finite:") == 1 and b"are NaN or inf" in r.stderr,
          f"inspect --check names output_norm.weight: exit {r.returncode}, {out[-300:]!r}")
    r = lowbit("inspect", "--check", GGUF)
    check(r.returncode == 0 and b"every weight is finite" in r.stdout, f"inspect --check of a clean model: {r.stderr!r}")
    # the SIMD softmax and activation quantization dropped NaN (AVX2 exp clamped it, maxps kept
    # the other operand): NaN in attn_q gave finite logits at avx2/avx512, NaN at scalar
    p = patched(d, GGUF, "nan_q.gguf", "blk.0.attn_q.weight", 4 * 3, nan)
    refuses_nan(p, "NaN in blk.0.attn_q.weight (F32)")
    q8 = os.path.join(d, "q8.gguf")
    r = lowbit("quantize", GGUF, q8, "--type", "q8_0", "--pure")
    check(r.returncode == 0, f"quantize q8_0: {r.stderr!r}")
    if r.returncode == 0:
        _, ts = lbtest.gguf_header(q8)
        check(ts["blk.0.attn_q.weight"][0] == 8, "attn_q is Q8_0 in the quantized copy")
        # the first block's fp16 scale made NaN: q turns NaN through the Q8_0 kernels, then the
        # attention output through the activation quantizer of the o projection
        p = patched(d, q8, "nan_q8.gguf", "blk.0.attn_q.weight", 0, struct.pack("<H", 0x7E00))
        refuses_nan(p, "NaN scale in blk.0.attn_q.weight (Q8_0)")
        for level in LEVELS:
            r = at_level(level, "run", "-m", q8, "-p", "Once upon a time", "-n", "4", "-t", "1")
            check(r.returncode == 0, f"the unpatched Q8_0 copy runs at {level or 'native'}: {r.stderr[-200:]!r}")

sys.exit(lbtest.finish())
