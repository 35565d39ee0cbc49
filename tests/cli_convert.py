"""Checks of `lowbit convert` and `lowbit perplexity` against independent truth: reference logits
and greedy ids, the published stories260K GGUF (its Q/K rows are in the llama GGUF order), the raw
ak42 codes decoded here, and perplexity / KL recomputed here from `lowbit logits`.
Usage: cli_convert.py LOWBIT_BINARY SHARED_DIR   (prints "N passed, N failed")"""
import json
import math
import os
import struct
import sys
import tempfile

import lbtest
from lbtest import Gguf, S, check, logits, lowbit, read_f32, rel_err, run_json, run_logits

lbtest.init(timeout=300)
TMP = tempfile.mkdtemp(prefix="lb_convert_")


def T(name):
    return os.path.join(TMP, name)


def convert(src, out, *extra, ok=True):
    return lowbit("convert", src, out, *extra, ok=ok)


def greedy_ok(model, ref, label):
    n = len(ref["greedy_ids"])
    r = run_json(model, ref["prompt"], n)
    if r.returncode:
        return check(False, f"{label}: run exit {r.returncode}")
    out = json.loads(r.stdout)
    check(out["ids"] == ref["greedy_ids"], f"{label}: greedy ids differ\n  ours {out['ids']}\n  ref  {ref['greedy_ids']}")


def logits_ok(model, ids, ref_file, limit, label):
    ours = logits(model, ids, T("l.f32"))
    if ours is None:
        return check(False, f"{label}: logits failed")
    ref = read_f32(ref_file)
    e = rel_err(ours, ref)
    check(len(ours) == len(ref) and e < limit, f"{label}: relative error {e:.3g} (limit {limit:g})")
    print(f"  {label}: logits relative error {e:.2e}")


# ---- HF folder -> GGUF (llama): metadata, Q/K order, logits, greedy ------------------------
refs = json.load(open(S("reference/stories260K/greedy.json")))
out = T("s260k-hf.gguf")
check(convert(S("models/stories260K-hf"), out).returncode == 0, "convert stories260K-hf")
g = Gguf(out)
pub = Gguf(S("models/stories260K-gguf/stories260K.gguf"))
check(g.kv.get("general.architecture") == "llama", "architecture llama")
check(g.kv.get("llama.embedding_length") == 64 and g.kv.get("llama.attention.head_count_kv") == 4, "hyperparameters")
check(g.kv.get("tokenizer.ggml.model") == "llama" and len(g.kv.get("tokenizer.ggml.tokens", [])) == 512, "SentencePiece vocab")
check(g.kv.get("tokenizer.ggml.tokens") == pub.kv.get("tokenizer.ggml.tokens"), "tokens equal the published GGUF's")
check(g.kv.get("tokenizer.ggml.bos_token_id") == 1 and g.kv.get("tokenizer.ggml.eos_token_id") == 2, "special ids")
for name in ("blk.0.attn_q.weight", "blk.4.attn_k.weight", "blk.2.attn_v.weight", "token_embd.weight", "blk.3.ffn_down.weight"):
    check(g.raw(name)[2] == pub.raw(name)[2], f"{name}: rows equal the published llama GGUF (Q/K permuted to adjacent pairs)")
check(g.raw("blk.0.attn_norm.weight")[0] == 0, "norms stored as F32")
logits_ok(out, refs[0]["prompt_ids"] + refs[0]["greedy_ids"], S("reference/stories260K/logits_0.f32"), 1e-4, "stories260K-hf -> gguf")
for i in (0, 3):
    greedy_ok(out, refs[i], f"stories260K-hf -> gguf prompt {i}")

# GGUF -> GGUF keeps every tensor byte for byte
out2 = T("s260k-gguf.gguf")
check(convert(S("models/stories260K-gguf/stories260K.gguf"), out2).returncode == 0, "convert GGUF")
g2 = Gguf(out2)
check(set(g2.tensors) == set(pub.tensors) and all(g2.raw(n)[2] == pub.raw(n)[2] for n in pub.tensors), "GGUF -> GGUF tensors unchanged")

# llama2.c -> GGUF
out3 = T("s260k-l2c.gguf")
check(convert(S("models/stories260K-llama2c/stories260K.bin"), out3).returncode == 0, "convert llama2.c")
greedy_ok(out3, refs[1], "llama2.c -> gguf prompt 1")
check(Gguf(out3).raw("blk.1.attn_q.weight")[2] == pub.raw("blk.1.attn_q.weight")[2], "llama2.c Q rows kept (already adjacent pairs)")

# --dtype f16: matrices F16, norms F32, logits close
out4 = T("s260k-f16.gguf")
check(convert(S("models/stories260K-hf"), out4, "--dtype", "f16").returncode == 0, "convert --dtype f16")
g4 = Gguf(out4)
check(g4.raw("blk.0.attn_q.weight")[0] == 1 and g4.raw("output_norm.weight")[0] == 0 and g4.kv.get("general.file_type") == 1,
      "f16 matrices, f32 norms, file_type 1")
logits_ok(out4, refs[0]["prompt_ids"] + refs[0]["greedy_ids"], S("reference/stories260K/logits_0.f32"), 1e-2, "--dtype f16")

# synthetic references: llama3 rope scaling + GQA (bf16), qwen2 biases (f16, rotate_half kept)
for name, limit in (("synth-llama3-gqa", 1e-4), ("synth-qwen2-bias", 1e-4), ("synth-bitnet", 1e-4)):
    ref = json.load(open(S("reference", name, "reference.json")))
    o = T(name + ".gguf")
    check(convert(S("models", name), o, "--no-tokenizer").returncode == 0, f"convert {name} (no tokenizer: --no-tokenizer)")
    logits_ok(o, ref["input_ids"], S("reference", name, "logits.f32"), limit, f"{name} -> gguf")
    r = run_logits(o, ref["input_ids"], T("g.f32"))
    if r.returncode == 0:
        l = read_f32(T("g.f32"))
        nv = ref["logits_shape"][1]
        last = l[-nv:]
        check(max(range(nv), key=lambda t: last[t]) == ref["greedy_ids"][0], f"{name}: first greedy id")
qg = Gguf(T("synth-qwen2-bias.gguf"))
check(qg.kv.get("general.architecture") == "qwen2" and "blk.0.attn_q.bias" in qg.tensors, "qwen2 arch with biases")
lg = Gguf(T("synth-llama3-gqa.gguf"))
check("rope_freqs.weight" in lg.tensors and "llama.rope.scaling.type" not in lg.kv,
      "llama3 scaling travels as rope_freqs.weight, as llama.cpp expects")

# tinystories-512d (bf16 weights kept as BF16)
t512 = json.load(open(S("reference/tinystories-512d/greedy.json")))
o = T("t512.gguf")
check(convert(S("models/tinystories-512d"), o).returncode == 0, "convert tinystories-512d")
check(Gguf(o).raw("blk.0.attn_q.weight")[0] == 30, "bf16 kept")
logits_ok(o, t512[0]["prompt_ids"] + t512[0]["greedy_ids"], S("reference/tinystories-512d/logits_0.f32"), 1e-4, "tinystories-512d -> gguf")
greedy_ok(o, t512[0], "tinystories-512d -> gguf prompt 0")

# bad input and options
bad = T("bad.gguf")
check(convert(T("missing"), bad, ok=False).returncode != 0 and not os.path.exists(bad), "missing input: error, no output")
check(convert(S("models/stories260K-hf"), bad, "--dtype", "q4_k", ok=False).returncode != 0 and not os.path.exists(bad), "bad --dtype")

# ---- byte-level BPE vocabularies survive GGUF: tokenize through the converted file ------------
for tname in ("smollm2-135m", "gpt2"):
    o = T(f"bpe-{tname}.gguf")
    check(convert(S("models/synth-llama3-gqa"), o, "--tokenizer", S("tokenizers", tname, "tokenizer.json")).returncode == 0,
          f"convert with the {tname} tokenizer")
    check(Gguf(o).kv.get("tokenizer.ggml.model") == "gpt2", f"{tname}: model gpt2")
    for c in json.load(open(S("reference/tokenizers", tname, "tokenize.json")))[:8]:
        r = lowbit("tokenize", "-m", o, c["text"])
        check(r.returncode == 0 and json.loads(r.stdout) == c["ids_with_special"], f"{tname} via GGUF: {c['text'][:40]!r}")
r = convert(S("models/synth-llama3-gqa"), T("mistral.gguf"), "--tokenizer", S("tokenizers/mistral-7b-v0.1/tokenizer.json"), ok=False)
check(r.returncode != 0 and b"tokenizer.ggml.pre" in r.stderr, "metaspace BPE: clear error")

# ---- ak42 BitNet -> GGUF bitnet ------------------------------------------------------------
def ak42_codes(path, skip_tensors, o, i):
    """Decodes BitLinear number skip_tensors (file order) independently: first weight in the high bits."""
    b = open(path, "rb").read()
    dim, hid, L, H, KV, V, _ = struct.unpack_from("<7i", b, 8)
    off = 256 + 4 * dim + 4 * dim * V
    hs = dim // H
    shapes = [(dim, dim), (hs * KV, dim), (hs * KV, dim), (dim, dim), (hid, dim), (dim, hid), (hid, dim)]
    n = 0
    for k in range(7):
        for _ in range(L):
            oo, ii = shapes[k]
            if n == skip_tensors:
                s = struct.unpack_from("<f", b, off)[0]
                c = b[off + 4:off + 4 + oo * ii // 4]
                return s, [(0, 1, 0, -1)[(c[j >> 2] >> (6 - 2 * (j & 3))) & 3] for j in range(oo * ii)]
            off += 4 + oo * ii // 4
            n += 1


def gguf_ternary(g, name):
    """The codes (-1, 0, 1) of a BitLinear weight as the GGUF holds them, decoded here from the
    format's definition: TQ2_0 = per 256 weights 64 bytes of 2-bit codes (weight j of each
    128-run in byte j % 32 of its 32-byte group, bits 2 * (j // 32)), then an fp16 d; F16 = the codes."""
    ty, ne, raw = g.raw(name)
    if ty == 1:
        return [round(v) for v in struct.unpack("<%de" % (len(raw) // 2), raw)]
    assert ty == 35, ty
    out = []
    for b in range(len(raw) // 66):
        qs = raw[66 * b:66 * b + 64]
        d = struct.unpack("<e", raw[66 * b + 64:66 * b + 66])[0]
        assert d == 1.0
        for half in range(2):
            for l in range(4):
                for m in range(32):
                    out.append(((qs[32 * half + m] >> (2 * l)) & 3) - 1)
    return out


for size in ("1M", "3M"):
    src = S("models", f"bitnet-b158-tinystories-{size}", "bit_model.bin")
    o = T(f"ak{size}.gguf")
    check(convert(src, o).returncode == 0, f"convert ak42 {size}")
    g = Gguf(o)
    dim = g.kv.get("bitnet.embedding_length")
    check(g.kv.get("general.architecture") == "bitnet" and g.kv.get("lowbit.act_quant_int8") is True
          and g.kv.get("lowbit.ffn_activation") == "silu", f"ak42 {size}: bitnet arch, lowbit keys")
    check(all(x == struct.unpack("<f", struct.pack("<f", 1.0 / dim))[0] for x in g.f32("blk.0.attn_norm.weight")),
          f"ak42 {size}: attn_norm = 1/dim")
    L = g.kv.get("bitnet.block_count")
    kvd = dim // g.kv["bitnet.attention.head_count"] * g.kv["bitnet.attention.head_count_kv"]
    s, codes = ak42_codes(src, 2 * L + 1, kvd, dim)  # wv of layer 1 (not permuted)
    ty = g.tensors["blk.1.attn_v.weight"][0]
    check(ty == (35 if size == "3M" else 1), f"ak42 {size}: TQ2_0 where rows fit 256-blocks, else F16 (type {ty})")
    got = gguf_ternary(g, "blk.1.attn_v.weight")
    check(got == codes, f"ak42 {size}: ternary codes exact")
    check(g.f32("blk.1.attn_v.scale") == (s,), f"ak42 {size}: per-tensor scale exact")
    r1 = run_json(src, "Once upon a time", 40)
    r2 = run_json(o, "Once upon a time", 40)
    if r1.returncode == 0 and r2.returncode == 0:
        a, b = json.loads(r1.stdout), json.loads(r2.stdout)
        check(a["ids"] == b["ids"], f"ak42 {size}: same greedy ids from the .bin and the GGUF")
        print(f"  ak42 {size}: {b['text']!r}")
        check(" girl" in b["text"] or " boy" in b["text"] or " Lily" in b["text"], f"ak42 {size}: TinyStories text")
    else:
        check(False, f"ak42 {size}: run failed")

# ---- perplexity and KL against a computation from `lowbit logits` ------------------------------
corpus = open(S("corpus/tinystories-sampled.txt"), encoding="utf-8").read()
text = T("text.txt")
with open(text, "w", encoding="utf-8") as f:
    f.write(corpus[:2500])
CTX = 64
hf, dogs = S("models/stories260K-hf"), S("models/stories260K-ft-dogs")


def ppl_json(*args):
    r = lowbit("perplexity", *args, "--json", "-t", "1")
    return json.loads(r.stdout) if r.returncode == 0 else None


def log_softmax(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(x - m) for x in row))
    return [x - lse for x in row]


r = lowbit("tokenize", "-m", hf, open(text, encoding="utf-8").read())
ids = json.loads(r.stdout)
nv = 512
nll = kl = 0.0
n = agree = 0
for w in range(len(ids) // CTX):
    win = ids[w * CTX:(w + 1) * CTX]
    win[0] = 1
    a = logits(hf, win, T("a.f32"))
    b = logits(dogs, win, T("b.f32"))
    for j in range(CTX // 2, CTX - 1):
        lq = log_softmax(a[j * nv:(j + 1) * nv])
        lp = log_softmax(b[j * nv:(j + 1) * nv])
        nll -= lq[win[j + 1]]
        kl += sum(math.exp(p) * (p - q) for p, q in zip(lp, lq))
        agree += max(range(nv), key=lambda t: lq[t]) == max(range(nv), key=lambda t: lp[t])
        n += 1
ref_ppl, ref_kl, ref_top1 = math.exp(nll / n), kl / n, agree / n
res = ppl_json("-m", hf, "-f", text, "-c", str(CTX))
check(res is not None and abs(res["ppl"] / ref_ppl - 1) < 1e-4 and res["kl"] is None, f"perplexity {res} vs {ref_ppl}")
res = ppl_json("-m", hf, "-f", text, "-c", str(CTX), "--kl-base", dogs)
check(res is not None and abs(res["kl"] / ref_kl - 1) < 1e-4 and abs(res["top1"] - ref_top1) < 1e-7,
      f"KL {res} vs kl {ref_kl} top1 {ref_top1}")
print(f"  stories260K-hf ctx {CTX} on 2500 chars: ppl {ref_ppl:.4f}, KL(dogs || hf) {ref_kl:.4f}, top1 {ref_top1:.3f}")
res = ppl_json("-m", hf, "-f", text, "-c", str(CTX), "--kl-base", S("models/stories260K-gguf/stories260K.gguf"))
check(res is not None and abs(res["kl"]) < 1e-6 and res["top1"] == 1.0, f"KL of the same weights is 0, top1 1: {res}")
check(lowbit("perplexity", "-m", hf, "-f", text, "-c", "100000", ok=False).returncode != 0, "text shorter than one window: error")

sys.exit(lbtest.finish())
