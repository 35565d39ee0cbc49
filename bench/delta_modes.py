"""Delta modes of round 2 on stories260K-hf (base) -> stories260K-ft-dogs (a real fine-tune):
file size, ratio to the fine-tune and to the fine-tune through `lowbit compress`, KL(fine-tune ||
reconstructed) and top-1 agreement from `lowbit perplexity --kl-base` over the corpus, and greedy
agreement with the fine-tune's reference continuations (prefix of equal ids, and prompts equal in
full). Usage: python3 bench/delta_modes.py LOWBIT SHARED_DIR"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

L, S = sys.argv[1], sys.argv[2]
base, ft = os.path.join(S, "models/stories260K-hf"), os.path.join(S, "models/stories260K-ft-dogs")
ref = json.load(open(os.path.join(S, "reference/stories260K-ft-dogs/greedy.json")))
corpus = os.path.join(S, "corpus/tinystories-sampled.txt")
tmp = tempfile.mkdtemp()


def run(*a):
    return subprocess.run([L, *a], capture_output=True, check=True)


try:
    dense = os.path.getsize(os.path.join(ft, "model.safetensors"))
    lbz = {}
    for lv in (1, 19):
        z = os.path.join(tmp, "ft%d.lbz" % lv)
        run("compress", os.path.join(ft, "model.safetensors"), z, "--level", str(lv))
        lbz[lv] = os.path.getsize(z)
    print("fine-tune %d bytes; lowbit compress: %d (level 1, default), %d (level 19)" % (dense, lbz[1], lbz[19]))
    print("| mode | options | delta bytes | fine-tune / delta | compressed fine-tune (level 1) / delta | KL(ft ‖ recon) | top-1 = ft | greedy: equal prefix (ids) | prompts equal |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, opts in [("lossless xor (v1)", ["--raw"]), ("lossless zstd planes", []), ("lossless zstd planes", ["--level", "19"]),
                       ("int8 (v1)", ["--int8"]), ("1-bit sign", ["--bits", "1"]), ("mixed", ["--bits", "1.5"]),
                       ("mixed", ["--bits", "2"]), ("mixed", ["--bits", "3"]), ("mixed", ["--bits", "5"])]:
        d = os.path.join(tmp, "d.delta")
        run("delta", "create", base, ft, "-o", d, "-q", *opts)
        out = os.path.join(tmp, "rec")
        shutil.rmtree(out, ignore_errors=True)
        run("delta", "apply", base, d, "-o", out)
        r = json.loads(run("perplexity", "-m", out, "-f", corpus, "--kl-base", ft, "--json", "-t", "2").stdout)
        pre, full, tot = 0, 0, 0
        for c in ref:
            g = json.loads(run("run", "-m", out, "-p", c["prompt"], "-n", str(len(c["greedy_ids"])), "--json", "-t", "1").stdout)["ids"]
            k = 0
            while k < len(g) and k < len(c["greedy_ids"]) and g[k] == c["greedy_ids"][k]:
                k += 1
            pre += k
            tot += len(c["greedy_ids"])
            full += g == c["greedy_ids"]
        sz = os.path.getsize(d)
        print("| %s | %s | %d | %.2f | %.2f | %.2e | %.3f | %d/%d | %d/%d |" % (name, " ".join(opts) or "(default)", sz, dense / sz,
              lbz[1] / sz, r["kl"], r["top1"], pre, tot, full, len(ref)))
finally:
    shutil.rmtree(tmp, ignore_errors=True)
