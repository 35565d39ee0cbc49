"""Sparse and int8 weight deltas (C: src/delta, lb_compress_delta_* in lowbit.h)."""
import ctypes
import math
import numbers

import numpy as np

from . import _arrays, _lib

INT8_BLOCK = 64  # LB_DELTA_INT8_BLOCK
_MAX_SPARSE = 2 ** 32  # u32 indices


def _float32_delta(delta):
    d = _arrays.as_input(delta, np.float32, "delta")
    return d.reshape(-1)


def compress_delta_sparse(delta, threshold):
    """Keeps the elements with |x| > threshold (NaNs are kept). Returns (indices, values, ratio):
    indices uint32 ascending into delta.ravel(), values float32, ratio = dense bytes / sparse bytes
    (inf when nothing is kept). The arrays own the C library's buffers (no copy)."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError("threshold: expected a real number, got %r" % (threshold,))
    threshold = float(threshold)
    if not threshold >= 0:
        raise ValueError("threshold: must be >= 0, got %r" % threshold)
    d = _float32_delta(delta)
    if d.size > _MAX_SPARSE:
        raise ValueError("delta: %d elements do not fit u32 indices" % d.size)
    fn = _lib.require("lb_compress_delta_sparse", "compress_delta_sparse")
    idx = ctypes.POINTER(ctypes.c_uint32)()
    val = ctypes.POINTER(ctypes.c_float)()
    n_kept = ctypes.c_size_t()
    ratio = ctypes.c_double()
    _lib.call(fn, _arrays.ptr(d, ctypes.c_float), d.size, threshold, ctypes.byref(idx), ctypes.byref(val),
              ctypes.byref(n_kept), ctypes.byref(ratio))
    indices = _arrays.from_c(idx, n_kept.value, np.uint32)
    values = _arrays.from_c(val, n_kept.value, np.float32)
    return indices, values, ratio.value


def decompress_delta_sparse(indices, values, shape, dtype=np.float32):
    """The dense delta of the given shape: zeros except out.ravel()[indices] = values. dtype is
    the result's floating type (the C library works in float32; others are converted)."""
    shape = _arrays.shape_of(shape)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError("dtype: expected a floating type, got %s" % dtype)
    idx = _arrays.as_input(indices, np.uint32, "indices").reshape(-1)
    val = _arrays.as_input(values, np.float32, "values").reshape(-1)
    if idx.size != val.size:
        raise ValueError("indices and values differ in length (%d != %d)" % (idx.size, val.size))
    n = _arrays.n_elements(shape)
    fn = _lib.require("lb_decompress_delta_sparse", "decompress_delta_sparse")
    out = np.empty(shape, np.float32)
    _lib.call(fn, _arrays.ptr(idx, ctypes.c_uint32), _arrays.ptr(val, ctypes.c_float), idx.size,
              _arrays.ptr(out, ctypes.c_float), n)
    return out if dtype == np.float32 else out.astype(dtype)


def _check_block(block):
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)):
        raise TypeError("block: expected an int, got %r" % (block,))
    if block <= 0:
        raise ValueError("block: must be > 0, got %d" % block)
    return int(block)


def compress_delta_int8(delta, block=INT8_BLOCK):
    """Int8 with symmetric per-block scales over delta.ravel(): returns (q, scales), q int8 of
    delta's shape, scales float32[ceil(n / block)] (absmax / 127 of each block)."""
    block = _check_block(block)
    src = _arrays.as_input(delta, np.float32, "delta")
    d = src.reshape(-1)
    fn = _lib.require("lb_compress_delta_int8", "compress_delta_int8")
    q = np.empty(src.shape, np.int8)
    scales = np.empty(math.ceil(d.size / block), np.float32)
    _lib.call(fn, _arrays.ptr(d, ctypes.c_float), d.size, block, _arrays.ptr(q, ctypes.c_int8),
              _arrays.ptr(scales, ctypes.c_float))
    return q, scales


def decompress_delta_int8(q, scales, shape, block=INT8_BLOCK):
    """q[i] * scales[i // block], as float32 of the given shape."""
    block = _check_block(block)
    shape = _arrays.shape_of(shape)
    qa = _arrays.as_input(q, np.int8, "q").reshape(-1)
    sa = _arrays.as_input(scales, np.float32, "scales").reshape(-1)
    n = _arrays.n_elements(shape)
    if qa.size != n:
        raise ValueError("q has %d elements, shape %r needs %d" % (qa.size, shape, n))
    if sa.size != math.ceil(n / block):
        raise ValueError("scales has %d elements, %d elements in blocks of %d need %d"
                         % (sa.size, n, block, math.ceil(n / block)))
    fn = _lib.require("lb_decompress_delta_int8", "decompress_delta_int8")
    out = np.empty(shape, np.float32)
    _lib.call(fn, _arrays.ptr(qa, ctypes.c_int8), _arrays.ptr(sa, ctypes.c_float), n, block,
              _arrays.ptr(out, ctypes.c_float))
    return out
