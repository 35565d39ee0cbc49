"""Sparse and int8 deltas against plain numpy definitions (bit for bit)."""
import numpy as np
import pytest

import lowbit
from conftest import need


def make_delta(shape, seed=0, zeros=0.3):
    rng = np.random.default_rng(seed)
    d = (rng.standard_normal(shape) * 1e-3).astype(np.float32)
    d[rng.random(shape) < zeros] = 0
    return d


def np_sparse(d, t):
    flat = d.ravel()
    idx = np.flatnonzero(~(np.abs(flat) <= np.float32(t))).astype(np.uint32)  # NaN is kept
    return idx, flat[idx]


def np_int8(d, block):
    flat = d.ravel()
    n = flat.size
    nb = -(-n // block)
    pad = np.zeros(nb * block, np.float32)
    pad[:n] = flat
    blocks = pad.reshape(nb, block)
    amax = np.abs(blocks).max(axis=1)
    scales = (amax / np.float32(127)).astype(np.float32)
    inv = np.zeros_like(scales)
    nz = scales != 0
    inv[nz] = np.float32(1) / scales[nz]
    q = np.clip(np.rint(blocks * inv[:, None]), -127, 127).astype(np.int8).ravel()[:n]
    return q.reshape(d.shape), scales


@pytest.mark.parametrize("shape,t", [((1000, 37), 1e-3), ((4099,), 0.0), ((3, 5, 7), 5e-4), ((0,), 1e-3)])
def test_sparse_bit_identical(shape, t):
    need("lb_compress_delta_sparse", "lb_decompress_delta_sparse")
    d = make_delta(shape)
    idx, val, ratio = lowbit.compress_delta_sparse(d, t)
    ridx, rval = np_sparse(d, t)
    assert idx.dtype == np.uint32 and val.dtype == np.float32
    assert np.array_equal(idx, ridx)
    assert np.array_equal(val.view(np.uint32), rval.view(np.uint32))
    k = ridx.size
    assert ratio == (d.size * 4 / (k * 8) if k else float("inf"))
    dense = lowbit.decompress_delta_sparse(idx, val, d.shape)
    want = np.zeros(d.size, np.float32)
    want[ridx] = rval
    assert dense.shape == d.shape and np.array_equal(dense.ravel().view(np.uint32), want.view(np.uint32))
    assert lowbit.decompress_delta_sparse(idx, val, d.shape, dtype=np.float64).dtype == np.float64


def test_sparse_nan_inf_kept_and_range_error():
    need("lb_compress_delta_sparse", "lb_decompress_delta_sparse")
    d = np.array([0, np.nan, 1e-6, -np.inf, 2e-3, -0.0], np.float32)
    idx, val, _ = lowbit.compress_delta_sparse(d, 1e-3)
    assert idx.tolist() == [1, 3, 4]
    assert np.isnan(val[0]) and val[1] == -np.inf and val[2] == np.float32(2e-3)
    with pytest.raises(lowbit.LowbitError) as e:
        lowbit.decompress_delta_sparse(np.array([0, 9], np.uint32), np.ones(2, np.float32), (5,))
    assert "index 9" in e.value.message


def test_sparse_arrays_own_c_buffers():
    need("lb_compress_delta_sparse")
    d = make_delta((20000,), seed=3)
    idx, val, _ = lowbit.compress_delta_sparse(d, 1e-4)
    assert idx.base is not None and val.base is not None  # views of the C buffers, no copy
    del d
    for _ in range(3):  # buffers are freed with their arrays; new ones do not disturb old ones
        lowbit.compress_delta_sparse(make_delta((20000,), seed=4), 1e-4)
    idx2, val2 = np_sparse(make_delta((20000,), seed=3), 1e-4)
    assert np.array_equal(idx, idx2) and np.array_equal(val, val2)


@pytest.mark.parametrize("shape,block", [((1000, 37), 64), ((4099,), 64), ((130,), 32), ((7,), 64)])
def test_int8_bit_identical(shape, block):
    need("lb_compress_delta_int8", "lb_decompress_delta_int8")
    d = make_delta(shape, seed=1)
    d.ravel()[:block] = 0  # an all-zero block
    q, scales = lowbit.compress_delta_int8(d, block)
    rq, rs = np_int8(d, block)
    assert q.shape == d.shape and q.dtype == np.int8
    assert np.array_equal(q, rq)
    assert np.array_equal(scales.view(np.uint32), rs.view(np.uint32))
    back = lowbit.decompress_delta_int8(q, scales, d.shape, block)
    want = (q.ravel().astype(np.float32) * np.repeat(scales, block)[:d.size]).reshape(d.shape)
    assert np.array_equal(back.view(np.uint32), want.view(np.uint32))
    err = np.abs(back - d).ravel()
    bound = np.repeat(scales, block)[:d.size] / 2 * 1.0001
    assert np.all(err <= bound)


def test_int8_default_block_and_nonfinite():
    need("lb_compress_delta_int8")
    d = make_delta((256,))
    q, s = lowbit.compress_delta_int8(d)
    assert s.size == 256 // lowbit.INT8_BLOCK
    d[100] = np.inf
    with pytest.raises(lowbit.LowbitError) as e:
        lowbit.compress_delta_int8(d)
    assert e.value.status == 5 and "non-finite" in e.value.message  # LB_ERR_ARG


def test_delta_argument_errors():
    d = np.zeros(64, np.float32)
    with pytest.raises(TypeError):
        lowbit.compress_delta_sparse(d.astype(np.float64), 1e-3)
    with pytest.raises(TypeError):
        lowbit.compress_delta_sparse(d.astype(">f4"), 1e-3)
    with pytest.raises(ValueError):
        lowbit.compress_delta_sparse(d, -1.0)
    with pytest.raises(ValueError):
        lowbit.compress_delta_sparse(d, float("nan"))
    with pytest.raises(TypeError):
        lowbit.compress_delta_sparse(d, "0.1")
    with pytest.raises(TypeError):
        lowbit.decompress_delta_sparse(np.zeros(2, np.int64), np.zeros(2, np.float32), (4,))
    with pytest.raises(ValueError):
        lowbit.decompress_delta_sparse(np.zeros(2, np.uint32), np.zeros(3, np.float32), (4,))
    with pytest.raises(TypeError):
        lowbit.decompress_delta_sparse(np.zeros(2, np.uint32), np.zeros(2, np.float32), (4,), dtype=np.int32)
    with pytest.raises(ValueError):
        lowbit.decompress_delta_sparse(np.zeros(2, np.uint32), np.zeros(2, np.float32), (-4,))
    with pytest.raises(TypeError):
        lowbit.compress_delta_int8(d.astype(np.float16))
    with pytest.raises(ValueError):
        lowbit.compress_delta_int8(d, block=0)
    with pytest.raises(TypeError):
        lowbit.decompress_delta_int8(np.zeros(64, np.uint8), np.zeros(1, np.float32), (64,))
    with pytest.raises(ValueError):
        lowbit.decompress_delta_int8(np.zeros(64, np.int8), np.zeros(2, np.float32), (64,))
    with pytest.raises(ValueError):
        lowbit.decompress_delta_int8(np.zeros(64, np.int8), np.zeros(1, np.float32), (65,))


def test_non_contiguous_input():
    need("lb_compress_delta_sparse", "lb_compress_delta_int8")
    d = make_delta((64, 128), seed=5)[:, ::2]
    idx, val, _ = lowbit.compress_delta_sparse(d, 1e-3)
    ridx, rval = np_sparse(np.ascontiguousarray(d), 1e-3)
    assert np.array_equal(idx, ridx) and np.array_equal(val, rval)
    q, s = lowbit.compress_delta_int8(d)
    rq, rs = np_int8(np.ascontiguousarray(d), 64)
    assert np.array_equal(q, rq) and np.array_equal(s, rs)
