"""lowbit serve end to end: a server on 127.0.0.1 (a free port it picks itself), driven by curl and
raw sockets. Greedy output through the server equals `lowbit run` greedy; SSE streams equal the
non-streamed text; errors come in OpenAI's shape with the right codes; abuse (malformed JSON,
wrong types, oversized bodies, bad UTF-8, dropped connections, a slowloris client, cancelled
streams, wrong keys) gets a clean 4xx or a closed connection while the server keeps serving;
greedy and seeded requests give the same tokens alone and beside 31 others (one batch, base and
delta mixed); a delta served with --delta gives `lowbit run --delta` greedy; a repeated prompt is
taken from the prefix cache with the same output; SIGTERM exits 0 (under ASan, LeakSanitizer
checks for leaks at that exit). The official openai npm client and a real browser (tests/node)
run when their packages are installed."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import lbtest as T  # noqa: E402

LOWBIT, SHARED = T.init(timeout=120)
HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "test-key-123"
AUTH = ["-H", "Authorization: Bearer " + KEY]


class Server:
    def __init__(self, model, *args):
        self.p = subprocess.Popen([LOWBIT, "serve", "-m", model, "--port", "0", *args], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.port = None
        ready = threading.Event()

        def read():
            for line in self.p.stderr:
                self.lines.append(line)
                m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
                if m and not self.port:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(60)
        if not self.port:
            raise RuntimeError("server did not start: " + "".join(self.lines))
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        time.sleep(0.2)
        return self.p.returncode


def curl(url, *args, body=None, timeout=60):
    """(status, body text, headers text) of one curl request."""
    cmd = ["curl", "-s", "-S", "-D", "-", "--max-time", str(timeout), url, *args]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
    r = subprocess.run(cmd, input=body.encode() if isinstance(body, str) else body, capture_output=True, timeout=timeout + 10)
    out = r.stdout.decode("utf-8", "replace")
    head, _, rest = out.partition("\r\n\r\n")
    while rest.startswith("HTTP/") and head.startswith("HTTP/1.1 100"):
        head, _, rest = rest.partition("\r\n\r\n")
    m = re.match(r"HTTP/\S+ (\d+)", head)
    return (int(m.group(1)) if m else 0), rest, head


def post(srv, path, obj, auth=True, **kw):
    st, body, head = curl(srv.url + path, *(AUTH if auth else []), body=obj if isinstance(obj, (str, bytes)) else json.dumps(obj), **kw)
    try:
        return st, json.loads(body), head
    except ValueError:
        return st, body, head


def is_error(st, j, code, param_or_code=None):
    ok = st == code and isinstance(j, dict) and isinstance(j.get("error"), dict) and isinstance(j["error"].get("message"), str) \
        and "type" in j["error"]
    if ok and param_or_code:
        ok = param_or_code in (j["error"].get("param"), j["error"].get("code"))
    return ok


def run_greedy(model, prompt, n, *more):
    r = T.lowbit("run", "-m", model, *more, "-p", prompt, "-n", str(n), "--json")
    return json.loads(r.stdout)["text"] if r.returncode == 0 else None


def sse_text(body, chat):
    events = [ln[6:] for ln in body.split("\n") if ln.startswith("data: ")]
    if not events or events[-1] != "[DONE]":
        return None, None
    text, fin = "", None
    for e in events[:-1]:
        j = json.loads(e)
        for c in j["choices"]:
            text += (c["delta"].get("content") or "") if chat else c["text"]
            fin = c["finish_reason"] or fin
    return text, fin


def raw(port, data, read=True, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while read:
            b = s.recv(65536)
            if not b:
                break
            out += b
        return out
    except OSError:
        return b""
    finally:
        s.close()


def metrics(srv):
    body = curl(srv.url + "/metrics", *AUTH)[1]
    return {k: float(v) for k, v in re.findall(r"^(lowbit_\w+) (\S+)$", body, re.M)}


def healthy(srv):
    return curl(srv.url + "/health", timeout=10)[0] == 200


def chatml(msgs):
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs) + "<|im_start|>assistant\n"


def endpoints(srv, model, name):
    st, j, _ = curl(srv.url + "/health")
    T.check(st == 200 and json.loads(j)["status"] == "ok", "GET /health")
    st, body, _ = curl(srv.url + "/v1/models", *AUTH)
    T.check(st == 200 and json.loads(body)["data"][0]["id"] == name, f"/v1/models lists {name}: {body}")
    st, body, head = curl(srv.url + "/")
    T.check(st == 200 and "<textarea" in body and "text/html" in head, "GET / serves the chat page")
    T.check(not re.search(r"(src|href)=\"https?:", body), "the page loads nothing from the network")

    prompt = "Once upon a time"
    want = run_greedy(model, prompt, 24)
    st, j, _ = post(srv, "/v1/completions", {"model": name, "prompt": prompt, "max_tokens": 24, "temperature": 0})
    T.check(st == 200 and j["choices"][0]["text"] == want and j["choices"][0]["finish_reason"] == "length"
            and j["usage"]["completion_tokens"] == 24 and j["object"] == "text_completion", f"completion greedy = lowbit run: {j} vs {want!r}")
    st, body, head = curl(srv.url + "/v1/completions", "-N", *AUTH, body=json.dumps({"prompt": prompt, "max_tokens": 24, "temperature": 0, "stream": True}))
    text, fin = sse_text(body, False)
    T.check(st == 200 and "text/event-stream" in head and text == want and fin == "length", f"completion SSE = lowbit run: {text!r}")

    msgs = [{"role": "system", "content": "You tell stories."}, {"role": "user", "content": "Tell me about a cat."}]
    want_chat = run_greedy(model, chatml(msgs), 20)  # no template in the model: ChatML, as the server says at start
    st, j, _ = post(srv, "/v1/chat/completions", {"model": name, "messages": msgs, "max_tokens": 20, "temperature": 0})
    T.check(st == 200 and j["choices"][0]["message"] == {"role": "assistant", "content": want_chat}
            and j["object"] == "chat.completion", f"chat greedy = lowbit run of the ChatML prompt: {j}")
    st, body, _ = curl(srv.url + "/v1/chat/completions", "-N", *AUTH,
                       body=json.dumps({"messages": msgs, "max_tokens": 20, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}))
    text, fin = sse_text(body, True)
    usage = [json.loads(e[6:]) for e in body.split("\n") if e.startswith("data: {") and '"usage"' in e]
    T.check(text == want_chat and fin == "length" and usage and usage[-1]["usage"]["completion_tokens"] == 20, f"chat SSE: {text!r}")

    # a stop string ends the text before it
    cut = want.find(" Lily")
    if cut > 0:
        st, j, _ = post(srv, "/v1/completions", {"prompt": prompt, "max_tokens": 24, "temperature": 0, "stop": [" Lily"]})
        T.check(st == 200 and j["choices"][0]["text"] == want[:cut] and j["choices"][0]["finish_reason"] == "stop", f"stop string: {j}")
        st, body, _ = curl(srv.url + "/v1/completions", "-N", *AUTH, body=json.dumps({"prompt": prompt, "max_tokens": 24, "temperature": 0, "stop": " Lily", "stream": True}))
        T.check(sse_text(body, False) == (want[:cut], "stop"), "stop string while streaming")

    st, j, _ = post(srv, "/tokenize", {"content": prompt, "add_special": True})
    toks = j.get("tokens") if isinstance(j, dict) else None
    ref = T.lowbit("run", "-m", model, "-p", prompt, "-n", "1", "--json")
    T.check(st == 200 and toks == json.loads(ref.stdout)["prompt_ids"], f"/tokenize = lowbit's prompt ids: {j}")
    st, j, _ = post(srv, "/detokenize", {"tokens": toks[1:] if toks else []})
    T.check(st == 200 and j.get("content", "").strip() == prompt, f"/detokenize round trip: {j}")
    st, body, _ = curl(srv.url + "/metrics", *AUTH)
    m = dict(re.findall(r"^(lowbit_\w+) (\S+)$", body, re.M))
    T.check(st == 200 and float(m.get("lowbit_requests_total", 0)) >= 5 and float(m.get("lowbit_generated_tokens_total", 0)) >= 100
            and "lowbit_kv_tokens_total" in m and "lowbit_queue_depth" in m, f"/metrics: {m}")
    return want, want_chat


def errors(srv, name):
    st, body, head = curl(srv.url + "/v1/models")
    T.check(is_error(st, json.loads(body), 401, "invalid_api_key"), "missing API key -> 401")
    st, body, _ = curl(srv.url + "/v1/models", "-H", "Authorization: Bearer wrong")
    T.check(is_error(st, json.loads(body), 401), "wrong API key -> 401")
    st, j, _ = post(srv, "/v1/completions", {"prompt": "x"}, auth=False)
    T.check(is_error(st, j, 401), "completion without a key -> 401")
    T.check(curl(srv.url + "/health")[0] == 200, "/health needs no key")
    cases = [
        ("{not json", "invalid_json"), ('{"prompt": "a", }', "invalid_json"), ("[1, 2]", "invalid_json"),
        ({"prompt": "a", "max_tokens": "ten"}, "max_tokens"), ({"prompt": "a", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "a", "temperature": "hot"}, "temperature"), ({"prompt": "a", "temperature": 9}, "temperature"),
        ({"prompt": "a", "top_p": 0}, "top_p"), ({"prompt": "a", "stream": "yes"}, "stream"), ({"prompt": "a", "n": 2}, "n"),
        ({"prompt": "a", "stop": [1]}, "stop"), ({"prompt": "a", "seed": 1.5}, "seed"), ({"prompt": "a", "logprobs": True}, "logprobs"),
        ({"prompt": {"a": 1}}, "prompt"), ({"prompt": [10 ** 9]}, "prompt"), ({}, "prompt"), ({"prompt": "x" * 20000}, "context_length_exceeded"),
        ("[" * 5000 + "]" * 5000, "invalid_json"),
    ]
    for body, what in cases:
        st, j, _ = post(srv, "/v1/completions", body)
        T.check(is_error(st, j, 400, what), f"400 for {str(body)[:60]}: {st} {str(j)[:200]}")
    for body, what in [({"messages": "hi"}, "messages"), ({"messages": []}, "messages"), ({"messages": [{"role": "tool", "content": "x"}]}, "messages"),
                       ({"messages": [{"role": "user", "content": 5}]}, "messages"), ({"prompt": "a"}, "messages")]:
        st, j, _ = post(srv, "/v1/chat/completions", body)
        T.check(is_error(st, j, 400, what), f"chat 400 for {body}: {st} {j}")
    st, j, _ = post(srv, "/v1/completions", b'{"prompt": "caf\xc3\x28 \xff"}')
    T.check(is_error(st, j, 400, "invalid_utf8"), f"bad UTF-8 -> 400: {j}")
    st, j, _ = post(srv, "/v1/completions", {"model": "gpt-4", "prompt": "a"})
    T.check(is_error(st, j, 404, "model_not_found"), f"unknown model -> 404: {j}")
    st, body, _ = curl(srv.url + "/v1/nope", *AUTH)
    T.check(is_error(st, json.loads(body), 404), "unknown path -> 404")
    st, body, _ = curl(srv.url + "/v1/completions", *AUTH)
    T.check(is_error(st, json.loads(body), 405), "GET on a POST endpoint -> 405")
    st, j, _ = post(srv, "/tokenize", {"content": 5})
    T.check(is_error(st, j, 400), "/tokenize with a number -> 400")
    st, j, _ = post(srv, "/detokenize", {"tokens": [1, -3]})
    T.check(is_error(st, j, 400), "/detokenize with a bad id -> 400")

    # 100 MB declared: refused from the headers alone, the body is never read
    t0 = time.time()
    out = raw(srv.port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
              b"\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n" + b"{" * 65536)
    T.check(out.startswith(b"HTTP/1.1 413") and time.time() - t0 < 10, f"100 MB Content-Length -> 413: {out[:80]!r}")
    # a chunked body past the limit: the connection is closed once it passes 1 MiB
    def chunked():
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        sent = 0
        try:
            while sent < 100 << 20:
                s.sendall(b"10000\r\n" + b" " * 65536 + b"\r\n")
                sent += 65536
        except OSError:
            pass
        s.close()
        return sent
    sent = chunked()
    T.check(sent < 16 << 20, f"a chunked body is cut off near the limit ({sent} bytes sent)")
    T.check(healthy(srv), "serving after the error cases")


def abuse(srv):
    # many connections opened and dropped, some mid-request
    def churn(k):
        for i in range(250):
            try:
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                if i % 3 == 1:
                    s.sendall(b"POST /v1/completions HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"pro")
                elif i % 3 == 2:
                    s.sendall(b"GET /hea")
                s.close()
            except OSError:
                pass
    ts = [threading.Thread(target=churn, args=(k,)) for k in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    # the dropped half-requests are reaped as the server reads their EOF: allow it a while
    # (sanitized builds on a loaded machine), then it must answer
    ok = False
    for _ in range(6):
        ok = healthy(srv)
        if ok:
            break
        time.sleep(2)
    T.check(ok, "serving after 2000 connections opened and dropped")

    # slowloris: a header byte every 0.4 s; the request deadline (--timeout 3) closes it
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
    t0, closed = time.time(), False
    while time.time() - t0 < 15:
        try:
            s.sendall(b"X")
            s.settimeout(0.4)
            if s.recv(1024) == b"":
                closed = True
                break
        except socket.timeout:
            if time.time() - t0 > 1 and not healthy(srv):
                break
        except OSError:
            closed = True
            break
    s.close()
    T.check(closed and time.time() - t0 < 10, f"slowloris connection closed after {time.time() - t0:.1f} s")

    # cancelled mid-stream: the slot is freed
    def metric(name):
        body = curl(srv.url + "/metrics", *AUTH)[1]
        m = re.search(rf"^{name} (\S+)$", body, re.M)
        return float(m.group(1)) if m else -1
    before = metric("lowbit_requests_cancelled_total")
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 200, "stream": True, "temperature": 0.9}).encode()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
              b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    got = s.recv(4096)
    s.close()
    t0 = time.time()
    while time.time() - t0 < 10 and metric("lowbit_requests_cancelled_total") <= before:
        time.sleep(0.1)
    T.check(b"200 OK" in got and metric("lowbit_requests_cancelled_total") > before, "a stream dropped mid-way is cancelled")
    t0 = time.time()
    while time.time() - t0 < 10 and metric("lowbit_slots_busy") != 0:
        time.sleep(0.1)
    T.check(metric("lowbit_slots_busy") == 0, "its slot is free again")


def determinism(srv, delta):
    """32 requests at once run in one batch per step (-np 32): the greedy and seeded ones give what
    they gave alone, while the others (base and delta, streamed or not) run beside them."""
    base = {"prompt": "The little dog", "max_tokens": 40}
    mine = [dict(base, temperature=0), dict(base, temperature=0.9, top_p=0.95, seed=1234), dict(base, temperature=0, model=delta)]
    alone = [post(srv, "/v1/completions", q)[1]["choices"][0]["text"] for q in mine]
    before = metrics(srv)
    results = {}

    def one(k):
        q = mine[k] if k < 3 else {"prompt": f"Tom had {k} red balls", "max_tokens": 30 + k, "temperature": 0.8, "seed": k,
                                   "stream": bool(k % 2), **({"model": delta} if k % 3 == 0 else {})}
        st, j, _ = post(srv, "/v1/completions", q)
        results[k] = j["choices"][0]["text"] if st == 200 and k < 3 else st
    ts = [threading.Thread(target=one, args=(k,)) for k in range(32)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    for k, what in enumerate(("greedy", "seeded", "delta greedy")):
        T.check(results.get(k) == alone[k], f"{what} alone = {what} beside 31 others: {results.get(k)!r} vs {alone[k]!r}")
    T.check(all(results.get(k) == 200 for k in range(3, 32)), f"the others succeed: {results}")
    after = metrics(srv)
    steps = after["lowbit_engine_steps_total"] - before["lowbit_engine_steps_total"]
    gen = after["lowbit_generated_tokens_total"] - before["lowbit_generated_tokens_total"]
    # more ids in one pass than the prefill chunk (16) means several sequences in it; how many
    # overlap depends on how fast the clients arrive, so only fewer passes than tokens is asked
    T.check(after["lowbit_engine_batch_max"] > 16 and 0 < steps < gen,
            f"continuous batching: {gen:.0f} tokens in {steps:.0f} forward passes, at most {after['lowbit_engine_batch_max']:.0f} ids in one")
    # each handler is woken only for its own text or its end: with one broadcast per step, 32
    # handlers would wake every step and nearly all find nothing (the 250 ms timeouts that poll
    # for a dropped client are not wakeups); a spurious wakeup now and then is allowed
    woke = after["lowbit_handler_wakeups_total"] - before["lowbit_handler_wakeups_total"]
    idle = after["lowbit_handler_wakeups_idle_total"] - before["lowbit_handler_wakeups_idle_total"]
    T.check(0 < woke <= gen + 32 and idle <= 3,
            f"handlers wake only for their own text: {woke:.0f} wakeups ({idle:.0f} with nothing new) for {gen:.0f} tokens, {steps:.0f} steps")


def deltas(srv, model, name, delta, delta_path):
    """--delta: listed after the base, and greedy through the server = lowbit run --delta."""
    st, body, _ = curl(srv.url + "/v1/models", *AUTH)
    ids = [m["id"] for m in json.loads(body)["data"]] if st == 200 else []
    T.check(ids == [name, delta], f"/v1/models lists the base and the delta: {ids}")
    prompt = "Once upon a time"
    want = run_greedy(model, prompt, 24, "--delta", delta_path)
    base = run_greedy(model, prompt, 24)
    st, j, _ = post(srv, "/v1/completions", {"model": delta, "prompt": prompt, "max_tokens": 24, "temperature": 0})
    T.check(st == 200 and j["choices"][0]["text"] == want and j["model"] == delta and want != base,
            f"delta greedy = lowbit run --delta (and differs from the base): {j} vs {want!r}")
    msgs = [{"role": "user", "content": "Tell me about a dog."}]
    want_chat = run_greedy(model, chatml(msgs), 20, "--delta", delta_path)
    st, body, _ = curl(srv.url + "/v1/chat/completions", "-N", *AUTH,
                       body=json.dumps({"model": delta, "messages": msgs, "max_tokens": 20, "temperature": 0, "stream": True}))
    T.check(sse_text(body, True) == (want_chat, "length"), f"delta chat SSE = lowbit run --delta: {body[-300:]!r}")


def prefix_cache(srv, model):
    """A prompt of several chunks gives lowbit run's text; sent again, it is taken from the prefix
    cache (whole blocks of 16) with the same text."""
    prompt = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun with her dog."
    want = run_greedy(model, prompt, 16)
    got = []
    for _ in range(2):
        before = metrics(srv)["lowbit_prompt_tokens_cached_total"]
        st, j, _ = post(srv, "/v1/completions", {"prompt": prompt, "max_tokens": 16, "temperature": 0})
        got.append((j["choices"][0]["text"] if st == 200 else st, metrics(srv)["lowbit_prompt_tokens_cached_total"] - before))
    T.check(got[0][0] == want and got[1][0] == want and got[1][1] >= 16,
            f"a repeated prompt reuses cached KV blocks and gives lowbit run's text: {got} vs {want!r}")


def node_clients(srv, name, want, want_chat):
    node = shutil.which("node")
    mods = os.path.join(HERE, "node", "node_modules")
    if not node or not os.path.isdir(os.path.join(mods, "openai")):
        print("SKIP: openai npm client (run: npm ci --prefix tests/node)")
        return
    r = subprocess.run([node, os.path.join(HERE, "node", "serve_openai.mjs"), srv.url + "/v1", KEY, name], capture_output=True, text=True, timeout=120)
    try:
        got = json.loads(r.stdout)
    except ValueError:
        T.check(False, "openai client: " + r.stdout + r.stderr)
        return
    T.check(got.get("completion") == want and got.get("completion_stream") == want, f"openai client completions: {got}")
    T.check(got.get("chat") == want_chat and got.get("chat_stream") == want_chat, f"openai client chat: {got}")
    T.check(got.get("bad_key_status") == 401, f"openai client sees 401 for a wrong key: {got}")


def browser(srv, delta):
    node, chromium = shutil.which("node"), shutil.which("chromium")
    if not node or not chromium or not os.path.isdir(os.path.join(HERE, "node", "node_modules", "playwright-core")):
        print("SKIP: chat page in a browser (needs chromium and npm ci --prefix tests/node)")
        return
    shot = os.path.join(os.path.dirname(os.path.abspath(LOWBIT)), "serve_page.png")
    r = subprocess.run([node, os.path.join(HERE, "node", "serve_page.mjs"), srv.url, KEY, shot, delta], capture_output=True, text=True, timeout=120)
    T.check(r.returncode == 0 and os.path.getsize(shot) > 1000 if os.path.exists(shot) else False, "chat page in Chromium: " + r.stdout + r.stderr)


def kv_admission(model):
    """A KV pool of 256 positions for 4 slots: a request that may grow to 202 positions (13 of the
    16 blocks) is admitted only alone, the others wait in the queue and all finish; short ones
    follow."""
    srv = Server(model, "-np", "4", "--ctx", "256", "--kv-tokens", "256", "-t", "1")
    try:
        seen, stop = [], threading.Event()

        def poll():
            while not stop.is_set():
                m = metrics(srv)
                seen.append((m.get("lowbit_slots_busy", -1), m.get("lowbit_kv_blocks_reserved", -1), m.get("lowbit_kv_blocks_total", -1)))
        codes = []

        def req(k, n):
            st, j, _ = post(srv, "/v1/completions", {"prompt": "Once", "max_tokens": n, "temperature": 0.8, "seed": k}, auth=False)
            codes.append(st)
        watcher = threading.Thread(target=poll)
        watcher.start()
        ts = [threading.Thread(target=req, args=(k, 200)) for k in range(8)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        big = list(seen)
        ts = [threading.Thread(target=req, args=(k, 20)) for k in range(8)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        stop.set()
        watcher.join()
        T.check(codes == [200] * 16, f"requests waiting for KV blocks all finish: {codes}")
        T.check(any(b == 1 for b, _, _ in big) and all(b <= 1 and r <= t == 16 for b, r, t in big),
                f"one 202-position request at a time in a 16-block pool: {sorted(set(big))}")
    finally:
        T.check(srv.stop() == 0, "KV-limited server: clean exit")


def main():
    small = T.S("models", "stories260K-hf")
    tmp = tempfile.mkdtemp(prefix="cli_serve_")
    dogs = os.path.join(tmp, "dogs.delta")  # the real fine-tune stories260K-ft-dogs as a delta
    T.lowbit("delta", "create", small, T.S("models", "stories260K-ft-dogs"), "-o", dogs, "-q")
    for bad, why in ((["--delta", "dogs"], "NAME=PATH"), (["--delta", "dogs=" + tmp + "/none"], "none"),
                     (["--delta", "stories260K-hf=" + dogs], "base model's name")):
        r = subprocess.run([LOWBIT, "serve", "-m", small, "--port", "0", *bad], capture_output=True, text=True, timeout=60)
        T.check(r.returncode != 0 and why in r.stderr, f"serve {' '.join(bad)}: a clear error ({r.returncode}): {r.stderr}")
    srv = Server(small, "-np", "32", "--ctx", "256", "--api-key", KEY, "--timeout", "3", "--queue", "64", "-t", "1",
                 "--delta", "dogs=" + dogs, "--prefill-chunk", "16")  # longer prompts take several steps
    try:
        want, want_chat = endpoints(srv, small, "stories260K-hf")
        deltas(srv, small, "stories260K-hf", "dogs", dogs)
        prefix_cache(srv, small)
        errors(srv, "stories260K-hf")
        determinism(srv, "dogs")
        abuse(srv)
        node_clients(srv, "stories260K-hf", want, want_chat)
        browser(srv, "dogs")
        T.check(healthy(srv), "still serving at the end")
    finally:
        rc = srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    T.check(rc == 0 and any("stopped" in ln for ln in srv.lines), f"SIGTERM: clean exit ({rc}): {''.join(srv.lines[-20:])}")

    kv_admission(T.S("models", "stories260K-gguf", "stories260K.gguf"))

    # second model (a Hugging Face folder), one slot and a queue of one: greedy equality, 429, SIGTERM
    hf = T.S("models", "tinystories-512d")
    srv = Server(hf, "-np", "1", "--queue", "1", "--ctx", "256", "-t", "1")
    try:
        want = run_greedy(hf, "Once upon a time", 16)
        st, j, _ = post(srv, "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 16, "temperature": 0}, auth=False)
        T.check(st == 200 and j["choices"][0]["text"] == want, f"tinystories-512d greedy = lowbit run: {j} vs {want!r}")
        codes, heads = [], []

        def long(k):
            st, j, h = post(srv, "/v1/completions", {"prompt": "Once", "max_tokens": 200, "temperature": 0.8, "seed": k}, auth=False)
            codes.append(st)
            heads.append(h)
        ts = [threading.Thread(target=long, args=(k,)) for k in range(6)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        T.check(codes.count(200) >= 2 and 429 in codes and all(c in (200, 429) for c in codes)
                and any("Retry-After" in h for h, c in zip(heads, codes) if c == 429), f"a full queue answers 429 with Retry-After: {codes}")
        # SIGTERM while a stream runs: it is finished or cancelled, then a clean exit
        p = subprocess.Popen(["curl", "-s", "-N", srv.url + "/v1/completions", "-d", json.dumps({"prompt": "Once", "max_tokens": 200, "stream": True})],
                             stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        srv.p.send_signal(signal.SIGTERM)
        out = p.communicate(timeout=60)[0]
        T.check(out.rstrip().endswith("data: [DONE]"), f"an in-flight stream ends with [DONE] at SIGTERM: {out[-200:]!r}")
    finally:
        rc = srv.stop()
    T.check(rc == 0, f"second server: clean exit ({rc}): {''.join(srv.lines[-20:])}")
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
