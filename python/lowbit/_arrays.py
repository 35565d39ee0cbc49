"""numpy <-> C buffers: argument checks done before any C call, and numpy arrays that own
buffers malloc'ed by the C library (no copy; freed with the library's free())."""
import ctypes

import numpy as np

from . import _lib


class _CBuffer:
    """Owns a malloc'ed C buffer; numpy arrays made from it keep it alive through .base."""

    def __init__(self, ptr, n, typestr):
        self._ptr = ctypes.cast(ptr, ctypes.c_void_p).value or 0
        self.__array_interface__ = {"shape": (n,), "typestr": typestr, "data": (self._ptr, False), "version": 3}

    def __del__(self):
        if self._ptr:
            _lib.free(self._ptr)
            self._ptr = 0


def from_c(ptr, n, dtype):
    """A 1-D numpy array over n elements at ptr (malloc'ed by C), freed when the array dies."""
    dtype = np.dtype(dtype)
    if n == 0 or not ptr:
        if ptr:
            _lib.free(ptr)
        return np.empty(0, dtype)
    return np.asarray(_CBuffer(ptr, n, dtype.str))


def as_input(a, dtype, name):
    """a as a C-contiguous array of exactly dtype (no copy when it already is one). A numpy array
    of another dtype is a TypeError: converting silently would hide a caller's mistake. Lists and
    other sequences are converted."""
    dtype = np.dtype(dtype)
    if isinstance(a, np.ndarray):
        if a.dtype != dtype:
            raise TypeError("%s: expected a %s array, got %s" % (name, dtype.name, a.dtype))
        return np.ascontiguousarray(a)
    arr = np.asarray(a)
    if arr.dtype.kind not in "iuf" and arr.size:
        raise TypeError("%s: expected numbers (%s), got %s" % (name, dtype.name, arr.dtype))
    if dtype.kind in "iu" and arr.dtype.kind == "f" and arr.size:
        raise TypeError("%s: expected integers, got %s" % (name, arr.dtype))
    return np.ascontiguousarray(arr, dtype=dtype)


def ptr(a, ctype):
    return a.ctypes.data_as(ctypes.POINTER(ctype))


def shape_of(shape, name="shape"):
    """A tuple of non-negative ints from an int or a sequence of ints."""
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        shape = tuple(int(s) if isinstance(s, (int, np.integer)) else _bad(name, shape) for s in shape)
    except TypeError:
        raise TypeError("%s: expected an int or a sequence of ints, got %r" % (name, shape)) from None
    if any(s < 0 for s in shape):
        raise ValueError("%s: negative dimension in %r" % (name, shape))
    return shape


def _bad(name, shape):
    raise TypeError("%s: expected an int or a sequence of ints, got %r" % (name, shape))


def n_elements(shape):
    n = 1
    for s in shape:
        n *= s
    return n
