"""lowbit.imatrix: the Python path (tokenize in Python's call, compute, entries) gives the same
matrix as `lowbit imatrix` on the same text, survives save / load, and feeds quantize(imatrix=)."""
import subprocess

import numpy as np
import pytest

import lowbit

TEXT = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
        "One day, she saw a big red ball under a tree. She ran to get it and laughed. ") * 12


def test_imatrix_matches_cli(shared, cli, tmp_path):
    model_path = shared("models", "stories260K-gguf", "stories260K.gguf")
    text = tmp_path / "calib.txt"
    text.write_text(TEXT)
    cli_dat = tmp_path / "cli.dat"
    subprocess.run([cli, "imatrix", "-m", model_path, "-f", str(text), "-o", str(cli_dat), "-c", "64"], check=True,
                   capture_output=True)
    with lowbit.Model(model_path, threads=1) as m:
        im = lowbit.imatrix(m, file=text, n_ctx=64)
    ref = lowbit.Imatrix.load(cli_dat)
    assert im.n_chunks == ref.n_chunks > 0 and im.dataset == str(text)
    a, b = im.entries, ref.entries
    assert sorted(a) == sorted(b) and len(a) == 5 * 7 + 1  # the blocks' matrices and the head
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=0)
    np.testing.assert_array_equal(a["blk.2.attn_q.weight"], a["blk.2.attn_v.weight"])  # the same input

    saved = tmp_path / "py.dat"
    im.save(saved)
    back = lowbit.Imatrix.load(saved)
    assert back.n_chunks == im.n_chunks and all(np.array_equal(back.entries[k], a[k]) for k in a)
    w = (np.random.default_rng(1).standard_normal((8, 64)) * 0.02).astype(np.float32)
    assert len(lowbit.quantize(w, "q4_0", imatrix=a["blk.0.attn_q.weight"])) == 8 * 2 * 18


def test_imatrix_errors(shared, tmp_path):
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"\x02\x00\x00\x00\x05\x00")
    with pytest.raises(lowbit.LowbitError) as e:
        lowbit.Imatrix.load(bad)
    assert e.value.status == lowbit._lib.LB_ERR_FORMAT and "bad.dat" in e.value.message
    with lowbit.Model(shared("models", "stories260K-gguf", "stories260K.gguf"), threads=1) as m:
        with pytest.raises(lowbit.LowbitError) as e:
            lowbit.imatrix(m, text="Once upon a time.", n_ctx=512)
        assert "fewer than one chunk" in e.value.message
        with pytest.raises(ValueError):
            lowbit.imatrix(m)
