"""Issue 11, findings 6 and 10 (part B): every numeric option out of range exits 2 with a message
naming the option and what is allowed; -t above the thread pool's cap names the cap; a tiny
--mem-budget is printed in bytes, not "0.00 MiB"; the KV cache defaults to f16 (as llama.cpp),
keeps the greedy ids of f32 KV on stories260K, and a budget never changes it silently.
Usage: cli_harden_b.py LOWBIT_BINARY SHARED_DIR"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import lbtest
from lbtest import M, check, lowbit, run_json

lbtest.init(timeout=120, report=False)
GGUF = M("stories260K-gguf", "stories260K.gguf")


def usage_error(args, must_name):
    """args exit 2 and stderr names every string of must_name."""
    try:
        r = lowbit(*args)
    except subprocess.TimeoutExpired:  # e.g. serve accepting the value and serving
        return check(False, f"{' '.join(args)}: accepted (still running after the timeout)")
    err = r.stderr.decode(errors="replace")
    check(r.returncode == 2 and all(s in err for s in must_name),
          f"{' '.join(args)}: exit {r.returncode}, stderr {err!r} (wanted exit 2 naming {must_name})")


# finding 6: out-of-range sampling options say what is allowed (before the fix: nothing on stderr)
RUN = ["run", "-m", GGUF, "-p", "hi"]
usage_error(RUN + ["--temp", "-1"], ["--temp", "-1", "allowed", "0 to 100"])
usage_error(RUN + ["--temp", "nan"], ["--temp", "not a number"])
usage_error(RUN + ["--top-p", "2"], ["--top-p", "allowed", "up to 1"])
usage_error(RUN + ["--min-p", "-0.5"], ["--min-p", "allowed", "0 to 1"])
usage_error(RUN + ["--repeat-penalty", "0"], ["--repeat-penalty", "allowed", "above 0"])
usage_error(RUN + ["-n", "-3"], ["-n", "[0,"])
usage_error(RUN + ["--top-k", "x"], ["--top-k", "not an integer"])
# finding 10: -t 1000 was silently capped at 512 by the thread pool; every command names the cap
for cmd in (RUN, ["bench", "-m", GGUF], ["logits", "-m", GGUF, "--ids", "1"], ["perplexity", "-m", GGUF],
            ["serve", "-m", GGUF]):
    usage_error(cmd + ["-t", "1000"], ["1000", "512"])

# finding 10: --mem-budget 1 printed "budget 0.00 MiB"
r = lowbit(*RUN, "-n", "1", "--mem-budget", "1")
err = r.stderr.decode(errors="replace")
check(r.returncode == 1 and "budget 1 B" in err and "0.00" not in err.split("budget")[-1],
      f"--mem-budget 1: exit {r.returncode}, {err!r}")

# finding 10: f16 KV by default; the greedy ids of stories260K match f32 KV (reference-exact path)
d16, d32 = run_json(GGUF, "Once upon a time", 24), run_json(GGUF, "Once upon a time", 24, "--kv-type", "f32")
check(d16.returncode == 0 and d32.returncode == 0 and json.loads(d16.stdout)["ids"] == json.loads(d32.stdout)["ids"],
      "default (f16) KV and f32 KV give the same greedy ids on stories260K")
r = lowbit(*RUN, "-n", "1", "--mem-budget", "1G")
err = r.stderr.decode(errors="replace")
check(r.returncode == 0 and "f16 KV" in err and "changes the KV cache" not in err,
      f"a roomy budget keeps the f16 default without a note: {err!r}")
r = lowbit(*RUN, "-n", "1", "--mem-budget", "1G", "--kv-type", "f32")
err = r.stderr.decode(errors="replace")
check(r.returncode == 0 and "f32 KV" in err, f"--kv-type f32 with a budget stays f32: {err!r}")


# finding 8: a NaN, inf or huge weight is refused by quantize, naming the tensor and the element
# (before: NaN blocks in q4_k, inf in q8_0/q4_0, zeros in q6_k, exit 0)
def poked(value, d):
    g = lbtest.Gguf(GGUF, 1 << 20)
    off = g.data + g.tensors["blk.0.attn_q.weight"][2] + 4 * 5
    with open(GGUF, "rb") as f:
        b = bytearray(f.read())
    struct.pack_into("<f", b, off, value)
    p = os.path.join(d, "poked.gguf")
    with open(p, "wb") as f:
        f.write(b)
    return p


with tempfile.TemporaryDirectory() as d:
    for value, typ, words in ((float("nan"), "q8_0", ["NaN", "not finite"]), (float("inf"), "q4_0", ["inf"]),
                              (1e30, "q4_k", ["1e+30", "beyond"]), (3e38, "q6_k", ["3e+38", "beyond"])):
        out = os.path.join(d, "out.gguf")
        r = lowbit("quantize", poked(value, d), out, "--type", typ)
        err = r.stderr.decode(errors="replace")
        check(r.returncode == 1 and "blk.0.attn_q.weight" in err and "element 5" in err and all(w in err for w in words)
              and not os.path.exists(out), f"quantize {typ} of a {value} weight: exit {r.returncode}, {err!r}")

sys.exit(lbtest.finish())
