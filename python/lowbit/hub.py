"""Models from the Hugging Face Hub through the C library's client (lb_hub_resolve): the same
cache as huggingface_hub and `lowbit pull`, resumable, checked downloads."""
import ctypes
import os

from . import _lib


def pull(ref, endpoint=None, token=None, cache_dir=None, offline=None, progress=None):
    """Downloads what ref names ("[hf://]OWNER/NAME[@REVISION][:FILE|:QUANT]") unless cached and
    returns its local path (a file, or the snapshot folder of a safetensors model).
    endpoint, token, cache_dir default to HF_ENDPOINT, HF_TOKEN and HF_HUB_CACHE / HF_HOME;
    offline=True uses only the cache (default: HF_HUB_OFFLINE). progress(what, done, total) is
    called as bytes arrive. Raises LowbitError with the library's message on failure."""
    if not isinstance(ref, str):
        raise TypeError("ref: expected a str, got %r" % (ref,))
    lib = _lib.lib()
    p = lib.lb_hub_default_params()
    keep = [os.fsencode(v) if v is not None else None for v in (endpoint, token, cache_dir)]
    p.endpoint, p.token, p.cache_dir = keep
    if offline is not None:
        p.offline = 1 if offline else 0
    cb = None
    if progress is not None:
        def _cb(user, what, done, total):
            try:
                progress(what.decode(errors="replace") if what else "", done, total)
            except Exception:  # an exception cannot cross the C frames
                pass
        cb = _lib.PROGRESS_FN(_cb)
        p.progress = cb
    out = ctypes.c_void_p()
    _lib.call(lib.lb_hub_resolve, ref.encode(), ctypes.byref(p), ctypes.byref(out))
    try:
        return os.fsdecode(ctypes.string_at(out.value))
    finally:
        _lib.free(out)
