"""Importance matrices (C: lb_imatrix_*): per-column activation statistics of a model's block
matrices over a calibration text, in llama.cpp's imatrix .dat format (docs/imatrix.md)."""
import ctypes
import os

import numpy as np

from . import _lib


class Imatrix(_lib.Handle):
    """An importance matrix: entries maps each matrix name to the mean squared activation of each of
    its input columns (float32, one per column); n_chunks and dataset say what it was computed over.
    save() writes the .dat file that `lowbit quantize --imatrix` and llama-quantize read."""
    _FREE = "lb_imatrix_free"

    def __init__(self, handle):
        self._h = handle

    @classmethod
    def load(cls, path):
        h = ctypes.c_void_p()
        _lib.call(_lib.lib().lb_imatrix_load, os.fsencode(path), ctypes.byref(h))
        return cls(h)

    def _handle(self):
        if not self._h:
            raise ValueError("the importance matrix is closed")
        return self._h

    def save(self, path):
        _lib.call(_lib.lib().lb_imatrix_save, self._handle(), os.fsencode(path))

    @property
    def entries(self):
        lib, h, out = _lib.lib(), self._handle(), {}
        for i in range(lib.lb_imatrix_n_entries(h)):
            nval, ncall = ctypes.c_int(), ctypes.c_int()
            p = lib.lb_imatrix_values(h, i, ctypes.byref(nval), ctypes.byref(ncall))
            v = np.ctypeslib.as_array(p, shape=(nval.value,)).astype(np.float32)
            out[lib.lb_imatrix_name(h, i).decode()] = v / np.float32(ncall.value)
        return out

    @property
    def n_chunks(self):
        return _lib.lib().lb_imatrix_n_chunks(self._handle())

    @property
    def dataset(self):
        return _lib.lib().lb_imatrix_dataset(self._handle()).decode(errors="replace")


def imatrix(model, text=None, file=None, n_ctx=512, chunks=0, threads=None, dataset=None):
    """Runs model (a lowbit.Model) over a calibration text (text: str, or file: a path) in chunks of
    n_ctx tokens (BOS first, a fresh context each; chunks=0: all) and returns the Imatrix, as
    `lowbit imatrix` computes it."""
    if (text is None) == (file is None):
        raise ValueError("imatrix: give text or file, not both or neither")
    lib = _lib.lib()
    m = getattr(model, "_m", None)
    if not m:
        raise TypeError("model: expected an open lowbit.Model")
    tok = lib.lb_model_tokenizer(m)
    if not tok:
        raise ValueError("model: %s has no tokenizer" % getattr(model, "path", "the model"))
    ids = ctypes.POINTER(ctypes.c_int32)()
    n = ctypes.c_size_t()
    if file is not None:
        _lib.call(lib.lb_tokenize_file, tok, os.fsencode(file), 1, ctypes.byref(ids), ctypes.byref(n))
    else:
        b = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
        _lib.call(lib.lb_tokenize, tok, b, len(b), 1, ctypes.byref(ids), ctypes.byref(n))
    try:
        p = lib.lb_imatrix_default_params()
        p.n_ctx, p.n_chunks, p.n_threads = int(n_ctx), int(chunks), int(threads or 0)
        ds = dataset if dataset is not None else (os.fspath(file) if file is not None else "")
        ds_b = os.fsencode(ds)
        p.dataset = ds_b
        h = ctypes.c_void_p()
        _lib.call(lib.lb_imatrix_compute, m, ids, n.value, lib.lb_tokenizer_bos(tok), ctypes.byref(p), None, None,
                  ctypes.byref(h))
        return Imatrix(h)
    finally:
        _lib.free(ids)
