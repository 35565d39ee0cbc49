"""lowbit delta create/apply between GGUF models keeps the fine-tune's own metadata (issue 17):
the applied file's key/values (read by the independent reader in lbtest) equal the fine-tune's,
in order, including a key only the fine-tune has and without a key only the base has; a delta
made before deltas carried it (its target_gguf keys removed from the header here) still applies,
with the base's metadata as before; a damaged target_gguf is refused with no output left.
Usage: cli_delta_meta.py LOWBIT_BINARY SHARED_DIR"""
import json
import os
import shutil
import struct
import sys
import tempfile

import lbtest
from lbtest import M, check, lowbit, run_json

lbtest.init(timeout=120)

FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def kv_spans(b):
    """[(key, start, end)] of each key/value in a GGUF image, the tensor infos' span, n_tensors."""
    o = 24
    _, n_t, n_kv = struct.unpack_from("<IQQ", b, 4)

    def skip(o, t):
        if t == 8:
            return o + 8 + struct.unpack_from("<Q", b, o)[0]
        if t == 9:
            et, n = struct.unpack_from("<IQ", b, o)
            o += 12
            if et in FIXED:
                return o + n * FIXED[et]
            for _ in range(n):
                o = skip(o, et)
            return o
        return o + FIXED[t]

    spans = []
    for _ in range(n_kv):
        start = o
        n = struct.unpack_from("<Q", b, o)[0]
        key = b[o + 8:o + 8 + n].decode()
        o += 8 + n
        t = struct.unpack_from("<I", b, o)[0]
        o = skip(o + 4, t)
        spans.append((key, start, o))
    t0 = o
    for _ in range(n_t):
        n = struct.unpack_from("<Q", b, o)[0]
        o += 8 + n
        nd = struct.unpack_from("<I", b, o)[0]
        o += 4 + 8 * nd + 4 + 8
    return spans, (t0, o), n_t


def edit_gguf(src, dst, drop, add):
    """dst = src without key drop and with string key/value add appended (alignment 32)."""
    b = open(src, "rb").read()
    spans, (t0, t1), n_t = kv_spans(b)
    kvs = [b[s:e] for k, s, e in spans if k != drop]
    k, v = add
    kvs.append(struct.pack("<Q", len(k)) + k.encode() + struct.pack("<IQ", 8, len(v)) + v.encode())
    head = b[:4] + struct.pack("<IQQ", 3, n_t, len(kvs)) + b"".join(kvs) + b[t0:t1]
    data = b[(t1 + 31) // 32 * 32:]
    open(dst, "wb").write(head + b"\0" * (-len(head) % 32) + data)


def header(path):
    g = lbtest.Gguf(path)
    return list(g.kv.items()), g.b[g.data:]


def delta_meta_edit(src, dst, fn):
    """Rewrites a safetensors file's __metadata__ through fn (offsets are relative to the data)."""
    b = open(src, "rb").read()
    n = struct.unpack_from("<Q", b)[0]
    h = json.loads(b[8:8 + n])
    fn(h["__metadata__"])
    j = json.dumps(h, separators=(",", ":")).encode()
    j += b" " * (-len(j) % 8)
    open(dst, "wb").write(struct.pack("<Q", len(j)) + j + b[8 + n:])


def greedy(model, prompt="Once upon a time", n=16):
    r = run_json(model, prompt, n)
    return json.loads(r.stdout)["ids"] if r.returncode == 0 else None


tmp = tempfile.mkdtemp(prefix="cli_delta_meta_")
try:
    T = lambda *p: os.path.join(tmp, *p)
    ok = all(lowbit("quantize", M(src), T(dst), "--type", "q8_0").returncode == 0
             for src, dst in (("stories260K-hf", "b.gguf"), ("stories260K-ft-dogs", "f0.gguf")))
    # the fine-tune: its own general.name (from quantize), one key of its own, one of the base's gone
    edit_gguf(T("f0.gguf"), T("f.gguf"), "general.quantization_version", ("general.description", "a fine-tune on dogs"))
    bkv, _ = header(T("b.gguf"))
    fkv, fdata = header(T("f.gguf"))
    bd, fd = dict(bkv), dict(fkv)
    check(ok and bd["general.name"] != fd["general.name"] and "general.quantization_version" in bd and
          "general.description" not in bd, "base and fine-tune differ in metadata: %s vs %s" % (bd.get("general.name"), fd.get("general.name")))
    want = greedy(T("f.gguf"))
    check(want is not None and want != greedy(T("b.gguf")), "the fine-tune's greedy ids differ from the base's")

    r = lowbit("delta", "create", T("b.gguf"), T("f.gguf"), "-o", T("d.delta"), "-q")
    check(r.returncode == 0, "delta create between GGUF files")
    r = lowbit("delta", "apply", T("b.gguf"), T("d.delta"), "-o", T("r.gguf"))
    rkv, rdata = header(T("r.gguf")) if r.returncode == 0 else ([], b"")
    check(rkv == fkv, "apply: the output's metadata is the fine-tune's, in its order (general.name %r)" % dict(rkv).get("general.name"))
    check(rdata == fdata and greedy(T("r.gguf")) == want, "apply: tensor data and greedy ids are the fine-tune's")
    check(open(T("r.gguf"), "rb").read() == open(T("f.gguf"), "rb").read(), "apply: the output is the fine-tune byte for byte")

    # a delta from before deltas carried the fine-tune's metadata: applies with the base's
    def strip(m):
        m.pop("target_gguf", None)
        m.pop("target_gguf_drop", None)
    delta_meta_edit(T("d.delta"), T("old.delta"), strip)
    r = lowbit("delta", "apply", T("b.gguf"), T("old.delta"), "-o", T("o.gguf"))
    okv, odata = header(T("o.gguf")) if r.returncode == 0 else ([], b"")
    check(r.returncode == 0 and okv == bkv and odata == fdata, "an old-format delta applies: base metadata, fine-tune tensors")
    check(greedy(T("o.gguf")) == want, "old-format delta: the fine-tune's greedy ids")

    # a damaged target_gguf: refused by name, nothing written
    for what, fn in (("not hex", lambda m: m.update(target_gguf="zz" + m["target_gguf"][2:])),
                     ("truncated", lambda m: m.update(target_gguf=m["target_gguf"][:-6])),
                     ("drop not an array", lambda m: m.update(target_gguf_drop="{}"))):
        delta_meta_edit(T("d.delta"), T("bad.delta"), fn)
        r = lowbit("delta", "apply", T("b.gguf"), T("bad.delta"), "-o", T("bad.gguf"), ok=False)
        check(r.returncode == 1 and b"target_gguf" in r.stderr and not os.path.exists(T("bad.gguf")),
              "damaged target_gguf (%s) refused: %s" % (what, r.stderr.decode(errors="replace").strip()))
finally:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(lbtest.finish())
