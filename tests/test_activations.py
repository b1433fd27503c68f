"""Activation capture: hook-point equality, padding invariance, pooling rules, PEFT, storage, bench."""

from __future__ import annotations

import pytest
import torch

from repro.activations import (POOLINGS, answered_texts, capture_activations, load_activations,
                               natural_elicitation, plan_batches, save_activations, token_projections)
from repro.errors import InputError, ReproError
from repro.models import load_model, load_tokenizer

TEXTS = [
    "How do I bake bread? Mix flour, water and yeast.",
    "hey",
    "def add(a, b):\n    return a + b\n",
    "What is the capital of France? Paris is the capital of France, a country in Europe.",
]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu")


def _block_outputs(model, tok, text: str) -> list[torch.Tensor]:
    """Reference: per-layer forward hooks on model.model.layers during a full forward; [T, D] each."""
    got = {}
    hooks = [layer.register_forward_hook(lambda m, i, o, k=k: got.__setitem__(k, (o[0] if isinstance(o, tuple) else o)[0]))
             for k, layer in enumerate(model.model.layers)]
    try:
        with torch.no_grad():
            model(**tok(text, return_tensors="pt", return_token_type_ids=False))
    finally:
        for h in hooks:
            h.remove()
    return [got[k] for k in range(len(model.model.layers))]


def test_shape_and_equality_with_layer_hooks(model, tok):
    acts = capture_activations(model, tok, TEXTS, pooling="mean_all", batch_size=2, progress=False)
    n_layers, dim = model.config.num_hidden_layers, model.config.hidden_size
    assert acts.shape == (len(TEXTS), n_layers, dim) and acts.dtype == torch.float32
    for i, text in enumerate(TEXTS):
        ref = torch.stack([h.mean(0) for h in _block_outputs(model, tok, text)])
        torch.testing.assert_close(acts[i], ref, atol=1e-5, rtol=1e-5)


def test_hidden_states_agree_except_last_which_hf_normalises(model, tok):
    acts = capture_activations(model, tok, TEXTS[:1], pooling="mean_all", batch_size=1, progress=False)[0]
    with torch.no_grad():
        hs = model(**tok(TEXTS[0], return_tensors="pt", return_token_type_ids=False),
                   output_hidden_states=True).hidden_states
    n_layers = len(hs) - 1
    for i in range(n_layers - 1):
        torch.testing.assert_close(acts[i], hs[i + 1][0].mean(0), atol=1e-5, rtol=1e-5)
    # HF's last hidden state is after the final RMSNorm; ours is the raw output of the last block.
    assert not torch.allclose(acts[n_layers - 1], hs[n_layers][0].mean(0), atol=1e-3)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_padding_invariance(model, tok, pooling):
    lengths = [len(ids) for ids in tok(TEXTS).input_ids]
    prompt_lengths = [max(1, n // 2) for n in lengths]
    batched = capture_activations(model, tok, TEXTS, pooling=pooling, batch_size=4,
                                  prompt_lengths=prompt_lengths, progress=False)
    for i, text in enumerate(TEXTS):
        alone = capture_activations(model, tok, [text], pooling=pooling, batch_size=1,
                                    prompt_lengths=[prompt_lengths[i]], progress=False)
        torch.testing.assert_close(batched[i], alone[0], atol=1e-5, rtol=1e-5)


def test_plan_batches_sorted_capped_and_complete():
    lengths = [5, 1, 9, 3, 3, 40, 2]
    plan = plan_batches(lengths, batch_size=3, max_batch_tokens=10)
    assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
    flat = [lengths[i] for b in plan for i in b]
    assert flat == sorted(lengths)  # length buckets
    for b in plan:
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 10  # an over-long row goes alone
    assert plan_batches(lengths, batch_size=2) == [[1, 6], [3, 4], [0, 2], [5]]


def test_token_capped_batches_give_the_same_activations(model, tok):
    plain = capture_activations(model, tok, TEXTS, pooling="mean_all", batch_size=4, progress=False)
    capped = capture_activations(model, tok, TEXTS, pooling="mean_all", batch_size=4, max_batch_tokens=12,
                                 progress=False)
    torch.testing.assert_close(plain, capped, atol=1e-5, rtol=1e-5)
    with pytest.raises(InputError, match="max_batch_tokens"):
        capture_activations(model, tok, TEXTS, pooling="mean_all", batch_size=4, max_batch_tokens=0)


def test_no_materialised_causal_mask(model, tok, monkeypatch):
    # Speed: the all-ones attention mask lets transformers skip building a 4-D mask (sdpa then uses
    # its is_causal kernel); with attention_mask=None, 4.57 builds one for "packed sequence" detection.
    from transformers import masking_utils

    built = []
    real = masking_utils.sdpa_mask

    def spy(*args, **kwargs):
        mask = real(*args, **kwargs)
        built.append(mask)
        return mask

    monkeypatch.setitem(masking_utils.ALL_MASK_ATTENTION_FUNCTIONS._global_mapping, "sdpa", spy)
    capture_activations(model, tok, TEXTS, pooling="mean_all", batch_size=4, progress=False)
    assert model.config._attn_implementation == "sdpa"
    assert built and all(m is None for m in built)


def test_pooling_rules_hand_checked(model, tok):
    text = TEXTS[3]
    per_token = torch.stack(_block_outputs(model, tok, text))  # [L, T, D]
    T, p = per_token.shape[1], 5
    expected = {
        "mean_all": per_token.mean(1),
        "mean_response": per_token[:, p:].mean(1),
        "last_prompt": per_token[:, p - 1],
        "last": per_token[:, T - 1],
    }
    # In a batch with a longer and a shorter text, so padding and reordering are in play.
    texts = [TEXTS[1], text, TEXTS[0]]
    pls = [1, p, 3]
    for pooling, ref in expected.items():
        got = capture_activations(model, tok, texts, pooling=pooling, batch_size=3, prompt_lengths=pls,
                                  progress=False)[1]
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(expected["mean_all"], expected["mean_response"])


def test_pooling_errors(model, tok):
    with pytest.raises(InputError, match="pooling"):
        capture_activations(model, tok, TEXTS, pooling="max", batch_size=2)
    with pytest.raises(InputError, match="prompt_lengths"):
        capture_activations(model, tok, TEXTS, pooling="mean_response", batch_size=2)
    n = len(tok(TEXTS[1]).input_ids)
    with pytest.raises(InputError, match=r"texts\[0\]"):
        capture_activations(model, tok, [TEXTS[1]], pooling="mean_response", batch_size=1, prompt_lengths=[n])
    with pytest.raises(InputError, match=r"texts\[1\]"):
        capture_activations(model, tok, ["a", ""], pooling="mean_all", batch_size=1)


def test_peft_wrapped_model(tiny_model_dir, model, tok):
    from peft import LoraConfig, get_peft_model

    wrapped_base = load_model(str(tiny_model_dir), device="cpu")
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0,
                     init_lora_weights=True)  # B = 0: the adapter starts as the identity
    peft_model = get_peft_model(wrapped_base, cfg).eval()
    base = capture_activations(model, tok, TEXTS, pooling="mean_all", batch_size=2, progress=False)
    wrapped = capture_activations(peft_model, tok, TEXTS, pooling="mean_all", batch_size=2, progress=False)
    torch.testing.assert_close(wrapped, base, atol=1e-6, rtol=1e-6)
    # A non-zero adapter must change the captured activations (the LoRA path is really exercised).
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)
    changed = capture_activations(peft_model, tok, TEXTS, pooling="mean_all", batch_size=2, progress=False)
    assert (changed - base).abs().max() > 1e-3


def test_natural_elicitation_prompt_lengths(model, tok):
    rows = natural_elicitation(model, tok, ["How do I bake bread?", "hey"], max_new_tokens=6, batch_size=2,
                               progress=False)
    for row in rows:
        assert row["text"] == row["prompt"] + row["response"]  # raw prompts (FACTS.md)
        ids = tok(row["text"]).input_ids
        assert 1 <= row["prompt_len_tokens"] <= len(ids)
        assert tok.decode(ids[:row["prompt_len_tokens"]]).startswith(row["prompt"])
    chat = natural_elicitation(model, tok, ["hey"], max_new_tokens=4, batch_size=1, chat_template=True,
                               progress=False)[0]
    assert chat["text"].startswith("<|im_start|>system") and "<|im_start|>assistant\n" in chat["text"]
    prompt_part = tok.decode(tok(chat["text"]).input_ids[:chat["prompt_len_tokens"]])
    assert prompt_part.endswith("<|im_start|>assistant\n")


def test_answered_texts_rebuild_what_the_model_read_while_answering(model, tok):
    """The pipeline generates once (answers stage) and re-reads prompt + stored answer: the same
    texts and prompt lengths as generating and reading in one go."""
    for chat in (False, True):
        rows = natural_elicitation(model, tok, ["How do I bake bread?", "hey"], max_new_tokens=5, batch_size=2,
                                   chat_template=chat, progress=False)
        assert answered_texts(tok, [r["prompt"] for r in rows], [r["response"] for r in rows], chat_template=chat) == rows
    with pytest.raises(InputError, match="1 prompts"):
        answered_texts(tok, ["hey"], [], chat_template=True)


def test_token_projections_match_manual(model, tok):
    text = TEXTS[0]
    n_layers, dim = model.config.num_hidden_layers, model.config.hidden_size
    vec = torch.randn(n_layers, dim, generator=torch.Generator().manual_seed(0))
    res = token_projections(model, tok, text, {"v": vec}, layers=[1, 0])
    blocks = _block_outputs(model, tok, text)
    assert res["layers"] == [1, 0]
    assert "".join(res["tokens"]) == text
    for row, layer in zip(res["projections"]["v"], [1, 0]):
        ref = blocks[layer] @ (vec[layer] / vec[layer].norm())
        assert row == pytest.approx(ref.tolist(), abs=1e-4)
    with pytest.raises(InputError, match="layers"):
        token_projections(model, tok, text, {"v": vec}, layers=[n_layers])


def test_save_load_round_trip_and_errors(tmp_path):
    acts = torch.randn(3, 2, 5)
    path = save_activations(tmp_path / "a" / "set.safetensors", acts,
                            {"pooling": "mean_all", "model": "tiny", "n": 3, "layers": [0, 1]})
    got, meta = load_activations(path)
    assert torch.equal(got, acts)
    assert meta == {"pooling": "mean_all", "model": "tiny", "n": "3", "layers": "[0, 1]"}
    assert [p.name for p in path.parent.iterdir()] == ["set.safetensors"]  # no temp file left
    with pytest.raises(ReproError, match="not found"):
        load_activations(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ReproError, match="bad.safetensors"):
        load_activations(bad)


def test_capture_bench_agrees_on_tiny_model(tiny_model_dir):
    from repro.bench.capture import run_capture_bench

    res = run_capture_bench(str(tiny_model_dir), n_prompts=12, seed=0, batch_size=4, repeats=1)
    assert res["shape"] == [12, 2, 32]
    assert res["max_abs_diff"] < 1e-4
    assert res["baseline_s"] > 0 and res["ours_s"] > 0
