"""quantize / dequantize: block sizes, independent decoders of the GGUF layouts, error bounds."""
import numpy as np
import pytest

import lowbit
from conftest import need

# bytes per block, elements per block (GGUF)
LAYOUT = {"q8_0": (34, 32), "q4_0": (18, 32), "q4_k": (144, 256), "tq2_0": (66, 256), "iq4_nl": (18, 32),
          "iq4_xs": (136, 256)}


def weights(shape, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 0.02).astype(np.float32)


def np_dequant_q8_0(b, n):
    blk = np.frombuffer(b, np.uint8).reshape(-1, 34)
    d = blk[:, :2].copy().view(np.float16).astype(np.float32)
    q = blk[:, 2:].view(np.int8).astype(np.float32)
    return (q * d).ravel()[:n]


def np_dequant_q4_0(b, n):
    blk = np.frombuffer(b, np.uint8).reshape(-1, 18)
    d = blk[:, :2].copy().view(np.float16).astype(np.float32)
    qs = blk[:, 2:]
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.float32) - 8
    return (q * d).ravel()[:n]


def np_dequant_tq2_0(b, n):
    blk = np.frombuffer(b, np.uint8).reshape(-1, 66)
    qs, d = blk[:, :64], blk[:, 64:66].copy().view(np.float16).astype(np.float32)
    out = np.empty((blk.shape[0], 256), np.float32)
    for j in (0, 32):
        for l in range(4):
            q = ((qs[:, j:j + 32] >> (2 * l)) & 3).astype(np.float32) - 1
            out[:, j * 4 + l * 32: j * 4 + l * 32 + 32] = q * d
    return out.ravel()[:n]


IQ4_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.float32)


def np_iq4_32(d, qs):  # d: (nb,), qs: (nb, 16) codes: low nibbles first, then high nibbles
    q = np.concatenate([qs & 15, qs >> 4], axis=1)
    return d[:, None] * IQ4_LEVELS[q]


def np_dequant_iq4_nl(b, n):
    a = np.frombuffer(b, np.uint8).reshape(-1, 18)
    return np_iq4_32(a[:, :2].copy().view(np.float16).astype(np.float32).ravel(), a[:, 2:]).ravel()


def np_dequant_iq4_xs(b, n):
    a = np.frombuffer(b, np.uint8).reshape(-1, 136)
    d = a[:, :2].copy().view(np.float16).astype(np.float32).ravel()
    sh = a[:, 2:4].copy().view(np.uint16).ravel().astype(np.int32)
    j = np.arange(8)
    lo = (a[:, 4 + j // 2] >> (4 * (j % 2))) & 15
    sc = (lo | (((sh[:, None] >> (2 * j)) & 3) << 4)) - 32
    dl = (d[:, None] * sc).ravel()
    return np_iq4_32(dl, a[:, 8:].reshape(-1, 16)).ravel()


DECODERS = {"q8_0": np_dequant_q8_0, "q4_0": np_dequant_q4_0, "tq2_0": np_dequant_tq2_0,
            "iq4_nl": np_dequant_iq4_nl, "iq4_xs": np_dequant_iq4_xs}


@pytest.mark.parametrize("qtype", ["q8_0", "q4_0", "q4_k", "tq2_0", "iq4_nl", "iq4_xs"])
def test_sizes_and_decoders(qtype):
    need("lb_quantize_checked", "lb_dtype_from_name")
    bpb, bs = LAYOUT[qtype]
    x = weights((3, 512))
    b = lowbit.quantize(x, qtype)
    assert isinstance(b, bytes) and len(b) == 3 * 512 // bs * bpb
    y = lowbit.dequantize(b, qtype, x.shape)
    assert y.shape == x.shape and y.dtype == np.float32
    if qtype in DECODERS:
        assert np.array_equal(y.ravel(), DECODERS[qtype](b, x.size))
    # same input, same bytes; dequantize accepts bytearray / memoryview / uint8 arrays
    assert lowbit.quantize(x, qtype) == b
    assert np.array_equal(lowbit.dequantize(np.frombuffer(b, np.uint8), qtype, x.shape), y)
    assert np.array_equal(lowbit.dequantize(memoryview(bytearray(b)), qtype.upper(), x.shape), y)


@pytest.mark.parametrize("qtype,max_rel_rms", [("q8_0", 0.01), ("q4_0", 0.15), ("q4_k", 0.12)])
def test_error_bounds(qtype, max_rel_rms):
    need("lb_quantize_checked")
    x = weights((8, 1024), seed=2)
    y = lowbit.dequantize(lowbit.quantize(x, qtype), qtype, x.shape)
    rel = np.sqrt(np.mean((y - x) ** 2)) / np.sqrt(np.mean(x ** 2))
    assert rel < max_rel_rms, rel
    bs = LAYOUT[qtype][1]
    # every value within one quantization step of its block's range
    amax = np.abs(x).reshape(-1, bs).max(axis=1)
    levels = {"q8_0": 127, "q4_0": 8, "q4_k": 7.5}[qtype]
    err = np.abs(y - x).reshape(-1, bs).max(axis=1)
    assert np.all(err <= amax / levels * 1.01)


def test_q8_0_exact_on_representable_values():
    need("lb_quantize_checked")
    # multiples of a power-of-two scale with a full-range element quantize without loss
    rng = np.random.default_rng(4)
    q = rng.integers(-127, 128, (4, 64)).astype(np.float32)
    q[:, ::32] = 127
    x = q * np.float32(2 ** -10)
    assert np.array_equal(lowbit.dequantize(lowbit.quantize(x, "q8_0"), "q8_0", x.shape), x)


def test_tq2_0_ternary_roundtrip():
    need("lb_quantize_checked")
    rng = np.random.default_rng(5)
    x = (rng.choice([-1.0, 1.0], (2, 256)) * 0.25).astype(np.float32)  # mean |x| = 0.25 exactly
    y = lowbit.dequantize(lowbit.quantize(x, "tq2_0"), "tq2_0", x.shape)
    assert np.array_equal(x, y)


def test_quant_argument_errors():
    x = weights((2, 64))
    with pytest.raises(TypeError):
        lowbit.quantize(x.astype(np.float64), "q8_0")
    with pytest.raises(TypeError):
        lowbit.quantize(x, 8)
    need("lb_dtype_from_name", "lb_quant_can_write")
    with pytest.raises(ValueError):
        lowbit.quantize(x, "q9_9")
    with pytest.raises(ValueError):
        lowbit.quantize(x, "q4_k")  # rows of 64 are not a multiple of 256
    with pytest.raises(ValueError):
        lowbit.quantize(weights((2, 40)), "q8_0")
    with pytest.raises(ValueError):
        lowbit.quantize(np.float32(1.0), "q8_0")
    b = lowbit.quantize(x, "q8_0")
    with pytest.raises(ValueError):
        lowbit.dequantize(b[:-1], "q8_0", x.shape)
    with pytest.raises(ValueError):
        lowbit.dequantize(b, "q8_0", (3, 64))
    with pytest.raises(TypeError):
        lowbit.dequantize(np.zeros(68, np.int16), "q8_0", (2, 32))
    with pytest.raises(TypeError):
        lowbit.dequantize("text", "q8_0", (2, 32))
