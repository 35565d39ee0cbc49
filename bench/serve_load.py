"""Load driver for `lowbit serve` (and llama.cpp's llama-server side by side): N concurrent
streaming clients on 127.0.0.1 for a set time, each sending /v1/completions with "stream": true
one after another. Reports aggregate generated tok/s, time to first token (TTFT) p50/p99,
per-token latency (time per output token after the first, per request) p50/p99, requests and
errors (non-200 answers, streams without [DONE], broken connections) as a markdown table with
the date, CPU flags and threads.

usage: python3 bench/serve_load.py LOWBIT MODEL [-c 1,8,32,64] [-d SECONDS] [-t THREADS]
           [-n MAX_TOKENS] [--ctx N] [-o FILE.md] [--soak]
  LLAMA_SERVER=/path/to/llama-server  also start llama-server on the same file (GGUF) with -np
                                       equal to the client count and -cb, alternating with lowbit
  --soak   64 clients for 60 s; exits 1 on any error (the issue's no-error run)

Bounded: loopback only, at most 256 clients, 600 s per run, 100000 requests per run; each
server is started per client count with that many slots and stopped (SIGTERM) after it."""
import argparse
import datetime
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
MAX_CLIENTS, MAX_SECONDS, MAX_REQUESTS = 256, 600, 100000
PROMPTS = ["Once upon a time", "The little dog", "Tom and his sister went to the park", "A girl named Lily found a box",
           "One day, a cat", "The sun was hot and the children"]


class Server:
    """A server process on a free port of 127.0.0.1, ready once /health answers 200."""

    def __init__(self, cmd, port):
        self.port = port
        self.p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = []
        threading.Thread(target=lambda: [self.log.append(ln) for ln in self.p.stderr], daemon=True).start()
        t0 = time.time()
        while time.time() - t0 < 300:
            if self.p.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited ({self.p.returncode}): {''.join(self.log[-10:])}")
            if self.port is None:  # lowbit prints the port it took
                m = re.search(r"http://127\.0\.0\.1:(\d+)", "".join(self.log))
                self.port = int(m.group(1)) if m else None
            if self.port and health(self.port):
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{cmd[0]} did not become ready: {''.join(self.log[-10:])}")

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def health(port):
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=2)
        c.request("GET", "/health")
        return c.getresponse().status == 200
    except OSError:
        return False


def engine_steps(port):
    """lowbit's /metrics: (engine steps, ids they ran, seconds inside them); None for a peer."""
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    except OSError:
        return None
    v = dict(re.findall(r"^lowbit_(\w+) ([0-9.eE+-]+)$", text, re.M))
    try:
        return float(v["engine_steps_total"]), float(v["engine_batch_tokens_total"]), float(v["engine_seconds_total"])
    except KeyError:
        return None


def free_port():
    import socket
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def one_request(port, body, timeout):
    """Sends one streaming completion; returns (ok, ttft, n_tokens, t_first, t_last)."""
    t0 = time.time()
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            r.read()
            return False, 0, 0, 0, 0
        first = last = None
        chunks, usage, done = 0, None, False
        for raw in r:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            j = json.loads(line[6:])
            if j.get("usage"):
                usage = j["usage"].get("completion_tokens")
            for ch in j.get("choices", []):
                # a token's chunk may carry empty text (a synth model's bytes that do not yet form
                # a UTF-8 character): llama-server sends it anyway, so it counts as an event; a
                # chunk with finish_reason ends the answer where a server sends no [DONE]
                if "text" in ch and ch.get("finish_reason") is None:
                    last = time.time()
                    first = first or last
                    chunks += 1
                if ch.get("finish_reason"):
                    done = True
        n = usage if usage is not None else chunks
        return done and first is not None, (first or t0) - t0, n, first or 0, last or 0
    except (OSError, ValueError, http.client.HTTPException):
        return False, 0, 0, 0, 0
    finally:
        c.close()


def drive(port, clients, seconds, max_tokens):
    """clients threads, each sending requests back to back until `seconds` pass."""
    end = time.time() + seconds
    lock = threading.Lock()
    res = {"ttft": [], "tpot": [], "tokens": 0, "requests": 0, "errors": 0}

    def client(k):
        i = 0
        while time.time() < end:
            with lock:
                if res["requests"] >= MAX_REQUESTS:
                    return
                res["requests"] += 1
            body = {"prompt": PROMPTS[(k + i) % len(PROMPTS)], "max_tokens": max_tokens, "temperature": 0,
                    "seed": k * 1000 + i, "stream": True, "stream_options": {"include_usage": True}}
            ok, ttft, n, t1, t2 = one_request(port, body, timeout=seconds + 120)
            with lock:
                if not ok:
                    res["errors"] += 1
                    continue
                res["ttft"].append(ttft)
                res["tokens"] += n
                if n > 1:
                    res["tpot"].append((t2 - t1) / (n - 1))
            i += 1

    t0 = time.time()
    ts = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    res["wall"] = time.time() - t0  # in-flight requests finish after the deadline: counted in
    return res


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def cpu_flags():
    try:
        flags = re.search(r"^flags\s*:(.*)$", open("/proc/cpuinfo").read(), re.M).group(1).split()
        model = re.search(r"^model name\s*:(.*)$", open("/proc/cpuinfo").read(), re.M).group(1).strip()
    except (OSError, AttributeError):
        return "unknown"
    keep = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx_vnni") if f in flags]
    return f"{model} ({' '.join(keep)})"


def start(kind, a, clients):
    n_ctx = a.ctx
    if kind == "lowbit":
        cmd = [a.lowbit, "serve", "-m", a.model, "--host", HOST, "--port", "0", "-np", str(clients), "--ctx", str(n_ctx),
               "--queue", str(max(64, clients * 2))]
        return Server(cmd + (["-t", str(a.threads)] if a.threads else []), None)
    port = free_port()  # -c is split over the -np slots: each gets n_ctx, as each lowbit slot does
    cmd = [os.environ["LLAMA_SERVER"], "-m", a.model, "--host", HOST, "--port", str(port), "-np", str(clients), "-cb",
           "-c", str(n_ctx * clients), "-n", str(a.max_tokens)]
    return Server(cmd + (["-t", str(a.threads)] if a.threads else []), port)


def bandwidth(lowbit, threads):
    """Read bandwidth in GB/s from bench_bandwidth beside the lowbit binary ('-' without it)."""
    exe = os.path.join(os.path.dirname(os.path.abspath(lowbit)), "bench_bandwidth")
    n = threads or os.cpu_count()
    try:
        out = subprocess.run([exe, str(n)], capture_output=True, text=True, timeout=120).stdout
        return re.search(r"%d threads?\s*:\s+([0-9.]+) GB/s median" % n, out).group(1)
    except (OSError, subprocess.SubprocessError, AttributeError):
        return "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("lowbit")
    ap.add_argument("model")
    ap.add_argument("-c", "--clients", default="1,8,32,64")
    ap.add_argument("-d", "--duration", type=float, default=30)
    ap.add_argument("-t", "--threads", type=int, default=0)
    ap.add_argument("-n", "--max-tokens", type=int, default=64)
    ap.add_argument("--ctx", type=int, default=256, help="context per slot (prompt + max tokens fit)")
    ap.add_argument("-o", "--out", help="append the markdown table to this file")
    ap.add_argument("--soak", action="store_true", help="64 clients for 60 s; exit 1 on any error")
    a = ap.parse_args()
    if a.soak:
        a.clients, a.duration = "64", 60
    counts = [int(x) for x in a.clients.split(",")]
    if not all(1 <= n <= MAX_CLIENTS for n in counts) or not 0 < a.duration <= MAX_SECONDS:
        sys.exit(f"clients must be 1..{MAX_CLIENTS} and the duration 0..{MAX_SECONDS} s")
    kinds = ["lowbit"]
    if os.environ.get("LLAMA_SERVER"):
        if a.model.endswith(".gguf"):
            kinds.append("llama-server")
        else:
            print("LLAMA_SERVER is set but the model is not a GGUF file: lowbit only", file=sys.stderr)
    rows, errors = [], 0
    bw0 = bandwidth(a.lowbit, a.threads)
    for n in counts:
        for kind in kinds:  # alternating per client count, so both see the same machine state
            srv = start(kind, a, n)
            try:
                r = drive(srv.port, n, a.duration, a.max_tokens)
                es = engine_steps(srv.port) if kind == "lowbit" else None
            finally:
                srv.stop()
            errors += r["errors"]
            rows.append(f"| {n} | {kind} | {r['requests']} | {r['tokens'] / r['wall']:.1f} | {pct(r['ttft'], 50) * 1e3:.0f} | "
                        f"{pct(r['ttft'], 99) * 1e3:.0f} | {pct(r['tpot'], 50) * 1e3:.1f} | {pct(r['tpot'], 99) * 1e3:.1f} | {r['errors']} |")
            if es and es[0]:  # where the time went: ids per engine step, share of wall inside the engine
                print(f"  {kind} {n} clients: {es[0]:.0f} steps, {es[1] / es[0]:.1f} ids/step, "
                      f"{es[2] / es[0] * 1e3:.1f} ms/step, engine busy {es[2] / r['wall'] * 100:.0f}% of wall", file=sys.stderr)
            print(rows[-1], file=sys.stderr)
    bw1 = bandwidth(a.lowbit, a.threads)
    head = (f"### lowbit serve load, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n\n"
            f"model `{os.path.basename(a.model.rstrip('/'))}`, CPU {cpu_flags()}, {os.cpu_count()} cores, "
            f"threads {a.threads or 'all'}, read bandwidth {bw0} GB/s before and {bw1} after, {a.duration:g} s per row, max_tokens {a.max_tokens}, ctx {a.ctx} per slot, "
            f"slots = clients{', llama-server -cb' if len(kinds) > 1 else ''}\n\n"
            "| clients | server | requests | tok/s | TTFT p50 ms | TTFT p99 ms | per-token p50 ms | per-token p99 ms | errors |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    table = head + "\n".join(rows) + "\n"
    print(table)
    if a.out:
        with open(a.out, "a") as f:
            f.write(table + "\n")
    return 1 if a.soak and errors else 0


if __name__ == "__main__":
    sys.exit(main())
