"""Generation speed of quantized synth models beside the memory-bandwidth floor.
Usage: quant_speed.py LOWBIT BANDWIDTH_GBPS F16_MODEL WORKDIR TYPE...   (markdown rows on stdout)
Quantizes F16_MODEL to each TYPE (timing it), runs `lowbit bench -t 2 -p 64 -n 32 -r 3 --json`
and computes floor = bandwidth / bytes of weights read per token (every tensor but the token
embedding, which is only looked up)."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from quant_quality import weights_by_tensor  # noqa: E402

LOWBIT, BW, SRC, WORK = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
for typ in sys.argv[5:]:
    path = SRC if typ == "f16" else os.path.join(WORK, f"{typ}.gguf")
    qs = ""
    if typ != "f16":
        t0 = time.time()
        r = subprocess.run([LOWBIT, "quantize", SRC, path, "--type", typ, "-t", "2"], capture_output=True)
        if r.returncode:
            print(f"| {typ} | quantize failed: {r.stderr.decode()[-200:]} |", flush=True)
            continue
        qs = f"{os.path.getsize(SRC) / 1e6 / (time.time() - t0) / 2:.0f}"
    tensors = weights_by_tensor(path)
    read = sum(b for n, b in tensors.items() if n != "token_embd.weight")
    r = subprocess.run([LOWBIT, "bench", "-m", path, "-t", "2", "-p", "64", "-n", "32", "-r", "3", "--json"],
                       capture_output=True)
    if r.returncode:
        print(f"| {typ} | bench failed: {r.stderr.decode()[-200:]} |", flush=True)
        continue
    b = json.loads(r.stdout)
    floor = BW * 1e9 / read
    gen = b.get("gen_tok_s") or b.get("tg_tok_s") or b.get("generation_tok_s")
    pp = b.get("prompt_tok_s") or b.get("pp_tok_s")
    print(f"| {typ} | {os.path.getsize(path) / 2**30:.2f} GiB | {read / 2**30:.2f} GiB | {pp:.1f} | {gen:.2f} | "
          f"{floor:.1f} | {100 * gen / floor:.0f}% | {qs} |", flush=True)
    print(json.dumps(b), file=sys.stderr, flush=True)
    if typ != "f16":
        os.remove(path)
