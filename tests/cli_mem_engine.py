"""lowbit run/bench memory options: --mem-report numbers against the GGUF header read here
independently (weights = sum of tensor sizes, KV = 2 x layers x ctx x kv_heads x head_dim x
element), --mem-budget plans and refusals, bad budgets, --ctx over the trained context, and
the pressure guard on fake /proc trees (LOWBIT_MEMMON_ROOT).
usage: cli_mem_engine.sh LOWBIT_BINARY [SHARED_DIR]"""
import json, os, re, shutil, subprocess, sys, tempfile

import lbtest
from lbtest import Gguf, check

LB = lbtest.init()[0]


def lowbit(*args, env=None):
    e = dict(os.environ)
    e.pop("LOWBIT_MEMMON_ROOT", None)
    if env: e.update(env)
    p = subprocess.run([LB] + list(args), capture_output=True, text=True, errors="replace", env=e, timeout=120)
    return p.returncode, p.stdout, p.stderr

def gguf_header(path):
    """Metadata and [(name, type, dims)] from a GGUF file."""
    g = Gguf(path)
    return g.kv, [(name, ty, list(ne)) for name, (ty, ne, _off) in g.tensors.items()]

def report_numbers(err):
    m = {}
    w = re.search(r"weights\s+\S+ \S+ \((\d+) bytes\) in (\d+) tensors", err)
    if w: m["weights"], m["tensors"] = int(w.group(1)), int(w.group(2))
    k = re.search(r"KV cache\s+\S+ \S+ \((\d+) bytes\) allocated \((\d+) tokens x (\d+) bytes, (\w+)\).*\((\d+) tokens\)", err)
    if k: m["kv"], m["ctx"], m["kv_tok"], m["kv_type"], m["past"] = int(k.group(1)), int(k.group(2)), int(k.group(3)), k.group(4), int(k.group(5))
    return m

tmp = tempfile.mkdtemp(prefix="lb_cli_mem_engine_")
try:
    model = os.path.join(tmp, "tiny.gguf")
    rc, _, err = lowbit("synth", "--preset", "tiny", "--dtype", "f16", "-o", model)
    check(rc == 0, "synth tiny: " + err)
    meta, tensors = gguf_header(model)
    esize = {0: 4, 1: 2}
    weights = sum(esize[t] * eval("*".join(map(str, d))) for _, t, d in tensors)
    arch = meta["general.architecture"]
    L, heads = meta[arch + ".block_count"], meta[arch + ".attention.head_count"]
    kvh, dim = meta.get(arch + ".attention.head_count_kv", heads), meta[arch + ".embedding_length"]
    trained = meta[arch + ".context_length"]

    # --mem-report: weights = sum of tensor sizes, KV = formula, n_past = prompt + generated - 1
    hd = dim // heads
    if hd % 32:  # the tiny preset's heads do not fill Q8_0 blocks: refused, naming head_dim
        rc, out, err = lowbit("run", "-m", model, "-p", "hello", "-n", "2", "--kv-type", "q8_0")
        check(rc == 1 and "head_dim" in err, "q8_0 KV with head_dim %d: rc %d %s" % (hd, rc, err))
    for kv, elem in (("f16", 2), ("f32", 4)) + ((("q8_0", None),) if hd % 32 == 0 else ()):
        rc, out, err = lowbit("run", "-m", model, "-p", "hello", "-n", "6", "-c", "96", "--kv-type", kv, "--mem-report", "--json")
        r = report_numbers(err)
        check(rc == 0 and "memory report" in err, "run --mem-report %s: rc %d %s" % (kv, rc, err))
        check(r.get("weights") == weights and r.get("tensors") == len(tensors), "weights %s vs %d" % (r.get("weights"), weights))
        per_tok = 2 * L * kvh * (hd * elem if elem else hd // 32 * 34)  # Q8_0: 34 bytes per 32 values
        check(r.get("kv_tok") == per_tok and r.get("kv") == per_tok * 96 and r.get("ctx") == 96 and r.get("kv_type") == kv,
              "KV %s vs formula %d x 96" % (r, per_tok))
        j = json.loads(out) if rc == 0 else {"prompt_ids": [], "ids": []}
        check(r.get("past") == len(j["prompt_ids"]) + len(j["ids"]) - 1, "n_past %s vs %d ids" % (r.get("past"), len(j["ids"])))

    # Q8_0 KV on tinystories-512d (head_dim 64): 34 bytes per 32 values in the report, and a budget
    # between the Q8_0 and the F16 plan picks Q8_0
    t512 = os.path.join(sys.argv[2], "models", "tinystories-512d")
    c = json.load(open(os.path.join(t512, "config.json")))
    thd = c["hidden_size"] // c["num_attention_heads"]
    tper = 2 * c["num_hidden_layers"] * c.get("num_key_value_heads", c["num_attention_heads"]) * (thd // 32) * 34
    rc, out, err = lowbit("run", "-m", t512, "-p", "hello", "-n", "4", "-c", "64", "--kv-type", "q8_0", "--mem-report")
    r = report_numbers(err)
    check(rc == 0 and r.get("kv_type") == "q8_0" and r.get("kv_tok") == tper and r.get("kv") == tper * 64, "q8_0 KV report %s vs %d" % (r, tper))
    # Q4_0 KV: 18 bytes per 32 values; a budget that only it fits is planned when asked for
    t4 = tper // 34 * 18
    rc, out, err = lowbit("run", "-m", t512, "-p", "hello", "-n", "4", "-c", "64", "--kv-type", "q4_0", "--mem-report")
    r = report_numbers(err)
    check(rc == 0 and r.get("kv_type") == "q4_0" and r.get("kv_tok") == t4 and r.get("kv") == t4 * 64, "q4_0 KV report %s vs %d" % (r, t4))
    rc, out, err = lowbit("run", "-m", t512, "-p", "hello", "-n", "2", "--kv-type", "q5_0")
    check(rc == 2 and "q4_0" in err and "q5_0" in err, "--kv-type q5_0 refused naming the choices: " + err)
    rc, out, err = lowbit("run", "-m", t512, "-p", "hi", "-n", "1", "-c", "512", "--mem-budget", "100M")
    m = re.search(r"KV cache \(512 tokens, f16\) ([\d.]+) MiB .* = ([\d.]+) MiB <= budget", err)
    check(rc == 0 and m, "t512 plan in MiB: " + err)
    # less than the F16 total by a third of its KV cache: Q8_0 (17/32 of F16) fits, F16 does not
    between = str(int((float(m.group(2)) - float(m.group(1)) / 3) * 2**20)) if m else "1"
    rc, out, err = lowbit("run", "-m", t512, "-p", "hi", "-n", "1", "-c", "512", "--mem-budget", between, "--mem-report")
    check(rc == 0 and "plan: 512 tokens, q8_0 KV" in err and report_numbers(err).get("kv_type") == "q8_0", "budget picks q8_0: " + err)

    # a budget that fits: the plan is printed, F16 KV chosen, the report shows the planned context
    rc, out, err = lowbit("run", "-m", model, "-p", "hello", "-n", "4", "--mem-budget", "1G", "--mem-report")
    check(rc == 0 and "plan: %d tokens, f16 KV" % trained in err and "<= budget 1.00 GiB" in err, "plan 1G: " + err)
    check(report_numbers(err).get("ctx") == trained and report_numbers(err).get("kv_type") == "f16", "planned ctx in report")
    # without --ctx a tight budget shrinks the context; with --ctx it refuses, naming the parts.
    # The budget: the planned total less half the KV cache (read from a plan in MiB units). The
    # plan's runtime part starts from this process's RSS before the load, which varies by a few
    # hundred KiB from run to run (library pages mapped), so the model has a KV cache of MiBs
    # (pinned to f16: q8_0 would fit instead of a shorter context).
    rc, out, err = lowbit("run", "-m", t512, "-p", "hi", "-n", "1", "--mem-budget", "200M")
    m = re.search(r"plan: (\d+) tokens, f16 KV: .*KV cache \(\d+ tokens, f16\) ([\d.]+) MiB .* = ([\d.]+) MiB <= budget", err)
    check(rc == 0 and m, "plan in MiB: " + err)
    t_tr = int(m.group(1)) if m else 512
    tight = str(int((float(m.group(3)) - float(m.group(2)) / 2) * 2**20)) if m else "1"
    rc, out, err = lowbit("run", "-m", t512, "-p", "hi", "-n", "2", "--mem-budget", tight, "--kv-type", "f16", "--mem-report")
    m = re.search(r"plan: (\d+) tokens", err)
    check(rc == 0 and m and t_tr // 3 < int(m.group(1)) < t_tr and "context shrunk from %d" % t_tr in err, "shrunk plan: " + err)
    check(m and report_numbers(err).get("ctx") == int(m.group(1)), "session uses the shrunk context")
    rc, out, err = lowbit("run", "-m", t512, "-p", "hi", "-n", "2", "--mem-budget", tight, "--kv-type", "f16", "-c", str(t_tr))
    check(rc == 1 and "does not fit" in err and "weights" in err and "KV cache" in err and "at most" in err, "strict ctx refusal: " + err)
    for cmd in (["run", "-p", "hi"], ["bench", "-r", "1", "-p", "4", "-n", "4"]):
        rc, out, err = lowbit(*cmd, "-m", model, "--mem-budget", "1M")
        check(rc == 1 and "weights" in err and "KV cache" in err and "budget 1.00 MiB" in err, "%s tiny budget: rc %d %s" % (cmd[0], rc, err))

    # budgets that are not sizes: exit 2, a message naming the option and the problem
    for bad, why in (("abc", "not a number"), ("0", "zero"), ("-1G", "negative"), ("2P", "absurdly large"),
                     ("", "empty"), ("6Q", "unknown unit"), ("1.5", "whole number")):
        for cmd in ("run", "bench"):
            rc, out, err = lowbit(cmd, "-m", model, "-p", "4", "--mem-budget", bad)
            check(rc == 2 and "--mem-budget" in err and why in err, "%s --mem-budget %r: rc %d %s" % (cmd, bad, rc, err))
    rc, out, err = lowbit("run", "-m", model, "-p", "hi", "--mem-budget")
    check(rc == 2 and "needs a value" in err, "missing budget value")

    # --ctx over the trained context: an error in run and bench, budget or not
    rc, out, err = lowbit("run", "-m", model, "-p", "hi", "-c", str(trained + 1))
    check(rc == 1 and "trained context" in err, "run --ctx > trained: " + err)
    rc, out, err = lowbit("run", "-m", model, "-p", "hi", "-c", str(trained + 1), "--mem-budget", "1G")
    check(rc == 1 and "trained context" in err, "run --ctx > trained with budget: " + err)
    rc, out, err = lowbit("bench", "-m", model, "-r", "1", "-p", "4", "-n", "4", "-c", str(trained + 1))
    check(rc == 1 and "trained context" in err, "bench -c > trained: " + err)
    rc, out, err = lowbit("bench", "-m", model, "-r", "1", "-p", "4", "-n", str(trained))
    check(rc == 1 and "trained context" in err, "bench -n past the trained context: " + err)
    rc, out, err = lowbit("bench", "-m", model, "-r", "1", "-p", "4", "-n", "4", "-c", "64", "--mem-budget", "1G", "--json")
    check(rc == 0 and "plan: 64 tokens, f16 KV" in err and json.loads(out)["tg_tok_s"] > 0, "bench with budget: " + err)

    # the pressure guard on fake trees: critical stops early, high warns once, no cgroup is fine
    root = os.path.join(tmp, "root")
    def tree(avail_pct, cgroup=True):
        shutil.rmtree(root, ignore_errors=True)
        for d in ("proc/self", "proc/pressure"): os.makedirs(os.path.join(root, d))
        open(os.path.join(root, "proc/meminfo"), "w").write(
            "MemTotal: 1000000 kB\nMemFree: %d kB\nMemAvailable: %d kB\nCached: 0 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n" % (avail_pct * 10000, avail_pct * 10000))
        open(os.path.join(root, "proc/self/statm"), "w").write("5000 3000 1000 10 0 2000 0\n")
        open(os.path.join(root, "proc/self/status"), "w").write("VmHWM:\t 20000 kB\n")
        if cgroup: open(os.path.join(root, "proc/self/cgroup"), "w").write("0::/\n")
    env = {"LOWBIT_MEMMON_ROOT": root}
    tree(1)
    rc, out, err = lowbit("run", "-m", model, "-p", "hello", "-n", "40", "--json", env=env)
    ids = json.loads(out)["ids"] if rc == 0 else []
    check(rc == 0 and "memory pressure critical" in err and "stopping generation early" in err and 0 < len(ids) < 40,
          "critical pressure stops early: rc %d, %d ids, %s" % (rc, len(ids), err))
    tree(5)
    rc, out, err = lowbit("run", "-m", model, "-p", "hello", "-n", "40", "--json", env=env)
    ids = json.loads(out)["ids"] if rc == 0 else []
    check(rc == 0 and err.count("memory pressure high") == 1 and "available memory" in err and "stopping" not in err,
          "high pressure warns once: " + err)
    tree(50, cgroup=False)  # no /proc/self/cgroup at all
    rc, out, err = lowbit("run", "-m", model, "-p", "hello", "-n", "8", "--mem-report", env=env)
    check(rc == 0 and "pressure" not in err and "memory report" in err, "missing cgroup: " + err)
    shutil.rmtree(root)
    rc, out, err = lowbit("run", "-m", model, "-p", "hello", "-n", "8", env=env)
    check(rc == 0 and "memory guard off" in err and "meminfo" in err, "monitor cannot open: " + err)

    # weights are locked when RLIMIT_MEMLOCK allows it (the plan's lock_weights), never beyond it
    def run_limited(kib):
        p = subprocess.run(["bash", "-c", 'ulimit -l %s && exec "$0" "$@"' % kib, LB, "run", "-m", model, "-p", "hello",
                            "-n", "4", "--mem-budget", "1G"], capture_output=True, text=True, errors="replace", timeout=120)
        return p.returncode, p.stderr
    rc, err = run_limited(0)
    check(rc == 0 and "locked" not in err, "RLIMIT_MEMLOCK 0: weights not locked: " + err)
    limit = subprocess.run(["bash", "-c", "ulimit -l"], capture_output=True, text=True).stdout.strip()
    if limit == "unlimited" or int(limit) * 1024 >= os.path.getsize(model) + (1 << 20):
        rc, err = run_limited(limit)
        check(rc == 0 and "weights locked in memory" in err, "RLIMIT_MEMLOCK %s: weights locked: %s" % (limit, err))
finally:
    shutil.rmtree(tmp, ignore_errors=True)

sys.exit(lbtest.finish())
