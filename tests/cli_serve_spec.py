"""lowbit serve --lookup end to end, driven by curl: speculative decoding (prompt lookup drafts
verified in the shared batch step) gives exactly the text of plain decoding, greedy (= lowbit run)
and seeded sampling with penalties, streamed or not, with stop strings, at max_tokens and at the
end of the context, alone and beside other requests in one batch; the request's "speculative"
object and llama-server's flat "speculative.n_max" are honoured and checked; /metrics and the
response count drafted / accepted tokens; a server started without it refuses a request that asks
for it. tinystories-512d repeats itself in long greedy stories, so its drafts are really kept.
With --draft (stories260K drafting for tinystories-512d, batched in an engine of its own) the same
equalities hold, and a draft of another vocabulary is refused at start. --mem-budget counts what
speculation adds (every slot's drafted rows of scratch and logits; the draft model's weights and
KV): a budget that fits plain serving but not speculation is refused, or the context shrinks,
with a message naming it."""
import json
import os
import re
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
import cli_serve as CS  # noqa: E402  (its Server and curl helpers; it reads the same argv)
import lbtest as T  # noqa: E402

LOWBIT, SHARED = CS.LOWBIT, CS.SHARED


def complete(srv, q, chat=False):
    st, j, _ = CS.post(srv, "/v1/chat/completions" if chat else "/v1/completions", q, timeout=300)  # ASan on a loaded machine
    if st != 200:
        return st, None, None
    c = j["choices"][0]
    return st, (c["message"]["content"] if chat else c["text"]), j


def same_as_plain(srv, what, q, chat=False, spec=True):
    """The request with speculation (its own "speculative" or the server's) and with it off."""
    plain = complete(srv, dict(q, speculative=False), chat)
    on = complete(srv, q if spec is True else dict(q, speculative=spec), chat)
    ok = plain[0] == 200 and on[0] == 200 and on[1] == plain[1] and on[2]["usage"] == plain[2]["usage"] \
        and on[2]["choices"][0]["finish_reason"] == plain[2]["choices"][0]["finish_reason"]
    T.check(ok, f"{what}: speculative = plain: {on[1]!r} vs {plain[1]!r}")
    return on[2] if ok else None


def equality(srv, model):
    story = {"prompt": "Once upon a time", "max_tokens": 160, "temperature": 0}
    want = CS.run_greedy(model, "Once upon a time", 160)
    st, text, j = complete(srv, story)
    sp = j.get("speculative", {}) if j else {}
    T.check(st == 200 and text == want and sp.get("accepted", 0) > 10 and sp["drafted"] >= sp["accepted"],
            f"greedy with --lookup 1 = lowbit run, drafts kept: {sp} {text!r} vs {want!r}")
    same_as_plain(srv, "request lookup 3, n_max 4", story, spec={"lookup": 3, "n_max": 4})
    j = same_as_plain(srv, "llama-server's speculative.n_max 2", dict(story, **{"speculative.n_max": 2, "speculative.p_min": 0.5}))
    T.check(j is not None and j.get("speculative", {}).get("drafted", 0) > 0, f"speculative.n_max keeps drafting: {j}")
    same_as_plain(srv, "seeded with penalties", dict(story, temperature=0.7, seed=42, top_p=0.95, presence_penalty=0.4,
                                                     frequency_penalty=0.2, repeat_penalty=1.1))
    same_as_plain(srv, "max_tokens 5", dict(story, max_tokens=5))
    cut = want.find("know what to do")
    if cut > 0:
        j = same_as_plain(srv, "stop string", dict(story, stop=["know what to do"]))
        T.check(j is not None and j["choices"][0]["text"] == want[:cut], f"stop string cuts where plain does: {j}")
    msgs = [{"role": "user", "content": "Tell me a story about a cat who sings."}]
    same_as_plain(srv, "chat greedy", {"messages": msgs, "max_tokens": 120, "temperature": 0}, chat=True)
    # the end of the context (256): the prompt leaves ~60 positions and max_tokens asks for more
    long = {"prompt": "Once upon a time" + want[:700], "max_tokens": 1000, "temperature": 0}
    j = same_as_plain(srv, "to the end of the context", long)
    T.check(j is not None and j["choices"][0]["finish_reason"] == "length", f"the context end finishes with length: {j}")
    st, body, _ = CS.curl(srv.url + "/v1/completions", "-N", *CS.AUTH, body=json.dumps(dict(story, stream=True)))
    T.check(CS.sse_text(body, False) == (want, "length"), f"streamed with lookup = lowbit run: {body[-200:]!r}")


def batched(srv):
    """Speculative and plain requests at once share each step's batch; each gives its text alone."""
    mine = [{"prompt": "Once upon a time", "max_tokens": 120, "temperature": 0},
            {"prompt": "Tom had a red ball", "max_tokens": 90, "temperature": 0.8, "seed": 9},
            {"prompt": "The little dog", "max_tokens": 60, "temperature": 0, "speculative": False},
            {"prompt": "Lily liked to sing", "max_tokens": 100, "temperature": 0, "speculative": {"n_max": 3}}]
    alone = [complete(srv, q)[1] for q in mine]
    before = CS.metrics(srv)
    got = {}

    def one(k):
        got[k] = complete(srv, mine[k % 4] if k < 4 else dict(mine[k % 4], max_tokens=30 + k))[1]
    ts = [threading.Thread(target=one, args=(k,)) for k in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    T.check([got.get(k) for k in range(4)] == alone, f"alone = beside 7 others: {got} vs {alone}")
    T.check(all(got.get(k) for k in range(4, 8)), f"the others succeed: {got}")
    after = CS.metrics(srv)
    d = after["lowbit_speculative_drafted_tokens_total"] - before["lowbit_speculative_drafted_tokens_total"]
    a = after["lowbit_speculative_accepted_tokens_total"] - before["lowbit_speculative_accepted_tokens_total"]
    T.check(d >= a > 0, f"/metrics counts drafted {d:.0f} >= accepted {a:.0f} > 0")


def errors(srv):
    for bad, param in (({"speculative": "yes"}, "speculative"), ({"speculative": {"n_max": 17}}, "n_max"),
                       ({"speculative": {"lookup": -1}}, "lookup"), ({"speculative.n_max": 99}, "speculative.n_max"),
                       ({"speculative": {"p_min": 2}}, "p_min")):
        st, j, _ = CS.post(srv, "/v1/completions", dict({"prompt": "Once", "max_tokens": 4}, **bad))
        T.check(CS.is_error(st, j, 400, param), f"{bad}: 400 naming {param}: {st} {j}")


def draft_model(model):
    small = T.S("models", "stories260K-gguf", "stories260K.gguf")
    srv = CS.Server(model, "--draft", small, "-np", "4", "--ctx", "256", "-t", "1", "--api-key", CS.KEY)
    try:
        T.check(any("speculative: draft model" in ln for ln in srv.lines), f"start line: {srv.lines}")
        story = {"prompt": "Once upon a time", "max_tokens": 120, "temperature": 0}
        want = CS.run_greedy(model, "Once upon a time", 120)
        st, text, j = complete(srv, story)
        sp = j.get("speculative", {}) if j else {}
        T.check(st == 200 and text == want and sp.get("accepted", 0) > 40, f"--draft greedy = lowbit run, drafts kept: {sp} {text!r}")
        same_as_plain(srv, "--draft, p_min 0.5 and n_max 4", story, spec={"p_min": 0.5, "n_max": 4})
        same_as_plain(srv, "--draft, the request asks for lookup", story, spec={"lookup": 2})
        same_as_plain(srv, "--draft, seeded", dict(story, temperature=0.8, seed=3, prompt="Tom had"))
        same_as_plain(srv, "--draft, to the end of the context", {"prompt": "Once upon a time" + want, "max_tokens": 1000, "temperature": 0})
        batched(srv)
    finally:
        rc = srv.stop()
    T.check(rc == 0, f"--draft server: clean exit ({rc}): {''.join(srv.lines[-20:])}")


def serve_start(model, *extra):
    """(exit code, or None once it listened; stderr up to then) of lowbit serve, then SIGTERM."""
    p, lines, listening = T.serve_listen("-m", model, "--port", "0", "-np", "4", "-t", "1", *extra)
    rc = T.serve_stop(p)
    return (None if listening else rc), "".join(lines)


def plan_total(text):
    """The plan's total in bytes, from '... = 68.19 MiB <= budget'."""
    m = re.search(r"= ([\d.]+) (KiB|MiB|GiB) <= budget", text)
    return float(m.group(1)) * 2 ** {"KiB": 10, "MiB": 20, "GiB": 30}[m.group(2)] if m else None


def budget(model):
    """A budget between the plain plan and the speculative one: plain starts, speculation is
    refused at a fixed context and KV type, and shrinks the context when it may."""
    small = T.S("models", "stories260K-gguf", "stories260K.gguf")
    fixed = ("-c", "256", "--kv-type", "f16")
    runs = {name: serve_start(model, *fixed, "--mem-budget", "100M", *extra)
            for name, extra in (("plain", ()), ("spec", ("--draft-max", "16")), ("draft", ("--draft", small)))}
    tot = {name: plan_total(err) for name, (rc, err) in runs.items()}
    T.check(all(rc is None for rc, _ in runs.values()) and None not in tot.values() and tot["plain"] < tot["spec"] < tot["draft"],
            f"the plan grows with --draft-max and again with --draft: {tot} {runs}")
    T.check("speculative decoding (--draft-max 16: 68 logits rows" in runs["spec"][1] and "--draft weights" in runs["draft"][1],
            f"the plan line names what speculation adds: {runs['spec'][1]} {runs['draft'][1]}")
    if None in tot.values():
        return
    between = str(int((tot["plain"] + tot["spec"]) / 2))
    rc, err = serve_start(model, *fixed, "--mem-budget", between)
    T.check(rc is None, f"plain serving fits {between} bytes: {err}")
    rc, err = serve_start(model, *fixed, "--mem-budget", between, "--draft-max", "16")
    T.check(rc == 1 and "4 slots with speculative decoding (--draft-max 16" in err and "do not fit --mem-budget" in err,
            f"--draft-max 16 under that budget is refused, naming it: {rc} {err}")
    rc, err = serve_start(model, "--kv-type", "f16", "--mem-budget", between, "--draft-max", "16")
    ctx = re.search(r"(\d+) tokens each", err)
    T.check(rc is None and "context shrunk from 512" in err and ctx and int(ctx.group(1)) < 256,
            f"without --ctx the context shrinks instead, saying so: {err}")
    between = str(int((tot["spec"] + tot["draft"]) / 2))
    rc, err = serve_start(model, *fixed, "--mem-budget", between, "--draft-max", "16")
    T.check(rc is None, f"lookup speculation fits {between} bytes: {err}")
    rc, err = serve_start(model, *fixed, "--mem-budget", between, "--draft", small)
    T.check(rc == 1 and "--draft weights" in err and "do not fit --mem-budget" in err,
            f"the draft model's weights and KV do not fit that budget, named: {rc} {err}")


def main():
    model = T.S("models", "tinystories-512d")
    budget(model)
    for bad, why in ((["--lookup", "0"], "--lookup"), (["--draft-max", "64"], "--draft-max"), (["--lookup"], "--lookup"),
                     (["--lookup", "1", "--draft", model], "not both"), (["--draft-min-p", "2"], "--draft-min-p"),
                     (["--draft", T.S("models", "synth-llama3-gqa")], "vocabulary")):
        r = subprocess.run([LOWBIT, "serve", "-m", model, "--port", "0", *bad], capture_output=True, text=True, timeout=60)
        T.check(r.returncode in (1, 2) and why in r.stderr, f"serve {' '.join(bad)}: a clear error: {r.stderr}")
    srv = CS.Server(model, "--lookup", "1", "-np", "8", "--ctx", "256", "-t", "1", "--api-key", CS.KEY)
    try:
        T.check(any("speculative: lookup 1, up to 16 drafts" in ln for ln in srv.lines), f"start line: {srv.lines}")
        equality(srv, model)
        batched(srv)
        errors(srv)
    finally:
        rc = srv.stop()
    T.check(rc == 0, f"SIGTERM: clean exit ({rc}): {''.join(srv.lines[-20:])}")
    draft_model(model)

    srv = CS.Server(model, "-np", "1", "--ctx", "128", "-t", "1")
    try:
        q = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}
        st, j, _ = CS.post(srv, "/v1/completions", dict(q, speculative={"lookup": 1}), auth=False)
        T.check(CS.is_error(st, j, 400, "speculative") and "--lookup" in j["error"]["message"],
                f"a server without --lookup refuses a speculative request clearly: {j}")
        outs = [complete(srv, dict(q, **extra)) for extra in ({}, {"speculative": False}, {"speculative.n_max": 16})]
        T.check(all(o[0] == 200 and o[1] == outs[0][1] and "speculative" not in o[2] for o in outs),
                f"off, false and llama-server's default n_max run plainly: {outs}")
    finally:
        rc = srv.stop()
    T.check(rc == 0, f"second server: clean exit ({rc})")
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
