"""lowbit.pull and Model("hf://...") against the fake Hub of tests/hub_fake.py (loopback):
the bytes and the path the C client gives, progress callbacks, errors as LowbitError, and a
model loaded from hf:// generating what the local file generates."""
import os
import sys

import pytest

import lowbit
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "tests"))
from hub_fake import FakeHub  # noqa: E402


@pytest.fixture()
def hub(shared, tmp_path, monkeypatch):
    gguf = open(shared("models", "stories260K-gguf", "stories260K.gguf"), "rb").read()
    h = FakeHub({"t/stories": {"files": {"stories260K-F32.gguf": gguf}}}).start()
    monkeypatch.setenv("HF_ENDPOINT", h.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield h, gguf
    h.stop()


def test_pull_file_and_progress(hub, tmp_path):
    h, gguf = hub
    seen = []
    p = lowbit.pull("t/stories:F32", progress=lambda what, done, total: seen.append((what, done, total)))
    assert p.endswith("/snapshots/%s/stories260K-F32.gguf" % h.commit("t/stories"))
    assert open(p, "rb").read() == gguf
    assert seen and seen[-1] == ("stories260K-F32.gguf", len(gguf), len(gguf))
    assert lowbit.pull("t/stories:F32", offline=True) == p


def test_pull_errors(hub):
    with pytest.raises(lowbit.LowbitError, match="404"):
        lowbit.pull("t/stories:nope.gguf")
    with pytest.raises(lowbit.LowbitError, match="not a Hub reference"):
        lowbit.pull("no-slash")
    with pytest.raises(lowbit.LowbitError, match="not in the cache"):
        lowbit.pull("t/other:x.gguf", offline=True)
    with pytest.raises(TypeError):
        lowbit.pull(42)


def test_model_from_hf(hub, shared):
    m = lowbit.Model("hf://t/stories:F32", threads=1)
    local = lowbit.Model(shared("models", "stories260K-gguf", "stories260K.gguf"), threads=1)
    a = m.generate("Once upon a time", max_tokens=10, temperature=0)
    b = local.generate("Once upon a time", max_tokens=10, temperature=0)
    assert a.ids == b.ids
