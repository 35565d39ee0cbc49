"""GPTQ side by side: lowbit quantize --gptq (calibration text in, full input second moments)
against llama.cpp with its importance matrix (llama-imatrix + llama-quantize --imatrix), with
lowbit + imatrix as the diagonal baseline. The corpus is cut in two at a line boundary as in
quant_imatrix.py: the first half calibrates (128-token chunks, BOS first), the second is held out.
Every file is --pure from the same F16 GGUF. KL(F16 || file) on the held-out half by the peer's
llama-perplexity --kl-divergence (-c 128 -b 128); LLAMA_BIN names the peer's bin folder (required).
Usage: LLAMA_BIN=/path/to/llama.cpp/build/bin quant_gptq.py LOWBIT MODEL CORPUS OUTDIR [TYPES]
Prints one JSON line per type (KL values and lowbit's quantize seconds) and a markdown table."""
import json
import os
import sys
import time

from quant_imatrix import run, setup  # the corpus split, the F16 file, both imatrices, the KL tool

TYPES = ["q2_k", "q3_k", "q4_k", "iq4_xs"]


def main():
    lowbit, model, corpus, out = sys.argv[1:5]
    types = sys.argv[5].split(",") if len(sys.argv) > 5 else TYPES
    peer = os.environ.get("LLAMA_BIN")
    if not peer:
        sys.exit("LLAMA_BIN must name the peer's bin folder (llama-imatrix, llama-quantize, llama-perplexity)")
    f16, calib, im_lb, im_peer, kl = setup(lowbit, model, corpus, out, peer)
    gptq = ["--gptq", calib, "-c", "128"]
    variants = (("lowbit_im", ["--imatrix", im_lb]), ("gptq", gptq), ("gptq_tied", gptq + ["--gptq-tied"]))
    rows = []
    for t in types:
        row = {"type": t}
        for label, extra in variants:
            p = os.path.join(out, "%s.%s.gguf" % (t, label))
            t0 = time.time()
            run(lowbit, "quantize", f16, p, "--type", t, "--pure", *extra)
            row[label + "_s"] = round(time.time() - t0, 1)
            row[label] = kl(p)
        p = os.path.join(out, "%s.peer_im.gguf" % t)
        run(os.path.join(peer, "llama-quantize"), "--pure", "--imatrix", im_peer, f16, p, t.upper())
        row["peer_im"] = kl(p)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print("\nKL(F16 || file) on the held-out half, measured by llama-perplexity --kl-divergence\n")
    print("| type | lowbit + imatrix | lowbit + GPTQ | lowbit + GPTQ --gptq-tied | llama.cpp + imatrix "
          "| GPTQ / llama.cpp+im | GPTQ tied / llama.cpp+im |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %.4g | %.4g | %.4g | %.4g | %.2fx | %.2fx |" % (
            r["type"].upper(), r["lowbit_im"], r["gptq"], r["gptq_tied"], r["peer_im"], r["gptq"] / r["peer_im"],
            r["gptq_tied"] / r["peer_im"]))


if __name__ == "__main__":
    main()
