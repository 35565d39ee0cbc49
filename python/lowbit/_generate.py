"""Generation through the C library's own loop (lb_generate), so Python and `lowbit run` share
one implementation: a whole run in one call, or a stream fed by lb_generate's token callback."""
import ctypes
import queue
import threading

from . import _lib

# Python's stop reasons predate the C names; "eog" keeps its older name here.
_REASONS = {"eog": "eos"}


@_lib.NOTICE_FN
def _quiet(user, msg):
    """Notices (the context is full) are already told by .stop_reason; without this callback
    the C library would log them to stderr."""


def run(session, prompt_ids, max_tokens, sp, on_token=None, spec=None, stats=None):
    """Runs lb_generate over prompt_ids (a list of ints) from an empty session; returns (ids,
    text bytes, stop reason). on_token: an optional _lib.TOKEN_FN. spec: optional speculative
    options (draft session, lookup, draft_max, draft_min_p); stats: a dict that receives
    n_drafted and n_accepted."""
    lib = _lib.lib()
    gp = lib.lb_generate_default_params()
    gp.sampling = sp
    gp.max_tokens = max_tokens
    if spec is not None:
        gp.draft, gp.lookup, gp.draft_max, gp.draft_min_p = spec
    ids = (ctypes.c_int32 * len(prompt_ids))(*prompt_ids)
    gp.prompt_ids, gp.n_prompt_ids = ids, len(prompt_ids)
    gp.on_notice = _quiet
    if on_token is not None:
        gp.on_token = on_token
    res = _lib.GenerateResult()
    _lib.call(lib.lb_generate, session, None, ctypes.byref(gp), ctypes.byref(res))
    try:
        out = res.ids[:res.n_ids]
        text = ctypes.string_at(res.text, res.text_len) if res.text_len else b""
        reason = lib.lb_stop_reason_name(res.stop).decode()
        if stats is not None:
            stats.update(n_drafted=res.n_drafted, n_accepted=res.n_accepted)
    finally:
        lib.lb_generate_result_free(ctypes.byref(res))
    return out, text, _REASONS.get(reason, reason)


class Stream:
    """Yields ("token", id, bytes) per generated token, then ("stop", reason, None). lb_generate
    runs on a worker thread (a C callback cannot yield to a Python generator); close() makes
    the callback stop the run at its next token and waits for the thread, so the session is
    never used after the stream ends."""

    def __init__(self, session, prompt_ids, max_tokens, sp, spec=None):
        self._q = queue.SimpleQueue()
        self._stop = threading.Event()
        self._fn = _lib.TOKEN_FN(self._on_token)  # kept alive as long as C may call it
        self._t = threading.Thread(target=self._work, args=(session, prompt_ids, max_tokens, sp, spec), daemon=True)
        self._t.start()

    def _on_token(self, user, tid, text, n):
        if tid >= 0:
            self._q.put(("token", tid, ctypes.string_at(text, n) if n else b""))
        return 1 if self._stop.is_set() else 0

    def _work(self, session, prompt_ids, max_tokens, sp, spec):
        try:
            self._q.put(("stop", run(session, prompt_ids, max_tokens, sp, self._fn, spec)[2], None))
        except BaseException as e:  # handed to the consumer's thread
            self._q.put(("error", e, None))

    def __iter__(self):
        while True:
            item = self._q.get()
            if item[0] == "error":
                raise item[1]
            yield item
            if item[0] == "stop":
                return

    def close(self):
        self._stop.set()
        self._t.join()
