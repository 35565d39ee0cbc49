"""Finding and loading liblowbit.so, declaring the C prototypes, and turning C errors into
Python exceptions. Importing this module never fails: the library is loaded on first use."""
import ctypes
import ctypes.util
import glob
import os
import threading

LIB_NAME = "liblowbit.so"

# lb_status values (include/lowbit.h)
LB_OK = 0
LB_ERR_IO = 1
LB_ERR_FORMAT = 2
LB_ERR_UNSUPPORTED = 3
LB_ERR_NOMEM = 4
LB_ERR_ARG = 5
LB_ERR_RANGE = 6
LB_ERR_BUDGET = 7
LB_ERR_CORRUPT = 8
LB_ERR_MISMATCH = 9


class LowbitError(RuntimeError):
    """A lowbit C call failed: .status is the lb_status code, .status_name its name, .message the
    C library's one-line message."""

    def __init__(self, status, message, status_name=None):
        self.status = int(status)
        self.status_name = status_name or "status %d" % self.status
        self.message = message
        super().__init__("%s: %s" % (self.status_name, message) if message else self.status_name)


class Handle:
    """Lifetime of an object holding a C handle in self._h: close() frees it once with the C
    function named by _FREE (a subclass may override close()), `with` and garbage collection close."""
    _FREE = None

    def close(self):
        if getattr(self, "_h", None):
            getattr(lib(), self._FREE)(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class LbError(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int), ("msg", ctypes.c_char * 512)]


def _package_dir():
    return os.path.dirname(os.path.abspath(__file__))


def candidate_paths():
    """Every place the library is looked for, in order (LOWBIT_LIBRARY alone when it is set)."""
    env = os.environ.get("LOWBIT_LIBRARY")
    if env:
        return [env]
    pkg = _package_dir()
    paths = []
    # a source checkout: python/lowbit -> the repository root, whose build folders hold the library
    repo = os.path.dirname(os.path.dirname(pkg))
    paths.append(os.path.join(repo, "build", LIB_NAME))
    others = [p for p in glob.glob(os.path.join(repo, "build*", LIB_NAME)) if p not in paths]
    others.sort(key=lambda p: -os.path.getmtime(p))
    paths += others
    # an installed package: PREFIX/lib/python3/dist-packages/lowbit -> PREFIX/lib
    d = pkg
    for _ in range(5):
        d = os.path.dirname(d)
        for sub in ("lib", "lib64", os.path.join("lib", "x86_64-linux-gnu"), os.path.join("lib", "aarch64-linux-gnu")):
            p = os.path.join(d, sub, LIB_NAME)
            if p not in paths:
                paths.append(p)
        if d == os.path.dirname(d):
            break
    return paths


class _Loader:
    def __init__(self):
        self._lock = threading.Lock()
        self._lib = None
        self._error = None

    def load(self):
        with self._lock:
            if self._lib is not None:
                return self._lib
            if self._error is not None:
                raise ImportError(self._error)
            tried = []
            env_set = bool(os.environ.get("LOWBIT_LIBRARY"))
            for path in candidate_paths():
                if not os.path.exists(path):
                    tried.append("%s (not found)" % path)
                    continue
                try:
                    lib = ctypes.CDLL(path)
                except OSError as e:  # e.g. a sanitizer build, which cannot load into python
                    tried.append("%s (%s)" % (path, e))
                    continue
                self._lib = _declare(lib, path)
                return self._lib
            if not env_set:
                found = ctypes.util.find_library("lowbit")
                if found:
                    try:
                        self._lib = _declare(ctypes.CDLL(found), found)
                        return self._lib
                    except OSError as e:
                        tried.append("%s (%s)" % (found, e))
                else:
                    tried.append("ctypes.util.find_library('lowbit') (not found)")
            self._error = ("lowbit: cannot load the shared library %s; searched:\n  %s\n"
                           "Build it (cmake --build build) or set LOWBIT_LIBRARY to its path."
                           % (LIB_NAME, "\n  ".join(tried)))
            raise ImportError(self._error)


_loader = _Loader()


def lib():
    """The loaded library (raises ImportError naming every searched path when missing)."""
    return _loader.load()


def is_available():
    try:
        lib()
        return True
    except ImportError:
        return False


def has(name):
    """True when the library exports the C function name (modules merged later may lack it)."""
    return hasattr(lib(), name)


def require(name, what):
    if not has(name):
        raise NotImplementedError("%s: this liblowbit (%s) has no %s()" % (what, lib()._lowbit_path, name))
    return getattr(lib(), name)


def raise_for(status, err, what=None):
    """Raises LowbitError for a non-zero status, with the C message from err (an LbError)."""
    if status == LB_OK:
        return
    msg = err.msg.decode("utf-8", "replace") if err is not None else ""
    if not msg and what:
        msg = what
    try:
        name = lib().lb_status_name(status).decode()
    except Exception:
        name = None
    raise LowbitError(status, msg, name)


def call(fn, *args, what=None):
    """Calls fn(*args, &err) and raises on failure."""
    err = LbError()
    status = fn(*args, ctypes.byref(err))
    raise_for(status, err, what)


c_int, c_int32, c_int64, c_uint64, c_size_t = ctypes.c_int, ctypes.c_int32, ctypes.c_int64, ctypes.c_uint64, ctypes.c_size_t
c_float, c_double, c_char_p, c_void_p = ctypes.c_float, ctypes.c_double, ctypes.c_char_p, ctypes.c_void_p
P = ctypes.POINTER
PErr = P(LbError)


class ModelParams(ctypes.Structure):
    _fields_ = [("tokenizer_path", c_char_p), ("n_threads", c_int), ("delta_path", c_char_p)]


PROGRESS_FN = ctypes.CFUNCTYPE(None, c_void_p, c_char_p, c_uint64, c_uint64)


class HubParams(ctypes.Structure):
    _fields_ = [("endpoint", c_char_p), ("token", c_char_p), ("cache_dir", c_char_p), ("offline", c_int),
                ("progress", PROGRESS_FN), ("progress_user", c_void_p)]


class SessionParams(ctypes.Structure):
    _fields_ = [("n_ctx", c_int), ("n_threads", c_int), ("kv_type", c_int), ("device", c_int), ("stream_window", c_int)]


class SamplerParams(ctypes.Structure):
    _fields_ = [("temperature", c_float), ("top_k", c_int), ("top_p", c_float), ("min_p", c_float),
                ("repeat_penalty", c_float), ("repeat_last_n", c_int), ("seed", c_uint64)]


class ModelInfo(ctypes.Structure):
    _fields_ = [("format", c_char_p), ("arch", c_char_p)] + \
        [(n, c_int) for n in ("n_vocab", "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ctx_train")] + \
        [("norm_eps", c_float), ("rope_theta", c_float), ("rope_layout", c_char_p), ("rope_scaling", c_char_p),
         ("activation", c_char_p), ("rope_factor", c_float), ("tied_embeddings", c_int), ("qkv_bias", c_int),
         ("sub_norms", c_int), ("n_tensors", c_size_t), ("weight_bytes", c_uint64), ("converted_bytes", c_uint64),
         ("sliding_window", c_int)]


class PsiAvg(ctypes.Structure):
    _fields_ = [("avg10", c_double), ("avg60", c_double), ("avg300", c_double)]


class MemSnapshot(ctypes.Structure):
    _fields_ = [("time_ns", c_uint64)] + \
        [(n, c_uint64) for n in ("sys_total", "sys_available", "sys_free", "sys_cached", "sys_swap_total", "sys_swap_free")] + \
        [("cgroup_present", c_int), ("cgroup_version", c_int), ("cgroup_limit", c_uint64), ("cgroup_usage", c_uint64),
         ("cgroup_peak_present", c_int), ("cgroup_peak", c_uint64), ("cgroup_stat_present", c_int),
         ("cgroup_anon", c_uint64), ("cgroup_file", c_uint64), ("cgroup_inactive_file", c_uint64),
         ("psi_present", c_int), ("psi_some", PsiAvg), ("psi_full", PsiAvg)] + \
        [(n, c_uint64) for n in ("proc_rss", "proc_anon", "proc_file", "proc_peak_rss", "proc_vm_size")] + \
        [("detailed_present", c_int)] + \
        [(n, c_uint64) for n in ("proc_shmem", "proc_swap", "proc_hwm", "proc_pss", "proc_pss_anon", "proc_pss_file",
                                 "proc_pss_shmem", "proc_private_dirty", "proc_locked")]


# lb_generate's callbacks: (user, id, text, len) -> nonzero stops; (user, message)
TOKEN_FN = ctypes.CFUNCTYPE(c_int, c_void_p, c_int32, c_void_p, c_size_t)
NOTICE_FN = ctypes.CFUNCTYPE(None, c_void_p, c_char_p)


class GenerateParams(ctypes.Structure):
    _fields_ = [("sampling", SamplerParams), ("sampler", c_void_p), ("max_tokens", c_int), ("stop", P(c_char_p)),
                ("n_stop", c_size_t), ("chat", c_int), ("system", c_char_p), ("keep", c_int),
                ("prompt_ids", P(c_int32)), ("n_prompt_ids", c_size_t), ("guard", c_void_p),
                ("on_token", TOKEN_FN), ("on_notice", NOTICE_FN), ("user", c_void_p),
                ("draft", c_void_p), ("lookup", c_int), ("draft_max", c_int), ("draft_min_p", c_float)]


class GenerateResult(ctypes.Structure):
    _fields_ = [("prompt_ids", P(c_int32)), ("ids", P(c_int32)), ("n_prompt_ids", c_size_t), ("n_ids", c_size_t),
                ("text", c_void_p), ("text_len", c_size_t), ("stop", c_int), ("prompt_seconds", c_double),
                ("gen_seconds", c_double), ("n_drafted", c_size_t), ("n_accepted", c_size_t)]


LB_MEM_KV_COUNT = 4


class MemPlanIn(ctypes.Structure):
    _fields_ = [("budget", c_uint64), ("weight_bytes", c_uint64), ("kv_bytes_per_token", c_uint64 * LB_MEM_KV_COUNT),
                ("scratch_bytes", c_uint64), ("scratch_bytes_per_token", c_uint64), ("overhead_bytes", c_uint64),
                ("n_ctx_requested", ctypes.c_uint32), ("n_ctx_train", ctypes.c_uint32), ("n_ctx_min", ctypes.c_uint32),
                ("n_ctx_align", ctypes.c_uint32), ("ctx_strict", c_int), ("kv_forced", c_int), ("memlock_limit", c_uint64),
                ("repack_bytes", c_uint64), ("repack_peak_bytes", c_uint64),
                ("stream_unit_bytes", c_uint64), ("stream_head_bytes", c_uint64), ("stream_fixed_bytes", c_uint64), ("stream_units", ctypes.c_uint32),
                ("stream_refusal", ctypes.c_char * 256), ("stream_allowed", c_int)]


class MemPlan(ctypes.Structure):
    _fields_ = [("n_ctx", ctypes.c_uint32), ("kv_dtype", c_int)] + \
        [(n, c_uint64) for n in ("weight_bytes", "kv_bytes", "scratch_bytes", "overhead_bytes", "total_bytes", "budget")] + \
        [("shrunk", c_int), ("kv_fallback", c_int), ("lock_weights", c_int), ("summary", ctypes.c_char * 512),
         ("repack", c_int),
         ("streaming", c_int), ("stream_window", ctypes.c_uint32), ("stream_window_bytes", c_uint64)]


class ImatrixParams(ctypes.Structure):
    _fields_ = [("n_ctx", c_int), ("n_chunks", c_int), ("n_threads", c_int), ("dataset", c_char_p)]


# name: (restype, argtypes). Declared only when the library exports the name.
_PROTOTYPES = {
    "lb_version": (c_char_p, []),
    "lb_cpu_kernels": (c_char_p, [ctypes.c_char_p, ctypes.c_size_t]),
    "lb_status_name": (c_char_p, [c_int]),
    "lb_model_default_params": (ModelParams, []),
    "lb_model_load": (c_int, [c_char_p, P(ModelParams), P(c_void_p), PErr]),
    "lb_model_free": (None, [c_void_p]),
    "lb_model_set_repack": (None, [c_void_p, c_int]),
    "lb_model_n_vocab": (c_int, [c_void_p]),
    "lb_model_n_ctx_train": (c_int, [c_void_p]),
    "lb_model_get_info": (None, [c_void_p, P(ModelInfo)]),
    "lb_model_tokenizer": (c_void_p, [c_void_p]),
    "lb_tokenizer_open": (c_int, [c_char_p, P(c_void_p), PErr]),
    "lb_tokenizer_free": (None, [c_void_p]),
    "lb_tokenizer_n_vocab": (c_int, [c_void_p]),
    "lb_tokenize": (c_int, [c_void_p, c_char_p, c_size_t, c_int, P(P(c_int32)), P(c_size_t), PErr]),
    "lb_token_piece": (c_size_t, [c_void_p, c_int32, c_void_p, c_size_t]),
    "lb_token_is_eog": (c_int, [c_void_p, c_int32]),
    "lb_detokenize": (c_int, [c_void_p, P(c_int32), c_size_t, P(c_void_p), P(c_size_t), PErr]),
    "lb_session_default_params": (SessionParams, []),
    "lb_session_new": (c_int, [c_void_p, P(SessionParams), P(c_void_p), PErr]),
    "lb_session_free": (None, [c_void_p]),
    "lb_session_reset": (None, [c_void_p]),
    "lb_session_n_past": (c_int, [c_void_p]),
    "lb_session_n_ctx": (c_int, [c_void_p]),
    "lb_session_kv_type": (c_int, [c_void_p]),
    "lb_session_kv_bytes": (c_size_t, [c_void_p]),
    "lb_session_scratch_bytes": (c_size_t, [c_void_p]),
    "lb_session_eval": (c_int, [c_void_p, P(c_int32), c_size_t, P(c_float), c_int, PErr]),
    "lb_sampler_default_params": (SamplerParams, []),
    "lb_sampler_new": (c_int, [P(SamplerParams), c_int, P(c_void_p), PErr]),
    "lb_sampler_free": (None, [c_void_p]),
    "lb_sampler_sample": (c_int32, [c_void_p, P(c_float), P(c_int32), c_size_t]),
    "lb_generate_default_params": (GenerateParams, []),
    "lb_generate": (c_int, [c_void_p, c_char_p, P(GenerateParams), P(GenerateResult), PErr]),
    "lb_generate_result_free": (None, [P(GenerateResult)]),
    "lb_stop_reason_name": (c_char_p, [c_int]),
    # models from the Hugging Face Hub (src/io/hub*.c)
    "lb_hub_default_params": (HubParams, []),
    "lb_hub_is_ref": (c_int, [c_char_p]),
    "lb_hub_resolve": (c_int, [c_char_p, P(HubParams), P(c_void_p), PErr]),
    # deltas (src/delta)
    "lb_compress_delta_sparse": (c_int, [P(c_float), c_size_t, c_float, P(P(ctypes.c_uint32)), P(P(c_float)),
                                         P(c_size_t), P(c_double), PErr]),
    "lb_decompress_delta_sparse": (c_int, [P(ctypes.c_uint32), P(c_float), c_size_t, P(c_float), c_size_t, PErr]),
    "lb_compress_delta_int8": (c_int, [P(c_float), c_size_t, c_size_t, P(ctypes.c_int8), P(c_float), PErr]),
    "lb_decompress_delta_int8": (c_int, [P(ctypes.c_int8), P(c_float), c_size_t, c_size_t, P(c_float), PErr]),
    # quantization (src/quant, internal header quant/quant.h)
    "lb_dtype_from_name": (c_int, [c_char_p]),
    "lb_dtype_name": (c_char_p, [ctypes.c_uint32]),
    "lb_dtype_row_size": (c_size_t, [c_int, c_int64]),
    "lb_quant_can_write": (c_int, [c_int]),
    "lb_quantize_checked": (c_int, [c_int, P(c_float), c_void_p, c_int64, c_int64, P(c_float), P(c_size_t), PErr]),
    "lb_dequantize": (c_int, [c_int, c_void_p, P(c_float), c_int64]),
    # memory (src/mem)
    "lb_memmon_open": (c_int, [P(c_void_p), PErr]),
    "lb_memmon_close": (None, [c_void_p]),
    "lb_memmon_cgroup_path": (c_char_p, [c_void_p]),
    "lb_memmon_snapshot": (c_int, [c_void_p, P(MemSnapshot), PErr]),
    "lb_memmon_snapshot_detailed": (c_int, [c_void_p, P(MemSnapshot), PErr]),
    "lb_mem_pressure_level": (c_int, [P(MemSnapshot)]),
    "lb_mem_pressure_name": (c_char_p, [c_int]),
    "lb_mem_pressure_reason": (c_char_p, [P(MemSnapshot), ctypes.c_char_p, c_size_t]),
    "lb_size_parse": (c_int, [c_char_p, P(c_uint64), PErr]),
    "lb_size_format": (c_char_p, [c_uint64, ctypes.c_char_p, c_size_t]),
    "lb_mem_plan_make": (c_int, [P(MemPlanIn), P(MemPlan), PErr]),
    "lb_model_mem_plan_input": (None, [c_void_p, c_int, P(MemPlanIn)]),
    "lb_tokenizer_bos": (c_int32, [c_void_p]),
    "lb_tokenize_file": (c_int, [c_void_p, c_char_p, c_int, P(P(c_int32)), P(c_size_t), PErr]),
    "lb_imatrix_load": (c_int, [c_char_p, P(c_void_p), PErr]),
    "lb_imatrix_save": (c_int, [c_void_p, c_char_p, PErr]),
    "lb_imatrix_free": (None, [c_void_p]),
    "lb_imatrix_n_entries": (c_size_t, [c_void_p]),
    "lb_imatrix_name": (c_char_p, [c_void_p, c_size_t]),
    "lb_imatrix_values": (P(c_float), [c_void_p, c_size_t, P(c_int), P(c_int)]),
    "lb_imatrix_n_chunks": (c_int, [c_void_p]),
    "lb_imatrix_dataset": (c_char_p, [c_void_p]),
    "lb_imatrix_default_params": (ImatrixParams, []),
    "lb_imatrix_compute": (c_int, [c_void_p, P(c_int32), c_size_t, c_int32, P(ImatrixParams), c_void_p, c_void_p,
                                   P(c_void_p), PErr]),
}

# per-format dequantizers, used when the generic lb_dequantize does not know a block format yet
for _t in ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_K", "tq1_0", "tq2_0"):
    _PROTOTYPES["lb_dequantize_row_" + _t] = (None, [c_void_p, P(c_float), c_int64])


def _declare(lib, path):
    for name, (res, args) in _PROTOTYPES.items():
        if hasattr(lib, name):
            fn = getattr(lib, name)
            fn.restype = res
            fn.argtypes = args
    lib._lowbit_path = path
    # the C library's allocator: buffers it returns are released with the same free()
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [c_void_p]
    libc.free.restype = None
    lib._lowbit_free = libc.free
    return lib


def free(ptr):
    """Releases a buffer malloc'ed by the C library."""
    if ptr:
        lib()._lowbit_free(ctypes.cast(ptr, c_void_p))
