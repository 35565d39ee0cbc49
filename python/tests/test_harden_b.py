"""Issue 11, finding 7: misuse of one Model is refused clearly, never silently wrong."""
import threading

import pytest

import lowbit
from conftest import STORIES_GGUF


@pytest.fixture(scope="module")
def model(shared):
    with lowbit.Model(shared(*STORIES_GGUF), threads=1) as m:
        yield m


def test_detokenize_huge_id_names_it(model):
    # before: 2**40 wrapped to id 0 in the int32 conversion and decoded as "<unk>"
    with pytest.raises(ValueError, match=r"1099511627776 is outside the vocabulary of %d" % model.n_vocab):
        model.detokenize([2 ** 40])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.generate([1, 2 ** 33], max_tokens=1)


def test_huge_max_tokens_capped_by_context(shared):
    with lowbit.Model(shared(*STORIES_GGUF), threads=1, n_ctx=32) as m:
        out = m.generate("Once upon a time", max_tokens=10 ** 12)  # before: a 3.6 TiB numpy allocation
        assert len(out.prompt_ids) + len(out.ids) <= 33 and out.stop_reason in ("context", "eos")


def test_generate_during_open_stream_refused_and_stream_unchanged(model):
    whole = model.generate("Once upon a time", max_tokens=20)
    st = model.generate("Once upon a time", max_tokens=20, stream=True)
    first = next(st)
    with pytest.raises(RuntimeError, match="busy"):
        model.generate("The dog", max_tokens=5)
    assert first + "".join(st) == whole
    assert model.generate("Once upon a time", max_tokens=20) == whole  # the lock is released


def test_two_threads_never_silently_wrong(model):
    want = model.generate("Once upon a time", max_tokens=30)
    got, errors = [], []

    def worker():
        for _ in range(5):
            try:
                got.append(model.generate("Once upon a time", max_tokens=30))
            except RuntimeError as e:
                errors.append(str(e))

    ts = [threading.Thread(target=worker) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(got) + len(errors) == 10
    assert all(g == want for g in got)  # before: interleaved sessions gave wrong greedy text
    assert all("busy" in e for e in errors)


def test_stream_stopped_early_or_by_close(shared):
    # the stream runs lb_generate on a worker thread: closing the stream, or the Model under an
    # open stream, must stop that thread before the session is reused or freed (ASan build: no
    # use after free), and what was streamed is a prefix of the whole answer
    with lowbit.Model(shared(*STORIES_GGUF), threads=1) as m:
        whole = m.generate("Once upon a time", max_tokens=200)
        st = m.generate("Once upon a time", max_tokens=200, stream=True)
        first = next(st)
        st.close()
        assert whole.startswith(first) and m.generate("Once upon a time", max_tokens=200) == whole
        st = m.generate("Once upon a time", max_tokens=200, stream=True)
        first = next(st)
    rest = "".join(st)  # pieces made before close() stopped the run, then the end
    assert whole.startswith(first + rest)
    with pytest.raises(ValueError, match="closed"):
        m.generate("Once upon a time", max_tokens=5)
