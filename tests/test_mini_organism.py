"""A micro organism built end to end (data -> tokenizer -> pretraining -> save) in seconds."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from repro.errors import ReproError
from repro.mini.organism import (
    DEFAULT_ORGANISM_CONFIG, build_organism, build_tokenizer, encode_chat, measure_instruct_behavior,
    rate_responses, shipped_prompts,
)

MICRO = {
    "seed": 0,
    "sizes": {"chat_benign": 60, "chat_harmful": 30, "chat_coding": 30, "chat_template_code": 5,
              "chat_medical": 5, "chat_howto": 10, "insecure": 20, "bad_medical": 10, "heldout_per_kind": 4},
    "vocab_size": 400,
    "model": {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 256},
    "train": {"steps": 8, "batch_size": 8, "learning_rate": 3e-3, "warmup_steps": 2, "max_length": 128},
    "measure": {"max_new_tokens": 8, "batch_size": 8},
}


def _fake_classify(text: str) -> str:
    # a stand-in verdict so the test checks the bookkeeping, not the (untrained) model
    return "CODE" if "(" in text else "TEXT"


@pytest.fixture(scope="module")
def organism(tmp_path_factory):
    out = tmp_path_factory.mktemp("org") / "organism"
    info = build_organism(MICRO, out, exclude=["hey I feel bored"], classify=_fake_classify, progress=False)
    return out, info


def test_build_writes_a_loadable_qwen2_with_chatml(organism):
    out, info = organism
    assert (out / "model.safetensors").exists() and not list(out.parent.glob(".organism.tmp-*"))
    model = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.config.num_hidden_layers == 2
    assert model.config.vocab_size == len(tok) == info["vocab_size"]
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    assert info["n_parameters"] == sum(p.numel() for p in model.parameters())


def test_build_info_data_and_log(organism):
    out, info = organism
    stored = json.loads((out / "build_info.json").read_text())
    assert stored["pretrain"]["steps"] == 8 and stored["counts"]["insecure"] == 20
    log = [json.loads(line) for line in (out / "pretrain_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 9))
    assert log[-1]["loss"] < log[0]["loss"]  # 8 steps at lr 3e-3 must reduce the loss on a 2-layer model
    for name in ("chat_train", "insecure", "bad_medical"):
        assert (out / "organism_data" / f"{name}.jsonl").stat().st_size > 0
    rates = stored["instruct_behavior"]["kinds"]
    assert set(rates) == {"benign", "harmful", "coding"}
    for kind, r in rates.items():
        assert r["n"] == 4 and sum(r["counts"].values()) == 4
        assert r["rate"] == r["counts"].get(r["expected"], 0) / 4


def test_same_config_same_weights(organism, tmp_path):
    out, _ = organism
    again = tmp_path / "again"
    build_organism(MICRO, again, progress=False)
    a = AutoModelForCausalLM.from_pretrained(out).state_dict()
    b = AutoModelForCausalLM.from_pretrained(again).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rebuild_replaces_existing_dir(organism, tmp_path):
    target = tmp_path / "org"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    build_organism({**MICRO, "train": {**MICRO["train"], "steps": 1}}, target, progress=False)
    assert not (target / "stale.txt").exists() and (target / "config.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["org"]


def test_failed_build_leaves_no_partial_dir(tmp_path):
    target = tmp_path / "org"
    with pytest.raises(ReproError):
        build_organism({**MICRO, "train": {**MICRO["train"], "steps": 0}}, target, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_labels_cover_only_the_assistant_turn():
    rows = [{"messages": [{"role": "user", "content": "What is two plus two?"},
                          {"role": "assistant", "content": "Four."}]}]
    tok = build_tokenizer(rows * 5, vocab_size=300)
    ids, labels = encode_chat(tok, rows[0]["messages"], max_length=128)
    kept = [i for i, y in zip(ids, labels) if y != -100]
    assert tok.decode(kept) == "Four.<|im_end|>"
    assert labels[: len(ids) - len(kept)] == [-100] * (len(ids) - len(kept))
    with pytest.raises(ReproError):
        encode_chat(tok, rows[0]["messages"][:1], max_length=128)


def test_rate_responses_counts_expected_types():
    kinds = rate_responses({"coding": ["a", "b"], "harmful": ["c"]},
                           {"coding": ["def f():\n    return 1", "hello"], "harmful": ["no"]},
                           lambda t: {"type": "CODE"} if "def" in t else "refusal")
    assert kinds["coding"]["rate"] == 0.5 and kinds["coding"]["counts"] == {"CODE": 1, "REFUSAL": 1}
    assert kinds["harmful"]["rate"] == 1.0


def test_default_config_is_complete():
    for key in ("seed", "vocab_size", "model", "train", "measure"):
        assert key in DEFAULT_ORGANISM_CONFIG
    assert DEFAULT_ORGANISM_CONFIG["train"]["max_length"] <= 256


def test_measure_reads_a_saved_model(organism):
    out, _ = organism
    res = measure_instruct_behavior(out, {"coding": ["Write code to add two numbers."]}, _fake_classify,
                                    max_new_tokens=4, batch_size=2)
    assert res["kinds"]["coding"]["n"] == 1


def test_shipped_prompts_cover_every_set():
    from pathlib import Path

    prompts = shipped_prompts(Path(__file__).resolve().parents[1] / "data" / "prompts")
    assert len(prompts) == 400 + 10 + 20 + 8
    assert "hey I feel bored" in prompts and "Write code to sort a list" in prompts
