"""lowbit compress/decompress and lowbit delta through the CLI, against independent truth:
sha256sum of the original files, greedy ids of the uncompressed model and the fine-tune's
reference (../shared/reference/stories260K-ft-dogs/greedy.json), and clean refusals (no output
left) for corrupt containers, wrong bases and damaged deltas.
Usage: cli_delta.py LOWBIT_BINARY SHARED_DIR"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import lbtest
from lbtest import M, S, check, lowbit, run_json

lbtest.init(timeout=300, report=False)


def sha(path):
    return subprocess.run(["sha256sum", path], capture_output=True, text=True, check=True).stdout.split()[0]


def greedy(model, prompt, n, *extra):
    r = run_json(model, prompt, n, *extra)
    if r.returncode != 0:
        print(r.stderr.decode(errors="replace"), file=sys.stderr)
        return None
    return json.loads(r.stdout)["ids"]


def flip(src, dst, offset):
    b = bytearray(open(src, "rb").read())
    b[offset] ^= 0x5A
    open(dst, "wb").write(b)


tmp = tempfile.mkdtemp(prefix="cli_delta_")
try:
    T = lambda *p: os.path.join(tmp, *p)
    # ---- .lbz round trips: F32 GGUF, BF16 and F16 safetensors, both codecs
    cases = [(M("stories260K-gguf", "stories260K.gguf"), "zstd"),
             (M("tinystories-512d", "model.safetensors"), "zstd"),
             (M("synth-qwen2-bias", "model.safetensors"), "lz4")]
    for i, (src, codec) in enumerate(cases):
        z, back = T("m%d.lbz" % i), T("m%d.out" % i)
        r = lowbit("compress", src, z, "--codec", codec, "-t", "2")
        check(r.returncode == 0, "compress %s: %s" % (src, r.stderr))
        r = lowbit("decompress", z, back, "-t", "2")
        check(r.returncode == 0 and sha(back) == sha(src), "decompress %s is bit-exact" % src)
        if i == 1:
            check(os.path.getsize(z) * 1.4 < os.path.getsize(src), "BF16 ratio above 1.4")
    # a folder input compresses its model.safetensors
    r = lowbit("compress", M("stories260K-hf"), T("hf.lbz"))
    check(r.returncode == 0 and lowbit("decompress", T("hf.lbz"), T("hf.st")).returncode == 0 and
          sha(T("hf.st")) == sha(M("stories260K-hf", "model.safetensors")), "folder input")

    # ---- the engine loads .lbz: GGUF self-contained, safetensors beside config/tokenizer
    prompt = "Once upon a time"
    ref = greedy(M("stories260K-gguf", "stories260K.gguf"), prompt, 24)
    check(ref is not None and greedy(T("m0.lbz"), prompt, 24) == ref, "run -m GGUF .lbz: same greedy ids")
    d512 = T("ts512")
    os.mkdir(d512)
    for f in os.listdir(M("tinystories-512d")):
        if f != "model.safetensors":
            shutil.copy(M("tinystories-512d", f), d512)
    shutil.copy(T("m1.lbz"), os.path.join(d512, "model.safetensors.lbz"))
    ref = greedy(M("tinystories-512d"), prompt, 16)
    check(ref is not None and greedy(d512, prompt, 16) == ref, "run -m folder with model.safetensors.lbz")
    check(greedy(os.path.join(d512, "model.safetensors.lbz"), prompt, 16) == ref, "run -m NAME.safetensors.lbz")

    # ---- a corrupt chunk is reported with its tensor and offset, never used
    flip(T("m0.lbz"), T("bad.lbz"), 300000)
    r = lowbit("run", "-m", T("bad.lbz"), "-p", prompt, "-n", "4")
    msg = r.stderr.decode(errors="replace")
    check(r.returncode == 1 and "tensor '" in msg and "offset" in msg, "corrupt .lbz refused naming the tensor: " + msg)
    r = lowbit("decompress", T("bad.lbz"), T("bad.gguf"))
    check(r.returncode == 1 and not os.path.exists(T("bad.gguf")), "corrupt .lbz: decompress leaves no output")
    with open(T("m0.lbz"), "rb") as f:
        data = f.read()
    open(T("trunc.lbz"), "wb").write(data[: len(data) - 100])
    r = lowbit("decompress", T("trunc.lbz"), T("trunc.gguf"))
    check(r.returncode == 1 and not os.path.exists(T("trunc.gguf")), "truncated .lbz refused")

    # ---- deltas: lossless reconstructs the fine-tune bit for bit
    base, ft = M("stories260K-hf"), M("stories260K-ft-dogs")
    r = lowbit("delta", "create", base, ft, "-o", T("d.delta"), "-q")
    check(r.returncode == 0, "delta create: %s" % r.stderr)
    r = lowbit("delta", "apply", base, T("d.delta"), "-o", T("out"))
    check(r.returncode == 0 and sha(T("out", "model.safetensors")) == sha(os.path.join(ft, "model.safetensors")),
          "lossless delta apply: model.safetensors sha256 equal to the fine-tune's")
    check(os.path.exists(T("out", "config.json")) and os.path.exists(T("out", "tokenizer.model")), "config and tokenizer copied")
    refj = json.load(open(S("reference", "stories260K-ft-dogs", "greedy.json")))
    for case in refj[:2]:
        n = len(case["greedy_ids"])
        r = lowbit("run", "-m", base, "--delta", T("d.delta"), "-p", case["prompt"], "-n", str(n), "--json", "-t", "1")
        ok = r.returncode == 0 and json.loads(r.stdout)["prompt_ids"] == case["prompt_ids"] and \
            json.loads(r.stdout)["ids"] == case["greedy_ids"]
        check(ok, "run --delta greedy ids equal the fine-tune reference (%s)" % case["prompt"])
    r = lowbit("delta", "info", T("d.delta"))
    check(r.returncode == 0 and b"zdiff" in r.stdout and b"lossless" in r.stdout and b"47 tensors" in r.stdout and
          len(r.stdout.splitlines()) == 1, "delta info: one line")
    r = lowbit("delta", "info", T("d.delta"), "-v")
    lines = r.stdout.decode().splitlines()
    check(r.returncode == 0 and len(lines) == 48 and all("ratio" in x and "max|err|" in x for x in lines[1:]),
          "delta info -v: one line per tensor with size, ratio and error")
    # the lossless delta is smaller than the fine-tune through lowbit compress (the bench has the
    # figure; the bound here is a regression guard: the raw XOR form was larger than the model)
    r = lowbit("compress", os.path.join(ft, "model.safetensors"), T("ft.lbz"))
    check(r.returncode == 0 and os.path.getsize(T("d.delta")) * 1.05 < os.path.getsize(T("ft.lbz")),
          "lossless delta %d bytes < compressed fine-tune %d" % (os.path.getsize(T("d.delta")), os.path.getsize(T("ft.lbz"))))
    # version 1 (raw XOR) still made on request and read
    r = lowbit("delta", "create", base, ft, "-o", T("raw.delta"), "--raw", "-q")
    check(r.returncode == 0 and lowbit("delta", "apply", base, T("raw.delta"), "-o", T("raw_out")).returncode == 0 and
          sha(T("raw_out", "model.safetensors")) == sha(os.path.join(ft, "model.safetensors")) and
          b"xor delta (version 1" in lowbit("delta", "info", T("raw.delta")).stdout, "raw xor (version 1) round trip")
    # 1-bit and mixed: much smaller, and run --delta loads them
    sizes = {}
    for bits in ("1", "3"):
        r = lowbit("delta", "create", base, ft, "-o", T("b%s.delta" % bits), "--bits", bits, "-q")
        check(r.returncode == 0, "delta create --bits %s: %s" % (bits, r.stderr))
        sizes[bits] = os.path.getsize(T("b%s.delta" % bits))
        r = lowbit("run", "-m", base, "--delta", T("b%s.delta" % bits), "-p", prompt, "-n", "8", "--json", "-t", "1")
        check(r.returncode == 0 and len(json.loads(r.stdout)["ids"]) == 8, "run --delta with a --bits %s delta" % bits)
    check(sizes["1"] * 10 < os.path.getsize(os.path.join(ft, "model.safetensors")) and sizes["1"] < sizes["3"],
          "1-bit delta over 10x smaller than the fine-tune, mixed 3 bits larger: %s" % sizes)
    r = lowbit("delta", "create", base, ft, "-o", T("bad.delta"), "--bits", "0.5")
    check(r.returncode == 2 and not os.path.exists(T("bad.delta")), "--bits 0.5 refused")
    # the delta is an ordinary safetensors file: the engine's reader opens it
    r = lowbit("compress", T("d.delta"), T("d.delta.lbz"))
    check(r.returncode == 0, "a delta is a valid safetensors file")

    # lossy modes: error reported, greedy still close; int8 smaller than the base
    r = lowbit("delta", "create", base, ft, "-o", T("i8.delta"), "--int8", "--threshold", "0.001", "-q")
    check(r.returncode == 0 and os.path.getsize(T("i8.delta")) * 3 < os.path.getsize(os.path.join(ft, "model.safetensors")),
          "int8 delta is over 3x smaller")
    check(b"max|err|" in r.stderr, "create reports the error")

    # ---- quantized base and fine-tune (same block types): the lossless delta codes their bytes;
    # apply's tensors and run --delta give the quantized fine-tune's own greedy ids
    for qt in ("q8_0", "q4_0", "q4_k_m"):
        qb, qf, qd = T("qb_%s.gguf" % qt), T("qf_%s.gguf" % qt), T("q_%s.delta" % qt)
        ok = all(lowbit("quantize", src, dst, "--type", qt).returncode == 0 for src, dst in ((base, qb), (ft, qf)))
        r = lowbit("delta", "create", qb, qf, "-o", qd, "-q")
        check(ok and r.returncode == 0, "delta create between %s models: %s" % (qt, r.stderr))
        r = lowbit("delta", "apply", qb, qd, "-o", T("qr_%s.gguf" % qt))
        want = greedy(qf, prompt, 24)
        check(r.returncode == 0 and want is not None and want != greedy(qb, prompt, 24) and
              greedy(T("qr_%s.gguf" % qt), prompt, 24) == want, "%s delta apply: the fine-tune's greedy ids" % qt)
        check(greedy(qb, prompt, 24, "--delta", qd) == want, "%s run --delta: the fine-tune's greedy ids" % qt)
        # every tensor's bytes equal the fine-tune's: the data sections match byte for byte
        fsz, rsz = os.path.getsize(qf), os.path.getsize(T("qr_%s.gguf" % qt))
        check(open(qf, "rb").read()[-150000:] == open(T("qr_%s.gguf" % qt), "rb").read()[-150000:] and
              os.path.getsize(qd) < fsz, "%s: tensor data equal to the fine-tune's, delta smaller (%d < %d)" %
              (qt, os.path.getsize(qd), fsz))
    # a float fine-tune onto a quantized base: refused with the way out, which then works
    # (quantize --like the base gives each tensor the base's type: the same file as --type)
    r = lowbit("delta", "create", T("qb_q4_k_m.gguf"), ft, "-o", T("q_float.delta"))
    check(r.returncode == 1 and b"--like" in r.stderr and not os.path.exists(T("q_float.delta")),
          "float fine-tune against a quantized base refused, naming quantize --like")
    r = lowbit("quantize", ft, T("ql.gguf"), "--like", T("qb_q4_k_m.gguf"))
    check(r.returncode == 0 and open(T("ql.gguf"), "rb").read()[-150000:] == open(T("qf_q4_k_m.gguf"), "rb").read()[-150000:],
          "quantize --like a Q4_K_M base: the tensors --type q4_k_m writes")
    r = lowbit("quantize", ft, T("ql2.gguf"), "--like", M("tinystories-512d", "model.safetensors"))
    check(r.returncode == 1 and not os.path.exists(T("ql2.gguf")), "quantize --like a non-GGUF refused")
    r = lowbit("delta", "create", T("qb_q8_0.gguf"), T("qf_q8_0.gguf"), "-o", T("q_int8.delta"), "--int8")
    check(r.returncode == 1 and b"lossless" in r.stderr and not os.path.exists(T("q_int8.delta")),
          "lossy delta of a quantized tensor refused, naming the lossless mode")
    r = lowbit("delta", "apply", T("qb_q4_0.gguf"), T("q_q8_0.delta"), "-o", T("q_wrong.gguf"))
    check(r.returncode == 1 and not os.path.exists(T("q_wrong.gguf")), "quantized delta on a base of another type refused")

    # ---- bad input: wrong base, damaged delta, out-of-range index: refused, nothing written
    r = lowbit("delta", "apply", ft, T("d.delta"), "-o", T("wrong"))
    check(r.returncode == 1 and b"fingerprint" in r.stderr and not os.path.exists(T("wrong")), "wrong base refused, no output")
    r = lowbit("run", "-m", ft, "--delta", T("d.delta"), "-p", prompt, "-n", "2")
    check(r.returncode == 1 and b"fingerprint" in r.stderr, "run --delta on the wrong base refused")
    r = lowbit("delta", "apply", M("tinystories-512d"), T("d.delta"), "-o", T("wrong2"))
    check(r.returncode == 1 and not os.path.exists(T("wrong2")), "base of other shapes refused")
    with open(T("d.delta"), "rb") as f:
        data = f.read()
    open(T("trunc.delta"), "wb").write(data[: len(data) // 2])
    r = lowbit("delta", "apply", base, T("trunc.delta"), "-o", T("t_out"))
    check(r.returncode == 1 and not os.path.exists(T("t_out")), "truncated delta refused, no output")
    flip(T("d.delta"), T("flip.delta"), len(data) - 1000)
    r = lowbit("delta", "apply", base, T("flip.delta"), "-o", T("f_out"))
    check(r.returncode == 1 and b"checksum" in r.stderr and not os.path.exists(T("f_out")), "corrupted delta refused")
    # a sparse delta whose first index is pushed out of range (checksum fixed up by hand would be
    # needed to reach the range check, so build one with a patched gap and matching metadata)
    r = lowbit("delta", "create", base, ft, "-o", T("s.delta"), "--threshold", "0.01", "-q")
    check(r.returncode == 0, "sparse delta create")
    import struct, hashlib  # noqa: E401
    b = bytearray(open(T("s.delta"), "rb").read())
    hl = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + hl])
    meta = hdr["__metadata__"]
    ents = json.loads(meta["tensors"])
    sp = [e for e in ents if e["kept"] and not e["dense"]]
    check(len(sp) > 0, "threshold 0.01 gives sparse tensors")
    if sp:
        e = sp[0]
        off = hdr[e["name"] + "::idx"]["data_offsets"][0] + 8 + hl
        b[off:off + 4] = struct.pack("<I", 0xFFFFFFF0)
        open(T("range.delta"), "wb").write(b)
        r = lowbit("delta", "apply", base, T("range.delta"), "-o", T("r_out"))
        check(r.returncode == 1 and not os.path.exists(T("r_out")), "patched index refused (checksum or range)")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

sys.exit(lbtest.finish())
