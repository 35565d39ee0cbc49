"""lowbit run (and lowbit memplan) under a --mem-budget below the weights: the plan says it streams (and the window),
--mem-report names the window, the greedy ids equal the run with every weight resident, and the
process's peak RSS (VmHWM, which counts the mapped file pages) stays under the budget while the
resident run's peak is above it; a budget below one layer + KV is refused naming both.
tinystories-512d (BF16 used in place, 6 MiB layers, tied 0.5 MiB head) keeps it fast.
usage: cli_stream.sh LOWBIT_BINARY [SHARED_DIR]"""
import json, os, re, shutil, sys, tempfile

import lbtest
from lbtest import check, lowbit

_, SHARED = lbtest.init()
MiB = 1 << 20


def peak(err):
    """VmHWM from --mem-report's process line ("peak 41.20 MiB")."""
    m = re.search(r"process\s+RSS [\d.]+ \S+ now, peak ([\d.]+) (KiB|MiB|GiB)", err)
    return float(m.group(1)) * {"KiB": 1 << 10, "MiB": MiB, "GiB": 1 << 30}[m.group(2)] if m else None


def run(model, *extra):
    r = lowbit("run", "-m", model, "-p", "Once upon a time", "-n", "12", "-t", "1", "--ctx", "64", "--json",
               "--mem-report", *extra, ok=False)
    err = r.stderr.decode(errors="replace")
    ids = json.loads(r.stdout.decode().strip().splitlines()[-1])["ids"] if r.returncode == 0 else None
    return r.returncode, ids, err


tmp = tempfile.mkdtemp(prefix="cli_stream_")
try:
    model = lbtest.M("tinystories-512d")
    weights = os.path.getsize(os.path.join(model, "model.safetensors"))
    rc, ids0, err0 = run(model)
    check(rc == 0 and ids0 and len(ids0) == 12, "resident run: %s" % err0[-400:])
    # a budget well below the weights: the runtime (about 10 MiB: the process before the model,
    # lowbit's code, stacks) + KV and scratch + a window of a few layers
    budget = 27 * MiB + weights // 3
    rc, ids1, err1 = run(model, "--mem-budget", "%dK" % (budget // 1024))
    check(rc == 0, "streamed run: %s" % err1[-600:])
    check(re.search(r"plan: streaming: window \d+ layers", err1) is not None, "plan names streaming: %s" % err1[:600])
    check(re.search(r"streaming\s+window \d+ layers, [\d.]+ MiB", err1) is not None, "--mem-report window: %s" % err1[-800:])
    check(ids1 == ids0, "greedy ids: %s vs %s" % (ids1, ids0))
    p0, p1 = peak(err0), peak(err1)
    check(p1 is not None and p1 < budget, "peak RSS %s under the budget %d" % (p1, budget))
    check(p0 is not None and p0 > budget, "the resident run's peak %s is over the budget %d (the test means something)" % (p0, budget))
    # not even one layer (6 MiB) beside the runtime, KV (3 MiB) and scratch
    rc, _, err = run(model, "--mem-budget", "16M")
    check(rc == 1 and "streaming needs one unit" in err and "over the budget" in err, "refusal: %s" % err[-600:])
    # --kv-type and --ctx are kept while streaming
    rc, ids2, err = run(model, "--mem-budget", "%dK" % (budget // 1024), "--kv-type", "f32")
    check(rc == 0 and "f32 KV" in err and "streaming" in err, "f32 KV streamed: %s" % err[-400:])
    # lowbit memplan: the same plan without running
    r = lowbit("memplan", "-m", model, "--mem-budget", "%dK" % (budget // 1024), "--ctx", "64", ok=False)
    out, err = r.stdout.decode(), r.stderr.decode(errors="replace")
    check(r.returncode == 0 and re.match(r"streaming: window \d+ layers; context 64 tokens, f16 KV", out), "memplan: %s %s" % (out, err))
    # the same plan but for the runtime part (each process's own RSS before the load) and the sums
    mask = lambda e: re.sub(r"(runtime|=) [\d.]+ MiB", r"\1 N MiB", e)
    check(mask(err.split(" (KV types")[0]) in mask(err1), "memplan's plan is run's: %s" % err)
    r = lowbit("memplan", "-m", model, "--mem-budget", "1G", ok=False)
    check(r.returncode == 0 and r.stdout.decode().startswith("resident: "), "memplan resident: %s" % r.stdout)
    r = lowbit("memplan", "-m", model, "--mem-budget", "16M", ok=False)
    check(r.returncode == 1 and b"streaming needs one unit" in r.stderr, "memplan refusal: %s" % r.stderr[-300:])
    check(lowbit("memplan", "--help").returncode == 0, "memplan --help")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

sys.exit(lbtest.finish())
