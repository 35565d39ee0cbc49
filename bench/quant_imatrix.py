"""Calibrated quantization side by side: lowbit with its own importance matrix against llama.cpp
with its own (llama-imatrix + llama-quantize --imatrix), and both without one. The corpus is cut
in two at a line boundary: the first half calibrates (128-token chunks, BOS first), the second is
held out. Every file is --pure (every matrix in the type) from the same F16 GGUF. KL(F16 || file)
on the held-out half by the peer's llama-perplexity --kl-divergence (-c 128 -b 128) when LLAMA_BIN
names the peer's bin folder, else by `lowbit perplexity --kl-base` (the same windows; the table
says which tool measured).
Usage: LLAMA_BIN=/path/to/llama.cpp/build/bin quant_imatrix.py LOWBIT MODEL CORPUS OUTDIR [TYPES]
Prints one JSON line per file and a markdown table."""
import json
import os
import re
import subprocess
import sys

TYPES = ["q2_k", "q3_k", "q4_k", "iq4_xs", "q6_k", "q8_0"]


def run(*cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode:
        sys.exit("failed: %s\n%s" % (" ".join(map(str, cmd)), r.stderr[-2000:]))
    return r.stdout + r.stderr


def setup(lowbit, model, corpus, out, peer):
    """The corpus cut in two (calibration / held out), the F16 GGUF, lowbit's importance matrix and,
    with a peer, llama-imatrix's and the F16 KL base; returns (f16, calib, im_lb, im_peer, kl) where
    kl(path) is KL(F16 || path) on the held-out half (the peer's tool, else lowbit's)."""
    os.makedirs(out, exist_ok=True)
    text = open(corpus).read()
    cut = text.find("\n", len(text) // 2) + 1
    calib, held = os.path.join(out, "calib.txt"), os.path.join(out, "held.txt")
    open(calib, "w").write(text[:cut])
    open(held, "w").write(text[cut:])
    f16 = os.path.join(out, "f16.gguf")
    run(lowbit, "quantize", model, f16, "--type", "f16")
    im_lb = os.path.join(out, "lowbit.imatrix.dat")
    run(lowbit, "imatrix", "-m", f16, "-f", calib, "-o", im_lb, "-c", "128")
    im_peer = base_kld = None
    if peer:
        im_peer = os.path.join(out, "peer.imatrix.dat")
        run(os.path.join(peer, "llama-imatrix"), "-m", f16, "-f", calib, "-o", im_peer, "-c", "128", "-b", "128",
            "--no-ppl")
        base_kld = os.path.join(out, "f16.kld")
        run(os.path.join(peer, "llama-perplexity"), "-m", f16, "-f", held, "-c", "128", "-b", "128",
            "--kl-divergence-base", base_kld)

    def kl(path):
        if peer:
            o = run(os.path.join(peer, "llama-perplexity"), "-m", path, "-f", held, "-c", "128", "-b", "128",
                    "--kl-divergence-base", base_kld, "--kl-divergence")
            m = re.search(r"Mean\s+KLD:\s+([0-9.eE+-]+)", o)
            return float(m.group(1)) if m else None
        o = run(lowbit, "perplexity", "-m", path, "-f", held, "-c", "128", "--kl-base", f16, "--json")
        return json.loads(o.splitlines()[0])["kl"]

    return f16, calib, im_lb, im_peer, kl


def main():
    lowbit, model, corpus, out = sys.argv[1:5]
    types = sys.argv[5].split(",") if len(sys.argv) > 5 else TYPES
    peer = os.environ.get("LLAMA_BIN")
    f16, calib, im_lb, im_peer, kl = setup(lowbit, model, corpus, out, peer)

    rows = []
    for t in types:
        row = {"type": t}
        for label, im in (("lowbit", None), ("lowbit_im", im_lb)):
            p = os.path.join(out, "%s.%s.gguf" % (t, label))
            run(lowbit, "quantize", f16, p, "--type", t, "--pure", *(["--imatrix", im] if im else []))
            row[label] = kl(p)
        if peer:
            for label, im in (("peer", None), ("peer_im", im_peer)):
                p = os.path.join(out, "%s.%s.gguf" % (t, label))
                run(os.path.join(peer, "llama-quantize"), "--pure", *(["--imatrix", im] if im else []), f16, p,
                    t.upper())
                row[label] = kl(p)
        print(json.dumps(row), flush=True)
        rows.append(row)
    tool = "llama-perplexity --kl-divergence" if peer else "lowbit perplexity --kl-base"
    print("\nKL(F16 || file) on the held-out half, measured by %s\n" % tool)
    if peer:
        print("| type | lowbit | lowbit + imatrix | llama.cpp | llama.cpp + imatrix | lowbit+im / llama.cpp+im |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print("| %s | %.4g | %.4g | %.4g | %.4g | %.2fx |" % (r["type"].upper(), r["lowbit"], r["lowbit_im"], r["peer"],
                                                           r["peer_im"], r["lowbit_im"] / r["peer_im"]))
    else:
        print("| type | lowbit | lowbit + imatrix | with / without |")
        print("|---|---|---|---|")
        for r in rows:
            print("| %s | %.4g | %.4g | %.3fx |" % (r["type"].upper(), r["lowbit"], r["lowbit_im"], r["lowbit_im"] / r["lowbit"]))


if __name__ == "__main__":
    main()
