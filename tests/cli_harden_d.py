"""Issue 11, leftovers (part D). Each check reproduces a finding with files the test makes itself:
NaN weights are refused at run (every CPU level alike) and named by inspect --check; the KV cache
is F16 by default and a budget that lowers it says so (run, serve); quantize/convert refuse a
model without a tokenizer up front; a prompt over 128 KiB goes through -f; overlapping tensor
data is refused naming both tensors.
Usage: cli_harden_d.py LOWBIT_BINARY SHARED_DIR"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

import lbtest
from lbtest import M, S, check, lowbit

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

    # finding 10: quantize and convert wrote a GGUF without a tokenizer from an HF folder that has
    # none, which run then refused; now refused before any work, naming the files looked for
    hf = M("synth-llama3-gqa")  # config.json and model.safetensors only
    lone = os.path.join(d, "lone")
    os.mkdir(lone)
    shutil.copy(M("stories260K-llama2c", "stories260K.bin"), lone)  # no tok512.bin beside it
    for src, words in ((hf, ["synth-llama3-gqa", "tokenizer.json or tokenizer.model"]),
                       (os.path.join(lone, "stories260K.bin"), ["stories260K.bin", "tokenizer.bin"])):
        for cmd in (["convert"], ["quantize", "--type", "q8_0"]):
            out = os.path.join(d, "notok.gguf")
            r = lowbit(cmd[0], src, out, *cmd[1:])
            err = r.stderr.decode(errors="replace")
            check(r.returncode == 1 and all(w in err for w in words) and "--no-tokenizer" in err
                  and "quantized" not in err and "wrote" not in err,
                  f"{cmd[0]} {src} without a tokenizer: exit {r.returncode}, {err[-300:]!r}")
            check(not os.path.exists(out) and not [f for f in os.listdir(d) if "lowbit-tmp" in f],
                  f"{cmd[0]}: no output and no temp file")
            r = lowbit(cmd[0], src, out, *cmd[1:], "--no-tokenizer")
            check(r.returncode == 0 and os.path.exists(out), f"{cmd[0]} --no-tokenizer writes it: {r.stderr[-300:]!r}")
            r = lowbit("run", "-m", out, "-p", "hi", "-n", "1")
            check(r.returncode not in (0, None), "and run still refuses that output")
            os.unlink(out)

    # finding 10: a prompt over 128 KiB cannot be given with -p (the kernel refuses one argument
    # that long, before lowbit runs); -f takes it, and a prompt longer than the context is named
    text = ("Once upon a time, there was a little girl named Lily. She liked to play outside. " * 1800)[:140 * 1024]
    pf = write(d, "long.txt", text.encode())
    try:
        r = subprocess.run([lbtest.LOWBIT, "run", "-m", GGUF, "-p", text, "-n", "1"], capture_output=True, timeout=60)
        exec_ok = True
    except OSError as e:  # E2BIG: "Argument list too long"
        exec_ok = e.errno != 7
    check(not exec_ok, "a 140 KiB -p argument cannot even be passed (E2BIG): the reason for -f")
    r = lowbit("run", "-m", GGUF, "--help")
    check(b"128 KiB" in r.stdout and b"-f" in r.stdout, "run --help points long prompts to -f")
    ids = lowbit("tokenize", "-m", GGUF, "--no-special", "--", text[:8192])
    check(ids.returncode == 0, "tokenize a part of the prompt")
    r = lowbit("run", "-m", GGUF, "-f", pf, "-n", "1", "-t", "1")
    err = r.stderr.decode(errors="replace")
    m = re.search(r"the prompt has (\d+) tokens, more than the context of (\d+) tokens", err)
    # the tokenizer is independent of the context: an 8 KiB slice's count, scaled, bounds it below
    low = len(json.loads(ids.stdout)) * (len(text) // 8192) if ids.returncode == 0 else 1 << 30
    check(r.returncode == 1 and m and int(m.group(1)) >= low and int(m.group(2)) == lbtest.gguf_header(GGUF)[0].get(
        "llama.context_length"), f"-f with 140 KiB: exit {r.returncode}, {err[-300:]!r}")

    # finding 10: overlapping tensor data ranges were accepted (GGUF); safetensors names both too.
    # Both 1-D and 2-D tensors: a norm moved onto another norm, and a norm moved into a matrix.
    def gguf_moved(name, onto, extra):
        """stories260K.gguf with tensor name's data offset set to onto's offset + extra."""
        g = lbtest.Gguf(GGUF, 1 << 20)
        b = bytearray(gguf)
        key = struct.pack("<Q", len(name)) + name.encode()
        at = b.index(key) + len(key)
        nd = struct.unpack_from("<I", b, at)[0]
        at += 4 + 8 * nd + 4
        check(struct.unpack_from("<Q", b, at)[0] == g.tensors[name][2], f"{name}: offset field found")
        struct.pack_into("<Q", b, at, g.tensors[onto][2] + extra)
        return write(d, "overlap.gguf", bytes(b))

    with open(GGUF, "rb") as f:
        gguf = f.read()
    for name, onto, extra in (("output_norm.weight", "blk.0.attn_norm.weight", 0),
                              ("blk.1.ffn_norm.weight", "blk.0.attn_q.weight", 64)):
        p = gguf_moved(name, onto, extra)
        for cmd in (["inspect", p], ["run", "-m", p, "-p", "hi", "-n", "1"]):
            r = lowbit(*cmd)
            err = r.stderr.decode(errors="replace")
            check(r.returncode == 1 and "overlaps" in err and name in err and onto in err,
                  f"{' '.join(cmd[:1])}: {name} over {onto}: exit {r.returncode}, {err[-300:]!r}")
    # safetensors: the same through the JSON header of a folder copy
    hf = os.path.join(d, "hf-overlap")
    shutil.copytree(M("stories260K-hf"), hf)
    st = os.path.join(hf, "model.safetensors")
    with open(st, "rb") as f:
        raw = f.read()
    n = struct.unpack_from("<Q", raw)[0]
    hdr = json.loads(raw[8:8 + n])
    a, b_ = "model.norm.weight", "model.layers.0.input_layernorm.weight"
    hdr[a]["data_offsets"] = hdr[b_]["data_offsets"]
    h = json.dumps(hdr).encode()
    with open(st, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + raw[8 + n:])
    r = lowbit("inspect", hf)
    err = r.stderr.decode(errors="replace")
    check(r.returncode == 1 and "overlaps" in err and a in err and b_ in err, f"safetensors overlap: {err[-300:]!r}")

# finding 10: the KV cache was F32 in the library, serve and Python, and a budget switched it
# silently. Now F16 everywhere; a budget between the Q8_0 and the F16 plan lowers it to Q8_0
# and says so (run and serve; Python warns, python/tests/test_model.py)
T512 = M("tinystories-512d")
r = lowbit("run", "-m", T512, "-p", "hi", "-n", "1", "-c", "512", "-t", "1", "--mem-budget", "100M")
err = r.stderr.decode(errors="replace")
plan = re.search(r"KV cache \(512 tokens, f16\) ([\d.]+) MiB .* = ([\d.]+) MiB <= budget", err)
check(r.returncode == 0 and plan and "changes the KV cache" not in err, f"a roomy budget keeps f16 quietly: {err!r}")
# less than the F16 total by a third of its KV cache: Q8_0 (17/32 of F16) fits, F16 does not
between = str(int((float(plan.group(2)) - float(plan.group(1)) / 3) * 2**20)) if plan else "1"
note = "note: --mem-budget changes the KV cache from f16 to q8_0 (pass --kv-type to choose)"
r = lowbit("run", "-m", T512, "-p", "hi", "-n", "1", "-c", "512", "-t", "1", "--mem-budget", between)
err = r.stderr.decode(errors="replace")
check(r.returncode == 0 and "plan: 512 tokens, q8_0 KV" in err and note in err, f"run: the budget forces q8_0 with a note: {err!r}")
r = lowbit("run", "-m", T512, "-p", "hi", "-n", "1", "-c", "512", "-t", "1", "--mem-budget", between, "--kv-type", "f16")
err = r.stderr.decode(errors="replace")
check(r.returncode == 1 and "does not fit" in err and "changes the KV cache" not in err,
      f"run: --kv-type f16 under that budget refuses instead: {err!r}")


def serve_start(*extra):
    """stderr of lowbit serve up to its listening line (or its exit), then SIGTERM."""
    p, lines, _ = lbtest.serve_listen("-m", T512, "--port", "0", "-np", "1", "-c", "512", "-t", "1", *extra)
    lbtest.serve_stop(p)
    return "".join(lines)


err = serve_start("--mem-budget", between)
check("q8_0 KV" in err and note in err, f"serve: the budget forces q8_0 with a note: {err!r}")
err = serve_start("--mem-budget", "100M")
check("f16 KV" in err and "changes the KV cache" not in err, f"serve: f16 by default: {err!r}")

sys.exit(lbtest.finish())
