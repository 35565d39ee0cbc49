"""Models, tokenizers and generation (C: lb_model_*, lb_tokenize, lb_session_*, lb_sampler_*, lb_generate)."""
import codecs
import contextlib
import ctypes
import numbers
import os
import threading
import warnings

import numpy as np

from . import _arrays, _generate, _lib
from .memory import parse_size

_KV_TYPES = {"f32": 0, "f16": 1, "q8_0": 2, "q4_0": 3}


def _path(p, what):
    if not isinstance(p, (str, bytes, os.PathLike)):
        raise TypeError("%s: expected a path, got %r" % (what, p))
    return os.fsencode(p)


def _text_bytes(text):
    if isinstance(text, str):
        return text.encode("utf-8", "surrogatepass")
    if isinstance(text, (bytes, bytearray)):
        return bytes(text)
    raise TypeError("text: expected str or bytes, got %s" % type(text).__name__)


class _TokenizerOps:
    """tokenize / detokenize over an lb_tokenizer handle (self._tok())."""

    def _ids_in(self, ids, n_vocab):
        if not isinstance(ids, np.ndarray):  # range-check Python ints before int32 wraps them (2**40 -> 0)
            try:
                wide = np.asarray(ids, dtype=object).reshape(-1)
            except (TypeError, ValueError):
                wide = np.empty(0, dtype=object)
            for v in wide:
                if isinstance(v, numbers.Integral) and not 0 <= v < n_vocab:
                    raise ValueError("ids: %d is outside the vocabulary of %d tokens" % (v, n_vocab))
        a = _arrays.as_input(ids, np.int32, "ids").reshape(-1)
        if a.size and (a.min() < 0 or a.max() >= n_vocab):
            bad = a[(a < 0) | (a >= n_vocab)][0]
            raise ValueError("ids: %d is outside the vocabulary of %d tokens" % (bad, n_vocab))
        return a

    def tokenize(self, text, add_special=True):
        """Token ids (a list of ints) of text; add_special adds BOS etc. as the tokenizer itself
        does (like `lowbit tokenize`)."""
        b = _text_bytes(text)
        lib = _lib.lib()
        ids = ctypes.POINTER(ctypes.c_int32)()
        n = ctypes.c_size_t()
        _lib.call(lib.lb_tokenize, self._tok(), b, len(b), 1 if add_special else 0, ctypes.byref(ids), ctypes.byref(n))
        try:
            return ids[:n.value]
        finally:
            _lib.free(ids)

    def detokenize(self, ids):
        """The text of ids (invalid UTF-8 replaced by U+FFFD)."""
        lib = _lib.lib()
        t = self._tok()
        a = self._ids_in(ids, lib.lb_tokenizer_n_vocab(t))
        text = ctypes.c_void_p()
        n = ctypes.c_size_t()
        _lib.call(lib.lb_detokenize, t, _arrays.ptr(a, ctypes.c_int32), a.size, ctypes.byref(text), ctypes.byref(n))
        try:
            return ctypes.string_at(text, n.value).decode("utf-8", "replace")
        finally:
            _lib.free(text)

    def token_bytes(self, id):
        """The bytes token id adds to the text (nothing for control tokens)."""
        lib = _lib.lib()
        buf = ctypes.create_string_buffer(64)
        n = lib.lb_token_piece(self._tok(), int(id), buf, len(buf))
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            n = lib.lb_token_piece(self._tok(), int(id), buf, len(buf))
        return buf.raw[:n]

    @property
    def n_vocab(self):
        return _lib.lib().lb_tokenizer_n_vocab(self._tok())


class Tokenizer(_lib.Handle, _TokenizerOps):
    """A standalone tokenizer from a file (tokenizer.model, tokenizer.json, llama2.c .bin)."""
    _FREE = "lb_tokenizer_free"

    def __init__(self, path):
        lib = _lib.lib()
        h = ctypes.c_void_p()
        _lib.call(lib.lb_tokenizer_open, _path(path, "path"), ctypes.byref(h))
        self._h = h

    def _tok(self):
        if not self._h:
            raise ValueError("Tokenizer is closed")
        return self._h


class Completion(str):
    """The generated text (a str, without the prompt) that also carries .ids (generated ids),
    .prompt_ids, .stop_reason ("eos", "length" or "context") and, for speculative decoding,
    .n_drafted and .n_accepted (drafted tokens, of them accepted)."""

    def __new__(cls, text, ids, prompt_ids, stop_reason, n_drafted=0, n_accepted=0):
        s = super().__new__(cls, text)
        s.ids, s.prompt_ids, s.stop_reason = ids, prompt_ids, stop_reason
        s.n_drafted, s.n_accepted = n_drafted, n_accepted
        return s


def _nonneg_int(v, name, allow_none=True):
    if v is None and allow_none:
        return 0
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError("%s: expected an int, got %r" % (name, v))
    if v < 0:
        raise ValueError("%s: must be >= 0, got %d" % (name, v))
    return int(v)


def _real(v, name, lo, hi, lo_open=False):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError("%s: expected a number, got %r" % (name, v))
    v = float(v)
    if not ((v > lo if lo_open else v >= lo) and v <= hi):
        raise ValueError("%s: must be in %s%g, %g], got %g" % (name, "(" if lo_open else "[", lo, hi, v))
    return v


class Model(_lib.Handle, _TokenizerOps):
    """A model loaded by the C library (GGUF file, Hugging Face folder, llama2.c checkpoint).

    threads: worker threads (None: all cores). mem_budget: bytes, or a string such as "6G"; the
    context and KV cache type are chosen to fit it (the C budget planner), and a model whose
    weights, KV cache and buffers do not fit raises LowbitError (status LB_ERR_BUDGET).
    n_ctx: context length (None: the model's, at most 4096, or what the budget allows).
    kv_type: "f32", "f16", "q8_0" or "q4_0" (the last two: head_dim a multiple of 32); None: f16, as llama.cpp (a
    mem_budget may lower it to q8_0, with a warning; weights larger than the budget stream from the file
    layer by layer, stream_window layers at a time). tokenizer: a tokenizer file to use instead of the model's own.
    delta: a delta file (`lowbit delta create`) applied to the weights while loading.
    repack: False keeps Q4_0 matrices in the file's layout (by default the CPU repacks them into
    8-row groups where AVX2 is the kernel level, as `lowbit run`; LOWBIT_REPACK=0/1 overrides).
    One session (KV cache) per Model: use a Model from one thread at a time, and finish (or drop)
    a streaming generate() before the next call."""

    def __init__(self, path, threads=None, mem_budget=None, n_ctx=None, kv_type=None, tokenizer=None, delta=None,
                 repack=True):
        lib = _lib.lib()
        threads = _nonneg_int(threads, "threads")
        n_ctx = _nonneg_int(n_ctx, "n_ctx")
        if kv_type is not None and kv_type not in _KV_TYPES:
            raise ValueError("kv_type: expected 'f32', 'f16', 'q8_0' or 'q4_0', got %r" % (kv_type,))
        budget = parse_size(mem_budget) if mem_budget is not None else None
        mp = lib.lb_model_default_params()
        tok_path = _path(tokenizer, "tokenizer") if tokenizer is not None else None
        mp.tokenizer_path = tok_path
        mp.n_threads = threads
        delta_path = _path(delta, "delta") if delta is not None else None
        mp.delta_path = delta_path
        self._m = None
        self._s = None
        self._open_stream = None
        if isinstance(path, str) and path.startswith("hf://"):
            from .hub import pull
            path = pull(path)
        h = ctypes.c_void_p()
        _lib.call(lib.lb_model_load, _path(path, "path"), ctypes.byref(mp), ctypes.byref(h))
        self._m = h
        self.path = os.fspath(path)
        self.threads = threads
        self.mem_budget = budget
        self.plan = None
        info = _lib.ModelInfo()
        lib.lb_model_get_info(h, ctypes.byref(info))
        self._info = info
        kv = _KV_TYPES[kv_type] if kv_type is not None else None
        if not repack:
            self._no_repack()
        self.stream_window = 0  # layers streamed from the file at once; 0: every weight resident
        if budget is not None:
            n_ctx, kv = self._plan(budget, n_ctx, kv, threads)
        sp = lib.lb_session_default_params()
        sp.stream_window = self.stream_window
        sp.n_ctx = n_ctx
        sp.n_threads = threads
        sp.kv_type = kv if kv is not None else sp.kv_type
        try:
            s = ctypes.c_void_p()
            _lib.call(lib.lb_session_new, h, ctypes.byref(sp), ctypes.byref(s))
            self._s = s
            if budget is not None and not self.stream_window:  # streaming: the plan is the check
                self._check_budget(budget)
        except BaseException:
            self.close()
            raise
        self.n_vocab_model = lib.lb_model_n_vocab(h)
        self._busy = threading.Lock()

    def _no_repack(self):
        lib = _lib.lib()
        if hasattr(lib, "lb_model_set_repack"):
            lib.lb_model_set_repack(self._m, 0)

    # ---- memory budget ------------------------------------------------------------------
    def _plan(self, budget, n_ctx, kv, threads):
        """n_ctx and KV type from the C budget planner (when the library has it)."""
        lib = _lib.lib()
        if not hasattr(lib, "lb_mem_plan_make"):
            return n_ctx, kv
        # every term (weights, KV per type, scratch, the tokenizer and the runtime part) from the
        # C function `lowbit run` uses, so the two plans are the same plan
        pin = _lib.MemPlanIn()
        lib.lb_model_mem_plan_input(self._m, threads or 0, ctypes.byref(pin))
        pin.budget = budget
        pin.stream_allowed = 1  # the session below takes the plan's window
        train = self._info.ctx_train
        # without n_ctx, what the session would allocate by default; the plan may shrink it
        pin.n_ctx_requested = n_ctx or (train if 0 < train < 4096 else 4096)
        pin.ctx_strict = 1 if n_ctx else 0
        pin.kv_forced = -1 if kv is None else kv
        plan = _lib.MemPlan()
        # kv None: the planner's order, f16 (the default) first, as lowbit run
        _lib.call(lib.lb_mem_plan_make, ctypes.byref(pin), ctypes.byref(plan))
        self.plan = plan.summary.decode("utf-8", "replace")
        if pin.repack_bytes and not plan.repack:  # no room for the repack's transient copy
            self._no_repack()
            self.plan += "; Q4_0 kept in the plain layout (no room to repack)"
        # weights over the budget stream from the file, a window of layers at a time (the plan says so)
        self.stream_window = plan.stream_window if plan.streaming else 0
        if kv is None and plan.kv_dtype != _KV_TYPES["f16"]:  # never silently
            names = {v: k for k, v in _KV_TYPES.items()}
            warnings.warn("mem_budget changes the KV cache from f16 to %s (pass kv_type= to choose): %s"
                          % (names.get(plan.kv_dtype, plan.kv_dtype), self.plan), stacklevel=3)
        kv_map = {0: 0, 1: 1, 2: 2}  # lb_mem_kv_dtype -> lb_kv_type
        if plan.kv_dtype not in kv_map:
            raise _lib.LowbitError(_lib.LB_ERR_BUDGET, "the budget needs a q8_0 KV cache, which this engine lacks: "
                                   + self.plan, "over memory budget")
        return plan.n_ctx, kv_map[plan.kv_dtype]

    def memory_bytes(self):
        """Weights (incl. copies made at load) + KV cache + session buffers, in bytes."""
        lib = _lib.lib()
        i = self._info
        return (i.weight_bytes + i.converted_bytes + lib.lb_session_kv_bytes(self._s)
                + lib.lb_session_scratch_bytes(self._s))

    def _check_budget(self, budget):
        need = self.memory_bytes()
        if need > budget:
            raise _lib.LowbitError(_lib.LB_ERR_BUDGET, "%s: weights, KV cache and buffers need %d bytes > budget %d"
                                   % (self.path, need, budget), "over memory budget")

    # ---- handles ------------------------------------------------------------------------
    def _model(self):
        if not self._m:
            raise ValueError("Model is closed")
        return self._m

    def _tok(self):
        t = _lib.lib().lb_model_tokenizer(self._model())
        if not t:
            raise ValueError("%s has no tokenizer; pass tokenizer=PATH" % self.path)
        return t

    def close(self):
        st = getattr(self, "_open_stream", None)
        if st is not None:  # its worker thread may be inside the session: stop it first
            st.close()
        lib = _lib.lib() if (getattr(self, "_s", None) or getattr(self, "_m", None)) else None
        if getattr(self, "_s", None):
            lib.lb_session_free(self._s)
            self._s = None
        if getattr(self, "_m", None):
            lib.lb_model_free(self._m)
            self._m = None

    @property
    def n_vocab(self):
        return self.n_vocab_model

    @property
    def n_ctx(self):
        return _lib.lib().lb_session_n_ctx(self._session())

    @property
    def kv_type(self):
        """The session's KV cache type: "f32", "f16", "q8_0" or "q4_0"."""
        t = _lib.lib().lb_session_kv_type(self._session())
        return {v: k for k, v in _KV_TYPES.items()}[t]

    @property
    def info(self):
        """The C lb_model_info as a dict."""
        self._model()
        out = {}
        for name, _ in _lib.ModelInfo._fields_:
            v = getattr(self._info, name)
            out[name] = v.decode() if isinstance(v, bytes) else v
        return out

    def _session(self):
        self._model()
        return self._s

    def _eval(self, ids, logits, all_logits):
        lib = _lib.lib()
        s = self._session()
        if lib.lb_session_n_past(s) + ids.size > lib.lb_session_n_ctx(s):
            raise ValueError("%d tokens exceed the context of %d" % (lib.lb_session_n_past(s) + ids.size,
                                                                    lib.lb_session_n_ctx(s)))
        _lib.call(lib.lb_session_eval, s, _arrays.ptr(ids, ctypes.c_int32), ids.size,
                  _arrays.ptr(logits, ctypes.c_float), 1 if all_logits else 0)

    # ---- inference ----------------------------------------------------------------------
    def logits(self, ids):
        """Next-token logits after each prefix of ids, a float32 array [len(ids), n_vocab]
        (computed from an empty context)."""
        a = self._ids_in(ids, self.n_vocab_model)
        if a.size == 0:
            raise ValueError("ids: empty")
        out = np.empty((a.size, self.n_vocab_model), np.float32)
        with self._exclusive():
            _lib.lib().lb_session_reset(self._session())
            self._eval(a, out, True)
        return out

    def generate(self, prompt, max_tokens=256, temperature=0.0, top_p=1.0, seed=0, stream=False, top_k=0,
                 min_p=0.0, repeat_penalty=1.0, repeat_last_n=64, draft=None, lookup=0, draft_max=0,
                 draft_min_p=0.0):
        """Continues prompt (text, tokenized with special tokens like `lowbit run`; or a list of
        ids) by up to max_tokens tokens, stopping at an end-of-generation token. temperature 0 is
        greedy. Returns a Completion (the text without the prompt, with .ids), or with stream=True
        a generator of text pieces as they are produced.
        Speculative decoding (the same output, faster): draft, a Model of a smaller model with the
        same vocabulary, drafts up to draft_max tokens (0: 16) that this model verifies in one pass
        (draft_min_p: stop drafting below that probability); or lookup=N drafts what followed
        the longest earlier match (at least N tokens) of the context's end (`lowbit run --draft /
        --lookup`)."""
        lib = _lib.lib()
        max_tokens = _nonneg_int(max_tokens, "max_tokens", allow_none=False)
        sp = lib.lb_sampler_default_params()
        sp.temperature = _real(temperature, "temperature", 0, float("inf"))
        sp.top_p = _real(top_p, "top_p", 0, 1, lo_open=True)
        sp.min_p = _real(min_p, "min_p", 0, 1)
        sp.repeat_penalty = _real(repeat_penalty, "repeat_penalty", 0, float("inf"), lo_open=True)
        sp.top_k = _nonneg_int(top_k, "top_k")
        sp.repeat_last_n = _nonneg_int(repeat_last_n, "repeat_last_n")
        seed = _nonneg_int(seed, "seed")
        if seed >= 2 ** 64:
            raise ValueError("seed: must be < 2**64")
        sp.seed = seed
        if isinstance(prompt, (str, bytes, bytearray)):
            prompt_ids = self.tokenize(prompt, add_special=True)
        else:
            prompt_ids = self._ids_in(prompt, self.n_vocab_model).tolist()
        if not prompt_ids:
            raise ValueError("prompt: encodes to no tokens")
        spec = self._spec(draft, lookup, draft_max, draft_min_p)
        if stream:
            return self._stream(self._steps(prompt_ids, max_tokens, sp, spec, draft))
        stats = {}
        with self._exclusive(), (draft._exclusive() if draft is not None else contextlib.nullcontext()):
            max_tokens, capped = self._room(prompt_ids, max_tokens)
            ids, text, reason = _generate.run(self._session(), prompt_ids, max_tokens, sp, spec=spec, stats=stats)
        return Completion(text.decode("utf-8", "replace"), ids, prompt_ids, self._reason(reason, capped), **stats)

    def _spec(self, draft, lookup, draft_max, draft_min_p):
        """generate()'s speculative options as lb_generate takes them, or None when off."""
        lookup = _nonneg_int(lookup, "lookup")
        draft_max = _nonneg_int(draft_max, "draft_max")
        draft_min_p = _real(draft_min_p, "draft_min_p", 0, 1)
        if draft is not None and not isinstance(draft, Model):
            raise TypeError("draft: expected a lowbit.Model, got %r" % (draft,))
        if draft is self:
            raise ValueError("draft: the draft must be another Model than the target")
        if draft is None and not lookup:
            return None
        return (draft._session() if draft is not None else None, lookup, draft_max, draft_min_p)

    @staticmethod
    def _stream(it):
        dec = codecs.getincrementaldecoder("utf-8")("replace")
        for kind, _, b in it:
            if kind == "token":
                piece = dec.decode(b)
                if piece:
                    yield piece
        tail = dec.decode(b"", final=True)
        if tail:
            yield tail

    def _steps(self, prompt_ids, max_tokens, sp, spec=None, draft=None):
        """Yields ("token", id, bytes) per generated token, then ("stop", reason, None), from the
        C library's loop (the same as `lowbit run`)."""
        with self._exclusive(), (draft._exclusive() if draft is not None else contextlib.nullcontext()):
            max_tokens, capped = self._room(prompt_ids, max_tokens)
            st = self._open_stream = _generate.Stream(self._session(), prompt_ids, max_tokens, sp, spec)
            try:
                for kind, v, b in st:
                    yield kind, self._reason(v, capped) if kind == "stop" else v, b
            finally:
                st.close()
                self._open_stream = None

    def _room(self, prompt_ids, max_tokens):
        """(max_tokens capped by the context, whether it was): at most one token past the
        context is sampled, and max_tokens=10**12 must not reach the C int."""
        n_ctx = _lib.lib().lb_session_n_ctx(self._session())
        if len(prompt_ids) > n_ctx:
            raise ValueError("prompt: %d tokens exceed the context of %d" % (len(prompt_ids), n_ctx))
        room = n_ctx - len(prompt_ids) + 1
        return min(max_tokens, room), max_tokens > room

    @staticmethod
    def _reason(reason, capped):
        return "context" if capped and reason == "length" else reason

    @contextlib.contextmanager
    def _exclusive(self):
        """The session holds one sequence: a second user (another thread, or a generate while a
        stream is open) would corrupt it silently, so it is refused instead of interleaved."""
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("Model is busy: another generate, stream or logits call is using it (close the "
                               "open stream first, or give each thread its own Model)")
        try:
            yield
        finally:
            self._busy.release()
