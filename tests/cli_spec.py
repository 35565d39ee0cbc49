"""lowbit run --draft / --lookup end to end: greedy ids equal the tinystories-512d references (a
stories260K draft, a Q4_0 copy of the target as draft, lookup), with the default F16 KV cache and
with F32; the help names the options; bad combinations and a draft of another vocabulary fail
with a clear message. Usage: cli_spec.py LOWBIT_BINARY SHARED_DIR"""
import json
import os
import sys
import tempfile

import lbtest
from lbtest import M, S, check, lowbit, run_json

lbtest.init(timeout=600)
refs = json.load(open(S("reference/tinystories-512d/greedy.json")))
target, stories = M("tinystories-512d"), M("stories260K-gguf/stories260K.gguf")

with tempfile.TemporaryDirectory() as d:
    q4 = os.path.join(d, "tiny-q4_0.gguf")
    check(lowbit("quantize", target, q4, "--type", "q4_0").returncode == 0, "quantize the Q4_0 draft")
    modes = [("--draft", stories), ("--draft", q4, "--draft-max", "5"), ("--lookup", "3"),
             ("--draft", stories, "--kv-type", "f32", "--draft-min-p", "0.3")]
    for extra in modes:
        for i, ref in enumerate(refs):
            r = run_json(target, ref["prompt"], len(ref["greedy_ids"]), *extra)
            if r.returncode:
                check(False, f"{extra} prompt {i}: exit {r.returncode}: {r.stderr.decode(errors='replace')}")
                continue
            ids = json.loads(r.stdout)["ids"]
            check(ids == ref["greedy_ids"], f"{extra} prompt {i}: greedy ids differ:\n  ours {ids}\n  ref  {ref['greedy_ids']}")
            check(b"speculative (" in r.stderr and b"accepted" in r.stderr, f"{extra}: no acceptance line")

h = lowbit("run", "--help").stdout.decode()
for opt in ("--draft MODEL", "--draft-max K", "--draft-min-p P", "--lookup N"):
    check(opt in h, f"run --help lacks {opt}")
bad = [(["--draft", stories, "--lookup", "2"], b"not both"),
       (["--draft-max", "64", "--lookup", "2"], b"--draft-max"),
       (["--draft", M("synth-llama3-gqa")], b"vocabulary has 32000 tokens"),
       (["--draft", "/nonexistent/draft.gguf"], b"/nonexistent/draft.gguf")]
for extra, msg in bad:
    r = lowbit("run", "-m", target, "-p", "Once", "-n", "4", *extra, ok=False)
    check(r.returncode != 0 and msg in r.stderr, f"{extra}: exit {r.returncode}, {r.stderr[-300:]}")
sys.exit(lbtest.finish())
