"""Speculative decoding from Python (generate(draft=..., lookup=...)): greedy output equals the
reference ids of tinystories-512d, streaming included; sampled runs work; bad options fail."""
import json

import pytest

import lowbit
from conftest import STORIES_GGUF


@pytest.fixture(scope="module")
def models(shared):
    with lowbit.Model(shared("models", "tinystories-512d"), threads=1, kv_type="f32") as t, \
            lowbit.Model(shared(*STORIES_GGUF), threads=1, kv_type="f32") as d:
        yield t, d


def test_greedy_equals_reference(models, shared):
    t, d = models
    with open(shared("reference", "tinystories-512d", "greedy.json")) as f:
        cases = json.load(f)
    for case in cases:
        n = len(case["greedy_ids"])
        drafted = t.generate(case["prompt"], max_tokens=n, draft=d, draft_max=6)
        looked = t.generate(case["prompt"], max_tokens=n, lookup=2)
        assert drafted.ids == case["greedy_ids"] and looked.ids == case["greedy_ids"], case["prompt"]
        assert 0 < drafted.n_accepted <= drafted.n_drafted
        assert looked.n_accepted <= looked.n_drafted
    whole = t.generate("Once upon a time", max_tokens=40)
    assert "".join(t.generate("Once upon a time", max_tokens=40, stream=True, draft=d)) == whole


def test_sampled(models):
    t, d = models
    out = t.generate("Once upon a time", max_tokens=30, temperature=0.8, seed=3, draft=d)
    assert len(out.ids) == 30 and out.n_drafted > 0
    again = t.generate("Once upon a time", max_tokens=30, temperature=0.8, seed=3, draft=d)
    assert again.ids == out.ids  # a fixed seed repeats


def test_bad_options(models, shared):
    t, d = models
    with pytest.raises(lowbit.LowbitError, match="draft_max is 64"):
        t.generate("Once", max_tokens=4, lookup=2, draft_max=64)
    with pytest.raises(ValueError, match="another Model"):
        t.generate("Once", max_tokens=4, draft=t)
    with pytest.raises(TypeError, match="draft"):
        t.generate("Once", max_tokens=4, draft="model.gguf")
    with lowbit.Model(shared("models", "synth-llama3-gqa"), threads=1) as g:
        with pytest.raises(lowbit.LowbitError, match="vocabulary"):
            t.generate("Once", max_tokens=4, draft=g)
