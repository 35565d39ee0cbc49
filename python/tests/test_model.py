"""Model and Tokenizer against ../shared/reference and the lowbit CLI."""
import json
import os
import subprocess

import numpy as np
import pytest

import lowbit
from conftest import STORIES_GGUF, TOK512_MODEL, need


def ref(shared, *p):
    with open(shared("reference", *p)) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def model(shared):
    # f32 KV: these tests compare with transformers and with `lowbit logits` (an f32 cache)
    with lowbit.Model(shared(*STORIES_GGUF), threads=1, kv_type="f32") as m:
        yield m


def run_cli(cli, *args):
    r = subprocess.run([cli, *args], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout


def test_generate_greedy_matches_reference(model, shared):
    for case in ref(shared, "stories260K", "greedy.json"):
        out = model.generate(case["prompt"], max_tokens=len(case["greedy_ids"]), temperature=0)
        assert out.prompt_ids == case["prompt_ids"]
        assert out.ids == case["greedy_ids"], case["prompt"]
        assert case["prompt"] + out == case["text"]
        assert isinstance(out, str) and out.stop_reason in ("length", "eos")


def test_generate_stream_equals_whole(model):
    whole = model.generate("Once upon a time", max_tokens=40)
    pieces = list(model.generate("Once upon a time", max_tokens=40, stream=True))
    assert len(pieces) > 1 and all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == whole


def test_generate_from_ids_and_eos(model, shared):
    case = ref(shared, "stories260K", "greedy.json")[0]
    out = model.generate(case["prompt_ids"], max_tokens=8)
    assert out.ids == case["greedy_ids"][:8]
    # a long run ends at the end-of-story token or at max_tokens, never returning the EOS id
    long = model.generate("Once upon a time", max_tokens=400)
    assert long.stop_reason in ("eos", "length", "context")
    assert 2 not in long.ids  # </s> of tok512 ends generation and is not returned
    assert (len(long.ids) < 400) == (long.stop_reason != "length")


def test_tokenize_tok512_reference(shared):
    cases = ref(shared, "stories260K", "tokenize.json")
    with lowbit.Tokenizer(shared(*TOK512_MODEL)) as tok:
        for c in cases:
            assert tok.tokenize(c["text"]) == c["ids_with_bos"], c["text"]
            assert tok.tokenize(c["text"], add_special=False) == c["ids_with_bos"][1:]
            assert tok.detokenize(c["ids_with_bos"]) == c["decoded"]


def test_model_with_tokenizer_model_equals_reference(shared):
    # the GGUF's own vocabulary has no SentencePiece normalizer spec; the .model file has
    with lowbit.Model(shared(*STORIES_GGUF), threads=1, tokenizer=shared(*TOK512_MODEL)) as m:
        for c in ref(shared, "stories260K", "tokenize.json"):
            assert m.tokenize(c["text"]) == c["ids_with_bos"], c["text"]


def test_model_tokenize_equals_cli(model, shared, cli):
    for c in ref(shared, "stories260K", "tokenize.json"):
        ids = model.tokenize(c["text"])
        assert ids[0] == 1
        cli_ids = json.loads(run_cli(cli, "tokenize", "-m", shared(*STORIES_GGUF), "--", c["text"]))
        assert ids == cli_ids
        cli_ids = json.loads(run_cli(cli, "tokenize", "-m", shared(*STORIES_GGUF), "--no-special", "--", c["text"]))
        assert model.tokenize(c["text"], add_special=False) == cli_ids


def test_logits_match_reference(model, shared):
    case = ref(shared, "stories260K", "greedy.json")[0]
    ids = case["prompt_ids"] + case["greedy_ids"]
    want = np.fromfile(shared("reference", "stories260K", case["logits_file"]), "<f4").reshape(case["logits_shape"])
    got = model.logits(ids)
    assert got.shape == tuple(case["logits_shape"]) and got.dtype == np.float32
    rel = np.linalg.norm(got.astype(np.float64) - want) / np.linalg.norm(want.astype(np.float64))
    assert rel < 1e-4, rel
    # the CLI writes the same floats
    out = os.path.join(os.environ.get("TMPDIR", "/tmp"), "lowbit_py_logits_%d.f32" % os.getpid())
    try:
        run_cli(cli_path(), "logits", "-m", shared(*STORIES_GGUF), "--ids", ",".join(map(str, ids)), "-o", out, "-t", "1")
        assert np.array_equal(np.fromfile(out, "<f4").reshape(got.shape), got)
    finally:
        if os.path.exists(out):
            os.unlink(out)


def cli_path():
    return os.environ.get("LOWBIT_BINARY") or os.path.join(os.path.dirname(lowbit.library_path()), "lowbit")


@pytest.mark.parametrize("extra", [(), ("--temp", "0.9", "--top-p", "0.95", "--seed", "7")])
def test_generate_equals_cli_run(model, shared, cli, extra):
    prompt = "The cat sat on the mat."
    o = json.loads(run_cli(cli, "run", "-m", shared(*STORIES_GGUF), "-p", prompt, "-n", "48", "--json", "-t", "1",
                           "--kv-type", "f32", *extra))
    kw = {}
    if extra:
        kw = dict(temperature=0.9, top_p=0.95, seed=7)
    out = model.generate(prompt, max_tokens=48, **kw)
    assert out.prompt_ids == o["prompt_ids"]
    assert out.ids == o["ids"]
    assert out == o["text"]


def test_kv_default_f16_as_cli_run(shared, cli):
    """Issue 11: the KV cache is f16 by default, as in `lowbit run` (it was f32 in Python)."""
    prompt = "The cat sat on the mat."
    o = json.loads(run_cli(cli, "run", "-m", shared(*STORIES_GGUF), "-p", prompt, "-n", "48", "--json", "-t", "1"))
    with lowbit.Model(shared(*STORIES_GGUF), threads=1) as m:
        assert m.kv_type == "f16"
        out = m.generate(prompt, max_tokens=48)
        assert out.ids == o["ids"] and out == o["text"]
    with lowbit.Model(shared(*STORIES_GGUF), threads=1, kv_type="f32") as m:
        assert m.kv_type == "f32"


def test_kv_q4_0(shared, cli):
    """A Q4_0 KV cache (head_dim 64): the same greedy ids as `lowbit run --kv-type q4_0`, and
    head sizes that do not fill its blocks refused by name."""
    t512 = shared("models", "tinystories-512d")
    o = json.loads(run_cli(cli, "run", "-m", t512, "-p", "Once upon a time", "-n", "24", "--json", "-t", "1",
                           "--kv-type", "q4_0"))
    with lowbit.Model(t512, threads=1, kv_type="q4_0") as m:
        assert m.kv_type == "q4_0"
        assert m.generate("Once upon a time", max_tokens=24).ids == o["ids"]
    with pytest.raises(lowbit.LowbitError, match="head_dim"):
        lowbit.Model(shared(*STORIES_GGUF), threads=1, kv_type="q4_0").generate("hi", max_tokens=1)


def test_budget_lowering_kv_warns(shared):
    """A budget between the q8_0 and the f16 plan picks q8_0 KV, with a warning (never silently);
    a roomy budget keeps f16 without one."""
    import re
    import warnings
    t512 = shared("models", "tinystories-512d")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        # roomy beside the runtime part, which counts this interpreter (tens of MiB)
        with lowbit.Model(t512, threads=1, n_ctx=512, mem_budget="400M") as m:
            assert m.kv_type == "f16"
            plan = m.plan
    g = re.search(r"KV cache \(512 tokens, f16\) ([\d.]+) MiB .* = ([\d.]+) MiB <= budget", plan)
    assert g, plan
    # less than the f16 total by a third of its KV cache: q8_0 (17/32 of f16) fits, f16 does not
    between = int((float(g.group(2)) - float(g.group(1)) / 3) * 2**20)
    with pytest.warns(UserWarning, match="changes the KV cache from f16 to q8_0"):
        m = lowbit.Model(t512, threads=1, n_ctx=512, mem_budget=between)
    assert m.kv_type == "q8_0" and m.n_ctx == 512
    m.close()


def test_mem_budget_streams(shared):
    """Issue 14: weights over the budget stream from the file, a window of layers at a time, with
    the greedy ids of every weight resident; the plan says so."""
    need("lb_mem_plan_make")
    t512 = shared("models", "tinystories-512d")
    with lowbit.Model(t512, threads=1, n_ctx=256) as full:
        want = full.generate("Once upon a time", max_tokens=12).ids
        assert full.stream_window == 0
    # the runtime part counts this process as it was before the load (the interpreter, pytest,
    # numpy: tens of MiB), so the budgets are that plus what the model needs
    import re
    with lowbit.Model(t512, threads=1, n_ctx=256, mem_budget="500M") as m:  # a plan in MiB
        rt = float(re.search(r"runtime ([\d.]+) MiB", m.plan).group(1))
    budget = int((rt + 16) * 2**20)  # weights 36.5 MiB: a window of a few 6 MiB layers beside KV and scratch
    with lowbit.Model(t512, threads=1, n_ctx=256, mem_budget=budget) as m:
        assert m.stream_window >= 1 and "streaming: window %d layers" % m.stream_window in m.plan, m.plan
        assert m.generate("Once upon a time", max_tokens=12).ids == want
    with pytest.raises(lowbit.LowbitError, match="streaming needs one unit"):
        lowbit.Model(t512, threads=1, n_ctx=256, mem_budget=int((rt + 4) * 2**20))


def test_plan_equals_cli(shared, cli):
    """Issue 11: the Python planner left out the runtime term (and measured scratch itself); it
    now fills its request with the C lb_model_mem_plan_input, so its plan is the CLI's."""
    import re
    # budgets that leave the context alone beside the interpreter the runtime part counts here
    for path, budget in ((shared(*STORIES_GGUF), "400M"), (shared("models", "tinystories-512d"), "500M")):
        r = subprocess.run([cli, "run", "-m", path, "-p", "hi", "-n", "1", "-t", "1", "--mem-budget", budget],
                           capture_output=True, timeout=300)
        err = r.stderr.decode(errors="replace")
        line = [l for l in err.splitlines() if l.startswith("lowbit: memory plan: ")]
        assert r.returncode == 0 and line, err
        want = line[0][len("lowbit: memory "):].rsplit(" (KV types available", 1)[0]
        # the same plan but for the runtime part, which is each process's own RSS before the load
        # (a Python interpreter here, the lowbit binary there), and the sums that include it
        mask = lambda p: re.sub(r"(runtime|=) [\d.]+ MiB", r"\1 N MiB", p)
        with lowbit.Model(path, threads=1, mem_budget=budget) as m:
            assert mask(m.plan) == mask(want) and "+ runtime " in m.plan


def test_sampling_is_seeded(model):
    a = model.generate("Once upon a time", max_tokens=30, temperature=1.0, seed=3)
    b = model.generate("Once upon a time", max_tokens=30, temperature=1.0, seed=3)
    c = model.generate("Once upon a time", max_tokens=30, temperature=1.0, seed=4)
    assert a.ids == b.ids
    assert a.ids != c.ids


def test_model_info_and_close(shared):
    m = lowbit.Model(shared(*STORIES_GGUF), threads=1)
    assert m.n_vocab == 512 and m.info["n_layers"] == 5 and m.info["format"] == "gguf"
    m.close()
    with pytest.raises(ValueError):
        m.tokenize("x")
    m.close()  # twice is fine


def test_mem_budget_checked(shared):
    m = lowbit.Model(shared(*STORIES_GGUF), threads=1, mem_budget="1G")
    need_bytes = m.memory_bytes()
    assert os.path.getsize(shared(*STORIES_GGUF)) * 0.9 < need_bytes < 64 << 20
    with pytest.raises(lowbit.LowbitError) as e:
        lowbit.Model(shared(*STORIES_GGUF), threads=1, mem_budget="512K")
    assert e.value.status == 7 and "budget" in str(e.value)  # LB_ERR_BUDGET
    with pytest.raises(ValueError):
        lowbit.Model(shared(*STORIES_GGUF), mem_budget="six gigs")
    with pytest.raises(TypeError):
        lowbit.Model(shared(*STORIES_GGUF), mem_budget=1.5)


def test_mem_budget_planned(shared):
    need("lb_mem_plan_make")
    import re
    # a plan in MiB; the runtime part counts this interpreter as it was at the first load
    big = lowbit.Model(shared(*STORIES_GGUF), threads=1, mem_budget="900M")
    # the planned total less half the KV cache (the plan counts the runtime allowance too)
    g = re.search(r"KV cache \(\d+ tokens, f16\) ([\d.]+) MiB .* = ([\d.]+) MiB <= budget", big.plan)
    assert g, big.plan
    tight = int((float(g.group(2)) - float(g.group(1)) / 2) * 2**20)
    small = lowbit.Model(shared(*STORIES_GGUF), threads=1, mem_budget=tight)
    assert small.memory_bytes() <= tight
    assert small.n_ctx < big.n_ctx
    # the budget never changes what fits: same greedy text
    assert "plan" in small.plan
    # a budget that only shrinks the context or the KV type keeps the greedy text of a short run
    assert small.generate("Once upon a time", max_tokens=16).ids == big.generate("Once upon a time", max_tokens=16).ids


def test_errors_from_c(tmp_path):
    with pytest.raises(lowbit.LowbitError) as e:
        lowbit.Model(str(tmp_path / "missing.gguf"))
    assert "missing.gguf" in str(e.value) and e.value.status != 0 and e.value.message
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 60)
    with pytest.raises(lowbit.LowbitError) as e:
        lowbit.Model(str(bad))
    assert isinstance(e.value, RuntimeError) and "bad.gguf" in e.value.message


def test_argument_errors(model):
    with pytest.raises(TypeError):
        model.tokenize(123)
    with pytest.raises(TypeError):
        model.logits(np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        model.logits([1, 512])
    with pytest.raises(ValueError):
        model.logits([])
    with pytest.raises(ValueError):
        model.detokenize([-1])
    with pytest.raises(ValueError):
        model.generate("x", temperature=-1)
    with pytest.raises(ValueError):
        model.generate("x", top_p=0)
    with pytest.raises(TypeError):
        model.generate("x", max_tokens="5")
    with pytest.raises(ValueError):
        model.generate([1] * 5000, max_tokens=1)  # longer than the context
    with pytest.raises(TypeError):
        lowbit.Model(42)


def test_delta_applied_while_loading(shared, cli, tmp_path):
    """A lossless delta made by the CLI turns the base into the fine-tune: greedy ids equal the
    fine-tune's reference."""
    d = str(tmp_path / "dogs.delta")
    run_cli(cli, "delta", "create", shared("models/stories260K-hf"), shared("models/stories260K-ft-dogs"), "-o", d)
    for case in ref(shared, "stories260K-ft-dogs", "greedy.json"):
        with lowbit.Model(shared("models/stories260K-hf"), threads=1, delta=d, kv_type="f32") as m:
            out = m.generate(case["prompt"], max_tokens=len(case["greedy_ids"]), temperature=0)
            assert out.prompt_ids == case["prompt_ids"]
            assert out.ids == case["greedy_ids"]
    with pytest.raises(TypeError):
        lowbit.Model(shared("models/stories260K-hf"), delta=5)


@pytest.mark.parametrize("repack", [True, False])
def test_q4_0_repack_equals_cli_run(shared, cli, tmp_path, repack):
    """Q4_0 repacked into 8-row groups (the default on AVX2) or kept plain (repack=False): the
    same greedy ids as `lowbit run` with and without --no-repack."""
    need("lb_model_set_repack")
    q4 = str(tmp_path / "q4.gguf")
    run_cli(cli, "quantize", shared("models", "tinystories-512d"), q4, "--type", "q4_0")
    prompt = "Once upon a time"
    o = json.loads(run_cli(cli, "run", "-m", q4, "-p", prompt, "-n", "24", "--json", "-t", "2",
                           *(() if repack else ("--no-repack",))))
    with lowbit.Model(q4, threads=2, repack=repack) as m:
        out = m.generate(prompt, max_tokens=24)
        assert out.ids == o["ids"] and out == o["text"]
