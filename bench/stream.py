#!/usr/bin/env python3
"""Streaming a model larger than the memory budget (issue 14): synth llama-7b F16 (12.6 GiB) under
--mem-budget 4G, against the file's cold read speed measured in the same run.

Each repetition, alternating: the file's cold read speed two ways (page cache dropped first with
posix_fadvise(POSIX_FADV_DONTNEED), which needs no root): plain sequential 16 MiB preads (what
cat/dd see), and the way lowbit reads it (mmap, MADV_WILLNEED + MADV_POPULATE_READ per
layer-sized chunk, the readahead one chunk ahead); then `lowbit run --mem-budget 4G` from a cold cache. Reported: medians, the
streamed decode rate in tok/s and in GB/s (weights read per token x tok/s), its ratio to the faster
cold read, and the peak RSS (VmHWM from --mem-report, which counts the mapped file pages).

usage: bench/stream.py [--reps N] [--tokens N] [--threads N] [--budget 4G] [--out bench/results_stream.md]
environment: LOWBIT (default build/lowbit), LOWBIT_STREAM_MODEL (default /tmp/stream/7b.gguf; made
with lowbit synth when missing, and kept: delete it when done, it is 12.6 GiB)."""
import argparse, datetime, mmap, os, re, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
LB = os.environ.get("LOWBIT", os.path.join(HERE, "..", "build", "lowbit"))
MODEL = os.environ.get("LOWBIT_STREAM_MODEL", "/tmp/stream/7b.gguf")
MADV_POPULATE_READ = 22
CHUNK = 384 << 20  # about one llama-7b F16 layer


def drop_cache(fd):
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def timed_cold(path, read):
    """Bytes per second of read(fd, size) from a cold page cache, which is dropped again after."""
    fd = os.open(path, os.O_RDONLY)
    drop_cache(fd)
    size = os.fstat(fd).st_size
    t = time.perf_counter()
    n = read(fd, size)
    dt = time.perf_counter() - t
    drop_cache(fd)
    os.close(fd)
    return n / dt


def read_seq(fd, size):
    buf = memoryview(bytearray(16 << 20))
    off = 0
    while off < size:
        n = os.preadv(fd, [buf], off)
        if n <= 0: break
        off += n
    return off


def read_mmap(fd, size):
    """Readahead one chunk ahead of the one being faulted in: the disk always has work queued."""
    m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    m.madvise(mmap.MADV_WILLNEED, 0, min(CHUNK, size))
    for off in range(0, size, CHUNK):
        n = min(CHUNK, size - off)
        if off + n < size: m.madvise(mmap.MADV_WILLNEED, off + n, min(CHUNK, size - off - n))
        m.madvise(MADV_POPULATE_READ, off, n)
        m.madvise(mmap.MADV_DONTNEED, off, n)  # as lowbit releases a layer: RSS stays one chunk
    m.close()
    return size


def inblock_bytes():
    """Bytes the waited-for children read from storage so far (ru_inblock counts 512-byte blocks)."""
    import resource
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_inblock * 512


def run_lowbit(args):
    fd = os.open(MODEL, os.O_RDONLY)
    drop_cache(fd)
    os.close(fd)
    cmd = [LB, "run", "-m", MODEL, "-p", "Once upon a time", "-n", str(args.tokens), "-t", str(args.threads),
           "--json", "--mem-budget", args.budget, "--mem-report"]
    b0, t = inblock_bytes(), time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    out, err = p.communicate()
    wall = time.perf_counter() - t
    read = inblock_bytes() - b0
    if p.returncode != 0: sys.exit("lowbit failed: " + err[-2000:])
    gen = re.search(r"generated (\d+) tok, ([\d.]+) tok/s", err)
    pk = re.search(r"process\s+RSS [\d.]+ \S+ now, peak ([\d.]+) (MiB|GiB)", err)
    w = re.search(r"weights\s+\S+ \S+ \((\d+) bytes\)", err)
    win = re.search(r"streaming\s+window (\d+) layers, ([\d.]+) MiB", err)
    plan = re.search(r"lowbit: memory (plan: .*)", err)
    ids = re.search(r'"ids": (\[[^\]]*\])', out)
    peak = float(pk.group(1)) * (1 << (20 if pk.group(2) == "MiB" else 30))
    n, tg = int(gen.group(1)), float(gen.group(2))
    # the first generated token comes from the prompt's pass: n tokens take n - 1 passes
    return {"tok_s": (n - 1) / (n / tg), "disk": read / wall, "read": read, "peak": peak, "weights": int(w.group(1)), "ids": ids.group(1) if ids else "",
            "window": win.group(0) if win else "none", "plan": plan.group(1) if plan else ""}


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        txt = f.read()
    name = re.search(r"model name\s*: (.*)", txt).group(1)
    flags = set(re.search(r"flags\s*: (.*)", txt).group(1).split())
    return name, " ".join(x for x in ("avx2", "fma", "f16c", "avx512f") if x in flags)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", default="4G")
    ap.add_argument("--out", default=os.path.join(HERE, "results_stream.md"))
    a = ap.parse_args()
    if not os.path.exists(MODEL):
        os.makedirs(os.path.dirname(MODEL), exist_ok=True)
        subprocess.run([LB, "synth", "--preset", "llama-7b", "--dtype", "f16", "-o", MODEL], check=True)
    seq, mm, runs = [], [], []
    for i in range(a.reps):  # alternate the read measurements and lowbit
        seq.append(timed_cold(MODEL, read_seq))
        runs.append(run_lowbit(a))
        mm.append(timed_cold(MODEL, read_mmap))
        print("rep %d: seq %.0f MB/s, mmap %.0f MB/s, lowbit %.4f tok/s, read %.1f GiB at %.0f MB/s, peak %.2f GiB" %
              (i + 1, seq[-1] / 1e6, mm[-1] / 1e6, runs[-1]["tok_s"], runs[-1]["read"] / 2**30, runs[-1]["disk"] / 1e6,
               runs[-1]["peak"] / 2**30), flush=True)
    med = statistics.median
    tok = med(r["tok_s"] for r in runs)
    per_tok = runs[0]["weights"]  # every weight once per token (the embedding's rows only: conservative)
    rate, best = tok * per_tok, max(med(seq), med(mm))
    name, flags = cpu_flags()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Streaming a model larger than the memory budget (preliminary: loaded machine)",
        "",
        "Regenerate: `python3 bench/stream.py --reps %d --tokens %d --threads %d --budget %s` (LOWBIT, "
        "LOWBIT_STREAM_MODEL)." % (a.reps, a.tokens, a.threads, a.budget),
        "",
        "- date: %s; CPU: %s (%s); threads: %d; %d repetitions, medians; runs alternate read "
        "measurement and lowbit, each from a cold page cache (posix_fadvise DONTNEED)." % (now, name, flags, a.threads, a.reps),
        "- model: %s (%.2f GiB of weights), `lowbit run --mem-budget %s -n %d`" % (MODEL, per_tok / 2**30, a.budget, a.tokens),
        "- plan: %s" % runs[0]["plan"],
        "- memory report: %s" % runs[0]["window"],
        "",
        "| measure | median | runs |",
        "|---|---|---|",
        "| cold read, sequential 16 MiB pread | %.0f MB/s | %s |" % (med(seq) / 1e6, ", ".join("%.0f" % (x / 1e6) for x in seq)),
        "| cold read, mmap WILLNEED one 384 MiB chunk ahead + POPULATE_READ | %.0f MB/s | %s |" % (med(mm) / 1e6, ", ".join("%.0f" % (x / 1e6) for x in mm)),
        "| lowbit streamed decode (n - 1 passes of the generated n tokens) | %.4f tok/s | %s |" % (tok, ", ".join("%.4f" % r["tok_s"] for r in runs)),
        "| lowbit whole run: bytes read from storage (ru_inblock) / wall time | %.0f MB/s | %s |" % (
            med(r["disk"] for r in runs) / 1e6, ", ".join("%.0f (%.1f GiB)" % (r["disk"] / 1e6, r["read"] / 2**30) for r in runs)),
        "| lowbit streamed decode as read rate (tok/s x %.2f GiB) | %.0f MB/s | |" % (per_tok / 2**30, rate / 1e6),
        "| ratio to the faster cold read | %.0f%% | goal >= 80%% |" % (100 * rate / best),
        "| peak RSS (VmHWM, file pages included) | %.2f GiB | %s (budget %s) |" % (
            med(r["peak"] for r in runs) / 2**30, ", ".join("%.2f" % (r["peak"] / 2**30) for r in runs), a.budget),
        "",
        "The disk is virtual and shared with the other sessions: its cold read speed moves between runs "
        "(the first two rows); ru_inblock confirms every pass reads the streamed weights from storage.",
        "",
        "Greedy ids of the streamed runs: %s (%s)." % (runs[0]["ids"], "all runs equal" if len({r["ids"] for r in runs}) == 1 else "RUNS DIFFER"),
    ]
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
