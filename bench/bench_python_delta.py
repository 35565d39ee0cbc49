"""compress_delta_sparse and compress_delta_int8 through lowbit (C) versus a straightforward
numpy implementation of the same operation, on a float32 delta (random normal * 1e-3 with a
fraction of exact zeros). Prints the median of several runs in ms and the speedup.

usage: /usr/bin/python3 bench/bench_python_delta.py [N_ELEMENTS (default 100M)] [RUNS (default 5)]
(the library is found as `import lowbit` finds it; LOWBIT_LIBRARY overrides)"""
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import lowbit  # noqa: E402

THRESHOLD = 1e-3
BLOCK = 64
ZERO_FRACTION = 0.3


def np_sparse(d, t):
    idx = np.nonzero(np.abs(d) > t)[0].astype(np.uint32)
    return idx, d[idx]


def np_int8(d, block):
    n = d.size
    nb = -(-n // block)
    if nb * block != n:
        p = np.zeros(nb * block, np.float32)
        p[:n] = d
        d = p
    b = d.reshape(nb, block)
    scales = np.abs(b).max(axis=1) / np.float32(127)
    inv = np.divide(np.float32(1), scales, out=np.zeros_like(scales), where=scales != 0)
    q = np.clip(np.rint(b * inv[:, None]), -127, 127).astype(np.int8).ravel()[:n]
    return q, scales


def median_ms(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    n = int(float(sys.argv[1])) if len(sys.argv) > 1 else 100_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    rng = np.random.default_rng(0)
    d = rng.standard_normal(n, dtype=np.float32)
    d *= np.float32(1e-3)
    d[rng.random(n, dtype=np.float32) < ZERO_FRACTION] = 0
    print("lowbit %s (%s), numpy %s; %d float32 elements (%.0f MB), %.0f%% zeros, median of %d runs"
          % (lowbit.version(), lowbit.library_path(), np.__version__, n, n * 4 / 1e6, ZERO_FRACTION * 100, runs))

    # same results first: the comparison is between two implementations of one operation
    i1, v1, _ = lowbit.compress_delta_sparse(d, THRESHOLD)
    i2, v2 = np_sparse(d, THRESHOLD)
    assert np.array_equal(i1, i2) and np.array_equal(v1, v2), "sparse results differ"
    kept = i1.size
    del i1, v1, i2, v2
    q1, s1 = lowbit.compress_delta_int8(d, BLOCK)
    q2, s2 = np_int8(d, BLOCK)
    assert np.array_equal(q1, q2) and np.array_equal(s1, s2), "int8 results differ"
    del q1, s1, q2, s2

    rows = [
        ("compress_delta_sparse (t=%g, %.1f%% kept)" % (THRESHOLD, 100 * kept / n),
         median_ms(lambda: lowbit.compress_delta_sparse(d, THRESHOLD), runs),
         median_ms(lambda: np_sparse(d, THRESHOLD), runs)),
        ("compress_delta_int8 (block %d)" % BLOCK,
         median_ms(lambda: lowbit.compress_delta_int8(d, BLOCK), runs),
         median_ms(lambda: np_int8(d, BLOCK), runs)),
    ]
    print("| operation | lowbit ms | numpy ms | speedup |")
    print("|---|---:|---:|---:|")
    for name, a, b in rows:
        print("| %s | %.1f | %.1f | %.1fx |" % (name, a, b, b / a))


if __name__ == "__main__":
    main()
