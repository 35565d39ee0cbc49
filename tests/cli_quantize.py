"""End-to-end checks of `lowbit quantize`: every written type from a GGUF (stories260K, whose
64-wide rows force named fallbacks) and a Hugging Face folder (tinystories-512d) loads, generates
and shows its types; file types in the GGUF header; Q8_0 keeps the reference's greedy ids;
synth-bitnet in TQ1_0/TQ2_0 reproduces transformers' ternary logits and greedy ids; recipes,
--pure, --keep-output-f16; thread count does not change the bytes; bad input fails cleanly.
Usage: cli_quantize.py LOWBIT_BINARY SHARED_DIR"""
import json
import os
import sys
import tempfile

import lbtest
from lbtest import S, check, gguf_header, lowbit, read_f32, rel_err, run_json, run_logits

lbtest.init(timeout=600, report=False)

TYPES = ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "tq1_0", "tq2_0", "iq4_nl", "iq4_xs",
         "f16", "bf16"]
KQUANTS = {"q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_xs"}  # the 256-block types
# general.file_type as llama.cpp numbers it
FTYPE = {"q8_0": 7, "q4_0": 2, "q4_1": 3, "q5_0": 8, "q5_1": 9, "q2_k": 10, "q3_k": 11, "q4_k": 14, "q5_k": 16,
         "q6_k": 18, "tq1_0": 36, "tq2_0": 37, "iq4_nl": 25, "iq4_xs": 30, "f16": 1, "bf16": 32, "q4_k_m": 15, "q5_k_m": 17, "q3_k_m": 12}
# GGML type ids
TID = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q2_K": 10, "Q3_K": 11, "Q4_K": 12,
       "Q5_K": 13, "Q6_K": 14, "BF16": 30, "TQ1_0": 34, "TQ2_0": 35,
       "IQ4_NL": 20, "IQ4_XS": 23}


def greedy_json(model, prompt, n):
    r = run_json(model, prompt, n)
    return json.loads(r.stdout) if r.returncode == 0 else None


def quantize(src, out, typ, *extra):
    r = lowbit("quantize", src, out, "--type", typ, "-t", "2", *extra)
    check(r.returncode == 0 and os.path.exists(out), f"quantize {src} --type {typ}: exit {r.returncode} {r.stderr.decode()[-400:]}")
    return r.stderr.decode()


def every_type(d, src, label, n_layers_rows_fit):
    """Each written type: loads, generates, inspect shows it, file_type and tensor types right."""
    for t in TYPES:
        out = os.path.join(d, f"{label}_{t}.gguf")
        log = quantize(src, out, t)
        if not os.path.exists(out):
            continue
        kv, ts = gguf_header(out)
        check(kv.get("general.file_type") == FTYPE[t], f"{label} {t}: general.file_type {kv.get('general.file_type')}")
        check(kv.get("tokenizer.ggml.model") == "llama", f"{label} {t}: tokenizer carried over")
        check(all(ty == TID["F32"] for ty, ne in ts.values() if len(ne) == 1), f"{label} {t}: 1-D tensors must stay F32")
        want = TID[t.upper()]
        q = ts["blk.0.attn_q.weight"][0]
        if n_layers_rows_fit:
            check(q == want, f"{label} {t}: attn_q type {q}, expected {want}")
        else:  # 64-wide rows: K-quants and ternary fall back, and say so
            if t in KQUANTS or t.startswith("tq"):
                check(q != want and "do not fit" in log and "blk.0.attn_q.weight" in log,
                      f"{label} {t}: fallback not named:\n{log}")
            else:
                check(q == want, f"{label} {t}: attn_q type {q}, expected {want}")
        if t.startswith("tq"):  # ternary: embeddings stay full precision
            check(ts["token_embd.weight"][0] in (TID["F32"], TID["F16"], TID["BF16"]), f"{label} {t}: token_embd quantized")
        r = lowbit("inspect", out)
        shown = r.stdout.decode()
        check(r.returncode == 0 and any(l.split()[:2] == ["blk.0.attn_q.weight", [k for k, v in TID.items() if v == q][0]]
                                        for l in shown.splitlines() if l.strip()),
              f"{label} {t}: inspect does not show blk.0.attn_q.weight as its type")
        g = greedy_json(out, "Once upon a time", 12)
        check(g is not None and len(g["ids"]) == 12 and len(g["text"]) > 10, f"{label} {t}: does not generate")


def main():
    with tempfile.TemporaryDirectory() as d:
        # ---- stories260K (GGUF, 64-wide rows): every type, fallbacks named
        every_type(d, S("models/stories260K-gguf/stories260K.gguf"), "s260", False)
        # ---- tinystories-512d (HF folder, bf16; every dimension a multiple of 256)
        ts512 = S("models/tinystories-512d")
        every_type(d, ts512, "ts", True)
        ref = json.load(open(S("reference/tinystories-512d/greedy.json")))
        same = 0
        for p in ref:
            g = greedy_json(os.path.join(d, "ts_q8_0.gguf"), p["prompt"], 16)
            ok = g is not None and g["prompt_ids"] == p["prompt_ids"]
            if ok and g["ids"] == p["greedy_ids"][:16]:
                same += 1
        print(f"tinystories-512d Q8_0: {same} of {len(ref)} prompts keep the reference's first 16 greedy ids")
        check(same >= len(ref) - 1, f"Q8_0 greedy ids: only {same} of {len(ref)} prompts match for 16 tokens")

        # ---- recipes, --pure, --keep-output-f16 (tied head = token_embd)
        out = os.path.join(d, "ts_q4_k_m.gguf")
        quantize(ts512, out, "q4_k_m")
        kv, ts = gguf_header(out)
        check(kv.get("general.file_type") == 15, "q4_k_m file_type")
        check(ts["token_embd.weight"][0] == TID["Q6_K"], "q4_k_m: tied head at Q6_K")
        # llama.cpp's layers with more bits: first and last eighth, every third between (2 and 5 of 6)
        more = [l for l in range(6) if l < 6 // 8 or l >= 7 * 6 // 8 or (l - 6 // 8) % 3 == 2]
        for l in range(6):
            w = TID["Q6_K"] if l in more else TID["Q4_K"]
            check(ts[f"blk.{l}.attn_v.weight"][0] == w and ts[f"blk.{l}.ffn_down.weight"][0] == w,
                  f"q4_k_m: layer {l} attn_v/ffn_down type")
        check(ts["blk.0.attn_q.weight"][0] == TID["Q4_K"], "q4_k_m: attn_q at Q4_K")
        _, ts = gguf_header(os.path.join(d, "ts_q4_k.gguf"))
        check(ts["token_embd.weight"][0] == TID["Q6_K"], "q4_k: head at Q6_K by default")
        out = os.path.join(d, "ts_q4_k_pure.gguf")
        quantize(ts512, out, "q4_k", "--pure")
        _, ts = gguf_header(out)
        check(all(ty == TID["Q4_K"] for ty, ne in ts.values() if len(ne) == 2), "--pure: every matrix Q4_K")
        out = os.path.join(d, "ts_q4_0_f16.gguf")
        quantize(ts512, out, "q4_0", "--keep-output-f16")
        _, ts = gguf_header(out)
        check(ts["token_embd.weight"][0] == TID["F16"] and ts["blk.0.attn_q.weight"][0] == TID["Q4_0"], "--keep-output-f16")

        # ---- threads do not change the bytes
        a, b = os.path.join(d, "t1.gguf"), os.path.join(d, "t2.gguf")
        lowbit("quantize", ts512, a, "--type", "q3_k_m", "-t", "1")
        lowbit("quantize", ts512, b, "--type", "q3_k_m", "-t", "2")
        check(os.path.exists(a) and open(a, "rb").read() == open(b, "rb").read(), "-t 1 and -t 2 outputs differ")

        # ---- synth-bitnet: transformers' ternary BitNet logits and greedy ids
        bref = json.load(open(S("reference/synth-bitnet/reference.json")))
        want = read_f32(S("reference/synth-bitnet", bref["logits_ternary_file"]))
        nv = bref["logits_ternary_shape"][1]
        for t in ("tq1_0", "tq2_0"):
            out = os.path.join(d, f"bitnet_{t}.gguf")
            quantize(S("models/synth-bitnet"), out, t, "--no-tokenizer")
            _, ts = gguf_header(out)
            check(ts["blk.0.attn_q.weight"][0] == TID[t.upper()] and "blk.0.attn_q.scale" in ts, f"bitnet {t}: tensor types")
            lf = os.path.join(d, "l.f32")
            ids = bref["input_ids"] + bref["greedy_ids_ternary"]
            r = run_logits(out, ids, lf, "-t", "1")
            if r.returncode:
                check(False, f"bitnet {t}: logits failed {r.stderr.decode()}")
                continue
            got = read_f32(lf)
            n_in = len(bref["input_ids"])
            e = rel_err(got[:n_in * nv], want)
            print(f"synth-bitnet {t}: relative error {e:.2e} against logits_ternary")
            check(e < 2e-3, f"bitnet {t}: relative error {e:.3e} >= 2e-3")
            # greedy: the argmax at each position of prompt + reference continuation is the next id
            arg = [max(range(nv), key=lambda v: got[p * nv + v]) for p in range(len(ids))]
            greedy = arg[n_in - 1:n_in - 1 + len(bref["greedy_ids_ternary"])]
            check(greedy == bref["greedy_ids_ternary"], f"bitnet {t}: greedy {greedy} != {bref['greedy_ids_ternary']}")

        # ---- bad input
        out = os.path.join(d, "bad.gguf")
        r = lowbit("quantize", ts512, out, "--type", "q9_9")
        check(r.returncode != 0 and b"unknown quantization type 'q9_9'" in r.stderr and not os.path.exists(out),
              f"unknown type: {r.returncode} {r.stderr}")
        r = lowbit("quantize", os.path.join(d, "missing.gguf"), out, "--type", "q8_0")
        check(r.returncode != 0 and b"missing.gguf" in r.stderr and not os.path.exists(out), f"missing input: {r.stderr}")
        junk = os.path.join(d, "junk.gguf")
        with open(junk, "wb") as f:
            f.write(b"GGUF" + b"\xff" * 60)
        r = lowbit("quantize", junk, out, "--type", "q8_0")
        check(r.returncode not in (0, -11, -6) and r.stderr.startswith(b"lowbit: ") and not os.path.exists(out),
              f"corrupt input: {r.returncode} {r.stderr}")
        r = lowbit("quantize", ts512, os.path.join(d, "no", "such", "dir.gguf"), "--type", "q8_0")
        check(r.returncode != 0 and r.stderr.startswith(b"lowbit: "), f"unwritable output: {r.stderr}")
        r = lowbit("quantize", ts512, out)
        check(r.returncode == 2, "missing --type is a usage error")
    return lbtest.finish()


sys.exit(main())
