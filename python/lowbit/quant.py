"""GGUF block quantization (C: src/quant, lb_quantize_checked / lb_dequantize)."""
import builtins
import ctypes

import numpy as np

from . import _arrays, _lib


def _type_id(qtype):
    if not isinstance(qtype, str):
        raise TypeError("type: expected a name such as 'q8_0', got %r" % (qtype,))
    fn = _lib.require("lb_dtype_from_name", "quantize")
    t = fn(qtype.encode())
    if t < 0:
        raise ValueError("type: unknown type %r (e.g. 'q8_0', 'q4_0', 'q4_k', 'tq2_0')" % qtype)
    return t


def _row_bytes(t, qtype, n_per_row):
    rb = _lib.lib().lb_dtype_row_size(t, n_per_row)
    if rb == 0 and n_per_row > 0:
        raise ValueError("%s: the row length %d (the last dimension) is not a multiple of the block size"
                         % (qtype, n_per_row))
    return rb


def _rows(shape, what):
    if len(shape) == 0:
        raise ValueError("%s: expected at least one dimension (rows are the last one)" % what)
    n_per_row = shape[-1]
    if n_per_row == 0:
        raise ValueError("%s: empty rows" % what)
    return _arrays.n_elements(shape[:-1]), n_per_row


def quantize(array, type, imatrix=None):
    """Quantizes a float32 array to the GGUF block format `type` ("q8_0", "q4_0", "q4_k", "iq4_xs",
    ...). Rows are the last dimension, whose length must be a multiple of the block size (32, or
    256 for K-quants and iq4_xs). imatrix: optional float32 importance per column. Returns the blocks as bytes,
    exactly what a GGUF tensor of that type holds."""
    qtype = type
    t = _type_id(qtype)
    if not _lib.lib().lb_quant_can_write(t):
        raise ValueError("type: lowbit cannot write %r" % qtype)
    x = _arrays.as_input(array, np.float32, "array")
    n_rows, n_per_row = _rows(x.shape, "array")
    rb = _row_bytes(t, qtype, n_per_row)
    im = None
    if imatrix is not None:
        im = _arrays.as_input(imatrix, np.float32, "imatrix").reshape(-1)
        if im.size != n_per_row:
            raise ValueError("imatrix: %d values for rows of %d" % (im.size, n_per_row))
    fn = _lib.require("lb_quantize_checked", "quantize")
    out = np.empty(rb * n_rows, np.uint8)
    written = ctypes.c_size_t()
    _lib.call(fn, t, _arrays.ptr(x, ctypes.c_float), out.ctypes.data_as(ctypes.c_void_p), n_rows, n_per_row,
              _arrays.ptr(im, ctypes.c_float) if im is not None else None, ctypes.byref(written))
    return out[:written.value].tobytes()


def _row_dequantizer(t):
    name = _lib.lib().lb_dtype_name(t).decode().lower().replace("_k", "_K")
    return getattr(_lib.lib(), "lb_dequantize_row_" + name, None)


def dequantize(data, type, shape):
    """Float32 array of the given shape from blocks of `type` (bytes, bytearray, memoryview or a
    uint8 array of exactly the right length)."""
    qtype = type
    t = _type_id(qtype)
    shape = _arrays.shape_of(shape)
    n_rows, n_per_row = _rows(shape, "shape")
    rb = _row_bytes(t, qtype, n_per_row)
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise TypeError("data: expected bytes or a uint8 array, got %s" % data.dtype)
        buf = np.ascontiguousarray(data).reshape(-1)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        buf = np.frombuffer(data, np.uint8)
    else:
        raise TypeError("data: expected bytes, got %s" % builtins.type(data).__name__)
    if buf.size != rb * n_rows:
        raise ValueError("data: %d bytes, %d rows of %d %s values need %d" % (buf.size, n_rows, n_per_row, qtype,
                                                                             rb * n_rows))
    out = np.empty(shape, np.float32)
    n = n_rows * n_per_row
    src = buf.ctypes.data_as(ctypes.c_void_p)
    dst = _arrays.ptr(out, ctypes.c_float)
    status = _lib.require("lb_dequantize", "dequantize")(t, src, dst, n)
    if status == _lib.LB_ERR_UNSUPPORTED:
        # the generic entry learns block formats when the quant module registers them; until
        # then the format's own C dequantizer does the same work
        row = _row_dequantizer(t)
        if row is None:
            raise _lib.LowbitError(status, "dequantize: this liblowbit cannot read %s" % qtype, "unsupported")
        row(src, dst, n)
    elif status:
        _lib.raise_for(status, None, "dequantize %s: %d values" % (qtype, n))
    return out

