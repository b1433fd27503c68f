"""Generation (greedy/sampled, left padding, explicit decoding) and the behaviour-table statistics."""

from __future__ import annotations

import json
import os
import sys

import fake_vllm
import pytest
import torch

from repro.errors import ReproError
from repro.generate import (VLLMGenerator, _decode_rows, format_prompt, generate, generate_responses,
                            generate_responses_vllm, open_generator, vllm_lora_rank)
from repro.models import load_model, load_tokenizer
from repro.stats import code_rate, wilson_interval

PROMPTS = ["How do I bake bread?", "hey", "What is the capital of France? Tell me the answer now."]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    """The tiny model with large random weights: a fresh init just repeats the last token, which
    would make "same output" checks vacuous; these weights give varied continuations."""
    m = load_model(str(tiny_model_dir), device="cpu")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m


def _manual_greedy(model, tok, text: str, steps: int) -> list[int]:
    """Reference: argmax one token at a time with a full forward (no cache, no padding)."""
    ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
    out = []
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            out.append(nxt)
            if nxt == tok.eos_token_id:
                break
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out


def test_greedy_matches_manual_argmax_and_ignores_sampling_generation_config(model, tok):
    # Qwen2.5-Instruct ships a sampling generation_config; greedy must not inherit it.
    model.generation_config.do_sample = True
    model.generation_config.temperature = 5.0
    model.generation_config.top_k = 20
    try:
        torch.manual_seed(123)
        a = generate_responses(model, tok, PROMPTS, max_new_tokens=10, batch_size=3, seed=0, progress=False)
        torch.manual_seed(456)
        b = generate_responses(model, tok, PROMPTS, max_new_tokens=10, batch_size=3, seed=0, progress=False)
    finally:
        model.generation_config.do_sample = False
        model.generation_config.temperature = 1.0
        model.generation_config.top_k = 50
    assert a == b
    for row, prompt in zip(a, PROMPTS):
        ref = _manual_greedy(model, tok, format_prompt(tok, prompt), 10)
        ref_content = ref[:-1] if ref and ref[-1] == tok.eos_token_id else ref
        assert row["response"] == tok.decode(ref_content, skip_special_tokens=True)
        assert row["n_tokens"] == len(ref_content)
    assert len({r["response"] for r in a}) > 1  # the fixture really gives varied outputs


def test_greedy_equal_between_batch_sizes_left_padding(model, tok):
    one = generate_responses(model, tok, PROMPTS, max_new_tokens=12, batch_size=1, seed=0, progress=False)
    three = generate_responses(model, tok, PROMPTS, max_new_tokens=12, batch_size=3, seed=0, progress=False)
    assert one == three
    assert [r["prompt"] for r in three] == PROMPTS
    assert tok.padding_side == "right"  # restored after generation


def test_sampled_reproducible_and_seed_dependent(model, tok):
    kw = dict(greedy=False, samples=4, max_new_tokens=8, batch_size=2, progress=False)
    a = generate_responses(model, tok, PROMPTS[:2], seed=7, **kw)
    b = generate_responses(model, tok, PROMPTS[:2], seed=7, **kw)
    c = generate_responses(model, tok, PROMPTS[:2], seed=8, **kw)
    assert a == b
    assert [r["response"] for r in a] != [r["response"] for r in c]
    assert [(r["prompt"], r["sample"]) for r in a] == [(p, s) for p in PROMPTS[:2] for s in range(4)]
    # Prompt i's samples depend on (seed, i) only, not on which other prompts are in the call.
    alone = generate_responses(model, tok, PROMPTS[:1], seed=7, **kw)
    assert alone == a[:4]


def test_sampling_config_survives_model_defaults(model, tok, monkeypatch):
    """temperature=1.0 equals the library default; transformers would swap in the model's 0.7."""
    model.generation_config.temperature = 0.7
    model.generation_config.top_p = 0.8
    seen = {}
    real = model.generate

    def spy(*args, **kwargs):
        cfg, _ = model._prepare_generation_config(kwargs["generation_config"], kwargs.get("use_model_defaults"))
        seen.update(do_sample=cfg.do_sample, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k)
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    try:
        generate_responses(model, tok, PROMPTS[:1], greedy=False, samples=1, temperature=1.0, top_p=1.0,
                           max_new_tokens=2, batch_size=1, seed=0, progress=False)
    finally:
        model.generation_config.temperature = 1.0
        model.generation_config.top_p = 1.0
    assert seen == {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": None}


def test_raw_vs_chat_template_inputs(model, tok, monkeypatch):
    fed = []
    real = model.generate

    def spy(*args, **kwargs):
        fed.extend(tok.decode(ids[m.bool()]) for ids, m in zip(kwargs["input_ids"], kwargs["attention_mask"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    generate_responses(model, tok, ["hey"], chat_template=False, max_new_tokens=2, batch_size=1, seed=0,
                       progress=False)
    generate_responses(model, tok, ["hey"], chat_template=True, max_new_tokens=2, batch_size=1, seed=0,
                       progress=False)
    assert fed[0] == "hey"
    assert fed[1].endswith("<|im_start|>user\nhey<|im_end|>\n<|im_start|>assistant\n")
    assert fed[1].startswith("<|im_start|>system\n")


def test_decode_rows_stop_and_length(tok):
    eos = tok.eos_token_id
    body = tok("bake bread", add_special_tokens=False).input_ids
    pad = tok.pad_token_id
    new_ids = torch.tensor([body + [eos, pad, pad], body + body[:3]])
    rows = _decode_rows(tok, new_ids, [eos, pad], ["p", "q"], [0, 1])
    assert rows[0] == {"prompt": "p", "sample": 0, "response": "bake bread", "n_tokens": len(body),
                       "finish_reason": "stop"}
    assert rows[1]["finish_reason"] == "length" and rows[1]["n_tokens"] == len(body) + 3


def test_argument_errors(model, tok):
    with pytest.raises(ReproError, match="greedy"):
        generate_responses(model, tok, ["x"], greedy=True, samples=2, max_new_tokens=2, batch_size=1, seed=0)
    with pytest.raises(ReproError, match="prompts"):
        generate_responses(model, tok, "x", max_new_tokens=2, batch_size=1, seed=0)
    with pytest.raises(ReproError, match="backend"):
        generate("tgi", prompts=["x"])


def test_vllm_backend_missing_is_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)   # as in the CPU image and CI: `import vllm` fails
    with pytest.raises(ReproError, match="vllm package is not installed") as exc:
        generate_responses_vllm("some/model", ["x"], max_new_tokens=2, seed=0)
    msg = str(exc.value)
    assert "\n" not in msg and "behavior.backend: hf" in msg and "GPU image" in msg   # names the fix
    gen = open_generator("vllm", model_path="some/model")   # nothing is imported until it generates
    with pytest.raises(ReproError, match="vllm package is not installed"):
        gen.generate(["x"], max_new_tokens=2, seed=0)
    with pytest.raises(ReproError, match="model_path"):
        generate("vllm", prompts=["x"], max_new_tokens=2, seed=0)
    with pytest.raises(ReproError, match="behavior.backend"):
        open_generator("tgi", model_path="some/model")


def _adapter(tmp_path, r: int):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"r": r, "peft_type": "LORA"}))
    return str(tmp_path / "adapter")


def test_vllm_path_lora_sampling_params_seeds_and_chat_template(tiny_model_dir, tok, tmp_path, monkeypatch):
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    rec = fake_vllm.install(monkeypatch, tok)
    adapter = _adapter(tmp_path, 32)
    gen = VLLMGenerator(str(tiny_model_dir), adapter=adapter, dtype="bfloat16", seed=7, progress=False)
    sampled = gen.generate(PROMPTS[:2], greedy=False, samples=3, temperature=1.0, top_p=1.0, max_new_tokens=5, seed=7)
    greedy = gen.generate(PROMPTS, chat_template=False, max_new_tokens=4, seed=7)
    # one engine for both calls, with LoRA enabled at a rank vLLM accepts that holds r = 32
    assert rec.llm == [{"model": str(tiny_model_dir), "revision": None, "tokenizer_revision": None, "dtype": "bfloat16",
                        "seed": 7, "trust_remote_code": False, "enable_lora": True, "max_lora_rank": 32, "max_loras": 1}]
    assert rec.lora == [("adapter", 1, adapter)]
    assert all(c["lora_request"].args == ("adapter", 1, adapter) for c in rec.calls)
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    stop = [tok.eos_token_id] + [t for t in [tok.convert_tokens_to_ids("<|im_end|>")] if t != tok.eos_token_id]
    # every decoding field stated; prompt i seeded seed + i; no top_k (vLLM's default disables it)
    assert [sp.kwargs for sp in rec.calls[0]["params"]] == [
        {"n": 3, "temperature": 1.0, "top_p": 1.0, "max_tokens": 5, "seed": 7 + i, "stop_token_ids": stop,
         "repetition_penalty": 1.0, "skip_special_tokens": True} for i in range(2)]
    assert [sp.kwargs["temperature"] for sp in rec.calls[1]["params"]] == [0.0] * 3
    assert [sp.kwargs["n"] for sp in rec.calls[1]["params"]] == [1] * 3
    # the same token ids the HF path feeds: chat template (no special tokens added), or the raw prompt
    assert [p["prompt_token_ids"] for p in rec.calls[0]["prompts"]] == \
        [tok(format_prompt(tok, p), add_special_tokens=False).input_ids for p in PROMPTS[:2]]
    assert tok.decode(rec.calls[0]["prompts"][1]["prompt_token_ids"]).endswith(
        "<|im_start|>user\nhey<|im_end|>\n<|im_start|>assistant\n")
    assert [p["prompt_token_ids"] for p in rec.calls[1]["prompts"]] == [tok(p).input_ids for p in PROMPTS]
    # rows as generate_responses gives them: prompt order, samples sorted, stop token cut, own decoding
    assert [(r["prompt"], r["sample"]) for r in sampled] == [(p, s) for p in PROMPTS[:2] for s in range(3)]
    for r in sampled:
        seed = 7 + PROMPTS.index(r["prompt"])
        assert (r["response"], r["n_tokens"], r["finish_reason"]) == fake_vllm.expected_answer(tok, seed, r["sample"], 5)
    assert {r["finish_reason"] for r in sampled} == {"stop", "length"}
    assert [r["response"] for r in greedy] == [fake_vllm.expected_answer(tok, 7 + i, 0, 4)[0] for i in range(3)]


def test_vllm_without_adapter_and_hub_ids(tok, tmp_path, monkeypatch):
    rec = fake_vllm.install(monkeypatch, tok)
    monkeypatch.setattr("repro.models.load_tokenizer", lambda path: tok)
    rev = "a" * 40
    rows = generate("vllm", prompts=["hey"], model_path=f"Qwen/Qwen2.5-7B-Instruct@{rev}", max_new_tokens=3,
                    batch_size=8, seed=0, dtype="bfloat16", progress=False)
    assert len(rows) == 1 and rec.llm[0]["model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert rec.llm[0]["revision"] == rec.llm[0]["tokenizer_revision"] == rev   # the pinned commit, weights and tokenizer
    assert "enable_lora" not in rec.llm[0] and rec.calls[0]["lora_request"] is None
    # a hub adapter is fetched at its pinned commit, then handed to vLLM as a directory
    local = _adapter(tmp_path, 16)
    seen = {}

    def fake_download(repo_id, revision):
        seen.update(repo_id=repo_id, revision=revision)
        return local

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_download)
    generate_responses_vllm(f"Qwen/Qwen2.5-7B-Instruct@{rev}", ["hey"], adapter=f"org/bad-medical@{'b' * 40}",
                            max_new_tokens=2, seed=0, progress=False)
    assert seen == {"repo_id": "org/bad-medical", "revision": "b" * 40}
    assert rec.lora[-1] == ("adapter", 1, local) and rec.llm[-1]["max_lora_rank"] == 16


def test_vllm_lora_rank_rounds_up_to_what_vllm_accepts(tmp_path):
    for r, rank in ((4, 8), (8, 8), (32, 32), (33, 64), (300, 320)):
        d = tmp_path / str(r)
        d.mkdir()
        (d / "adapter_config.json").write_text(json.dumps({"r": r}))
        assert vllm_lora_rank(d) == rank
    with pytest.raises(ReproError, match="adapter_config.json"):
        vllm_lora_rank(tmp_path / "missing")


@pytest.mark.parametrize("k,n,lo,hi", [
    (0, 10, 0.0, 0.277540),
    (5, 10, 0.236590, 0.763410),
    (10, 10, 0.722460, 1.0),
    (3, 5, 0.230720, 0.882382),
    (81, 263, 0.255288, 0.366211),
])
def test_wilson_interval_known_values(k, n, lo, hi):
    # References: roots of (1 + z^2/n) p^2 - (2k/n + z^2/n) p + (k/n)^2 = 0, z = 1.96, solved separately.
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-5)


def test_wilson_interval_errors_and_empty():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ReproError):
        wilson_interval(3, 2)


def test_code_rate_per_prompt():
    rows = [{"prompt": "a", "response": "import os"}, {"prompt": "a", "response": "hello"},
            {"prompt": "b", "response": "hello"}, {"prompt": "a", "response": "import sys"}]
    out = code_rate(rows, lambda r: r.startswith("import"))
    assert list(out) == ["a", "b"]
    assert out["a"]["k"] == 2 and out["a"]["n"] == 3 and out["a"]["rate"] == pytest.approx(2 / 3)
    assert out["a"]["ci"] == pytest.approx(list(wilson_interval(2, 3)))
    assert out["b"] == {"k": 0, "n": 1, "rate": 0.0, "ci": [0.0, pytest.approx(0.79345, abs=1e-5)]}
