"""End-to-end checks of the lowbit CLI against ../shared/reference: greedy ids from every
format, logits within 1e-4 relative error, tokenizer ids, and clean failures on bad input.
Usage: e2e_engine.py LOWBIT_BINARY SHARED_DIR"""
import json
import os
import struct
import sys
import tempfile

import lbtest
from lbtest import S, check, lowbit, read_f32, rel_err, run_json, run_logits

lbtest.init(timeout=600)


def greedy(model, refs, extra=()):
    for i, ref in enumerate(refs):
        n = len(ref["greedy_ids"])
        r = run_json(model, ref["prompt"], n, *extra)
        if r.returncode:
            check(False, f"{model} prompt {i}: exit {r.returncode}")
            continue
        out = json.loads(r.stdout)
        check(out["prompt_ids"] == ref["prompt_ids"], f"{model} prompt {i} prompt_ids {out['prompt_ids']} != {ref['prompt_ids']}")
        check(out["ids"] == ref["greedy_ids"], f"{model} prompt {i} greedy ids differ:\n  ours {out['ids']}\n  ref  {ref['greedy_ids']}")


def logits_case(model, ids, ref_file, shape, label):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "l.f32")
        r = run_logits(model, ids, out)
        if r.returncode:
            check(False, f"{label}: logits exit {r.returncode}")
            return
        ours = read_f32(out)
    ref = read_f32(ref_file)
    check(len(ours) == shape[0] * shape[1] == len(ref), f"{label}: {len(ours)} logits, expected {shape}")
    e = rel_err(ours, ref)
    check(e < 1e-4, f"{label}: relative error {e:.3g} >= 1e-4")
    print(f"  {label}: relative error {e:.2e}")


# --- greedy generation from every format ------------------------------------------------
refs = json.load(open(S("reference/stories260K/greedy.json")))
llama2c_tok = S("models/stories260K-llama2c/tok512.bin")
for model, extra in [(S("models/stories260K-gguf/stories260K.gguf"), ()),
                     (S("models/stories260K-hf"), ()),
                     (S("models/stories260K-llama2c/stories260K.bin"), ())]:
    greedy(model, refs, extra)
greedy(S("models/stories260K-ft-dogs"), json.load(open(S("reference/stories260K-ft-dogs/greedy.json"))))
greedy(S("models/tinystories-512d"), json.load(open(S("reference/tinystories-512d/greedy.json"))))
greedy(S("models/stories260K-hf"), refs[:1], ("--kv-type", "f16", "-t", "2"))

# --- logits ------------------------------------------------------------------------------
for i in (0, 1):
    ref = refs[i]
    logits_case(S("models/stories260K-hf"), ref["prompt_ids"] + ref["greedy_ids"],
                S("reference/stories260K", ref["logits_file"]), ref["logits_shape"], f"stories260K prompt {i}")
for name in ("synth-llama3-gqa", "synth-qwen2-bias", "synth-bitnet"):
    ref = json.load(open(S("reference", name, "reference.json")))
    logits_case(S("models", name), ref["input_ids"], S("reference", name, ref["logits_file"]), ref["logits_shape"], name)
t512 = json.load(open(S("reference/tinystories-512d/greedy.json")))[0]
if "logits_file" in t512:
    logits_case(S("models/tinystories-512d"), t512["prompt_ids"] + t512["greedy_ids"],
                S("reference/tinystories-512d", t512["logits_file"]), t512["logits_shape"], "tinystories-512d prompt 0")

# --- Q8_0 KV cache: tinystories-512d (head_dim 64) stays close to the reference; measured relative
# error of the logits 8.1e-4 (F16 cache 8.3e-5, F32 8.0e-5), asserted below 2e-3 --------------------
with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "q8.f32")
    r = run_logits(S("models/tinystories-512d"), t512["prompt_ids"] + t512["greedy_ids"], out, "--kv-type", "q8_0", "-t", "2")
    if r.returncode:
        check(False, f"q8_0 KV logits: exit {r.returncode}")
    else:
        e = rel_err(read_f32(out), read_f32(S("reference/tinystories-512d", t512["logits_file"])))
        check(0 < e < 2e-3, f"tinystories-512d q8_0 KV: relative error {e:.3g} not in (0, 2e-3)")
        print(f"  tinystories-512d prompt 0, q8_0 KV cache: relative error {e:.2e}")
r = run_json(S("models/tinystories-512d"), t512["prompt"], 16, "--kv-type", "q8_0")
check(r.returncode == 0 and json.loads(r.stdout)["ids"] == t512["greedy_ids"][:16],
      f"tinystories-512d q8_0 KV: first 16 greedy ids differ: {r.stdout[:300]!r}")
r = lowbit("run", "-m", S("models/stories260K-hf"), "-p", "x", "-n", "1", "--kv-type", "q8_0", ok=False)
check(r.returncode == 1 and b"head_dim" in r.stderr and b"8" in r.stderr, f"q8_0 KV with head_dim 8: {r.returncode} {r.stderr!r}")

# --- tokenizers through the CLI ------------------------------------------------------------
for tok, ref in [(S("models/stories260K-hf/tokenizer.model"), S("reference/stories260K/tokenize.json")),
                 (S("models/llama2-tokenizer-32k/tokenizer.model"), S("reference/llama2-tokenizer-32k/tokenize.json"))]:
    for case in json.load(open(ref)):
        r = lowbit("tokenize", "-m", tok, case["text"])
        check(r.returncode == 0 and json.loads(r.stdout) == case["ids_with_bos"], f"{tok}: {case['text']!r}")
for name in ("gpt2", "smollm2-135m", "mistral-7b-v0.1"):
    tok = S("tokenizers", name, "tokenizer.json")
    for case in json.load(open(S("reference/tokenizers", name, "tokenize.json"))):
        r = lowbit("tokenize", "-m", tok, "--no-special", case["text"])
        check(r.returncode == 0 and json.loads(r.stdout) == case["ids"], f"{name} --no-special: {case['text']!r}")
        r = lowbit("tokenize", "-m", tok, case["text"])
        check(r.returncode == 0 and json.loads(r.stdout) == case["ids_with_special"], f"{name}: {case['text']!r}")

# --- bad input: one-line errors naming the file, exit code 1, no crash -----------------------
with tempfile.TemporaryDirectory() as d:
    gguf = open(S("models/stories260K-gguf/stories260K.gguf"), "rb").read()
    cases = {
        "trunc.gguf": gguf[: len(gguf) // 2],
        "header.gguf": gguf[:20],
        "badver.gguf": gguf[:4] + struct.pack("<I", 99) + gguf[8:],
        "empty.bin": b"",
        "short.bin": b"\x01\x02\x03",
    }
    st = open(S("models/stories260K-hf/model.safetensors"), "rb").read()
    for name, data in cases.items():
        p = os.path.join(d, name)
        open(p, "wb").write(data)
        r = lowbit("run", "-m", p, "-p", "x", "-n", "1", ok=False)
        err = r.stderr.decode(errors="replace").strip().splitlines()
        check(r.returncode == 1 and err and name in err[-1], f"{name}: exit {r.returncode}, stderr {err}")
    hf = os.path.join(d, "hf")
    os.mkdir(hf)
    open(os.path.join(hf, "config.json"), "w").write(open(S("models/stories260K-hf/config.json")).read())
    open(os.path.join(hf, "model.safetensors"), "wb").write(st[: len(st) - 1000])
    r = lowbit("run", "-m", hf, "-p", "x", "-n", "1", ok=False)
    check(r.returncode == 1 and b"model.safetensors" in r.stderr, f"truncated safetensors: {r.returncode} {r.stderr!r}")
    open(os.path.join(hf, "model.safetensors"), "wb").write(st)
    open(os.path.join(hf, "config.json"), "w").write('{"model_type": "llama", "hidden_size": "x"}')
    r = lowbit("run", "-m", hf, "-p", "x", "-n", "1", ok=False)
    check(r.returncode == 1 and b"config.json" in r.stderr, f"bad config: {r.returncode} {r.stderr!r}")

r = lowbit("run", "--help")
check(r.returncode == 0 and b"usage" in r.stdout, "run --help")
r = lowbit("run", "-m", S("models/stories260K-hf"), "-p", "x", "--ctx", "100000", ok=False)
check(r.returncode == 1 and b"context" in r.stderr, "ctx larger than trained context is an error")
r = lowbit("inspect", S("models/synth-qwen2-bias"))
check(r.returncode == 0 and b"qwen2" in r.stdout and b"attn_q.bias" in r.stdout, "inspect qwen2")

sys.exit(lbtest.finish())
