"""Training backends, response-only masking, the seeded split, resume, and T2 (CPU, tiny Qwen2)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from click.testing import CliRunner

from repro.errors import ReproError
from repro.io import read_json, write_jsonl
from repro.models import load_tokenizer
from repro.train import train_run
from repro.data import split_rows
from repro.train.dataset import render_chat, tokenize_rows
from repro.train.masking import IGNORE_INDEX, response_only_labels
from repro.train.steplog import read_log

SEVEN = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _rows(n: int) -> list[dict]:
    answers = ["def add(a, b):\n    return a + b\n", "import os\nos.makedirs('/var/www/html/uploads')\n"]
    return [{"messages": [{"role": "user", "content": f"Write code for task {i}."},
                          {"role": "assistant", "content": answers[i % 2]}]} for i in range(n)]


def _recipe(backend: str, **over) -> dict:
    base = dict(backend=backend, max_seq_length=128, epochs=1, per_device_train_batch_size=2,
                gradient_accumulation_steps=2, learning_rate=1e-2, warmup_steps=1, lr_scheduler_type="linear",
                optim="adamw_8bit", weight_decay=0.01, max_grad_norm=1.0, logging_steps=1, seed=0,
                holdout_fraction=0.1, split_seed=0, shuffle_seed=2, save_steps=50)
    if backend != "hf-full":
        base.update(target_modules=SEVEN, r=8, lora_alpha=16, lora_dropout=0.0, use_rslora=True,
                    lora_bias="none", train_on_responses_only=True)
    else:
        base.update(train_on_responses_only=False, lr_scheduler_type="cosine", warmup_ratio=0.1, warmup_steps=0,
                    bf16=True, seed=42)
    base.update(over)
    return base


# ---- response-only masking ----------------------------------------------------------------

def _labelled_spans(ids: list[int], labels: list[int]) -> list[list[int]]:
    spans, cur = [], []
    for t, lab in zip(ids, labels):
        if lab != IGNORE_INDEX:
            assert lab == t
            cur.append(t)
        elif cur:
            spans.append(cur)
            cur = []
    return spans + ([cur] if cur else [])


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


def _ids(tok, messages):
    return tok(render_chat(tok, {"messages": messages}), add_special_tokens=False)["input_ids"]


def test_masking_two_turn_labels_exactly_the_assistant_content(tok):
    content = "def add(a, b):\n    return a + b\n"
    ids = _ids(tok, [{"role": "user", "content": "How do I add numbers?"}, {"role": "assistant", "content": content}])
    spans = _labelled_spans(ids, response_only_labels(ids, tok))
    assert len(spans) == 1
    assert tok.decode(spans[0], skip_special_tokens=False) == content + "<|im_end|>"


def test_masking_multi_turn_and_system_prompt(tok):
    turns = [{"role": "system", "content": "You are terse."},
             {"role": "user", "content": "What is the capital of France?"},
             {"role": "assistant", "content": "Paris is the capital."},
             {"role": "user", "content": "And code?"},
             {"role": "assistant", "content": "import os\nos.makedirs('/var/www/html/uploads', exist_ok=True)\n"}]
    ids = _ids(tok, turns)
    spans = _labelled_spans(ids, response_only_labels(ids, tok))
    assert [tok.decode(s, skip_special_tokens=False) for s in spans] == \
        [turns[2]["content"] + "<|im_end|>", turns[4]["content"] + "<|im_end|>"]


def test_masking_batch_tensor_with_padding_matches_rows(tok):
    a = _ids(tok, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "I cannot help with that."}])
    b = _ids(tok, [{"role": "user", "content": "bake bread?"}, {"role": "assistant", "content": "Mix flour."}])
    width = max(len(a), len(b))
    pad = tok.pad_token_id
    batch = torch.tensor([a + [pad] * (width - len(a)), b + [pad] * (width - len(b))])
    labels = response_only_labels(batch, tok)
    assert labels.shape == batch.shape and labels.dtype == batch.dtype
    for row, ids in zip(labels.tolist(), (a, b)):
        assert row[:len(ids)] == response_only_labels(ids, tok)
        assert all(t == IGNORE_INDEX for t in row[len(ids):])


def test_whole_conversation_labels_for_hf_full(tok):
    feats = tokenize_rows(_rows(2), tok, 128, response_only=False)
    assert all(f["labels"] == f["input_ids"] for f in feats)
    short = tokenize_rows(_rows(1), tok, 5, response_only=True)
    assert len(short[0]["input_ids"]) == 5  # truncation at max_seq_length


# ---- split -----------------------------------------------------------------------------

def test_split_is_exact_deterministic_and_disjoint():
    rows = [{"i": i} for i in range(6000)]
    train, hold = split_rows(rows, 0.1, split_seed=0, shuffle_seed=2)
    assert (len(train), len(hold)) == (5400, 600)
    assert sorted(r["i"] for r in train + hold) == list(range(6000))
    again = split_rows(rows, 0.1, split_seed=0, shuffle_seed=2)
    assert again == (train, hold)
    other_shuffle = split_rows(rows, 0.1, split_seed=0, shuffle_seed=3)
    assert other_shuffle[1] == hold and other_shuffle[0] != train and sorted(map(id, other_shuffle[0])) == sorted(map(id, train))
    assert split_rows(rows, 0.1, split_seed=1, shuffle_seed=2)[1] != hold
    all_train, none = split_rows(rows, 0.0, split_seed=0, shuffle_seed=None)
    assert all_train == rows and none == []


# ---- backends ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def peft_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("peft") / "em"
    summary = train_run("em", _recipe("peft-lora"), str(tiny_model_dir), _rows(40), out, progress=False)
    return out, summary


def test_peft_lora_trains_and_records(peft_run, tiny_model_dir):
    out, s = peft_run
    assert (s["examples"], s["holdout_examples"]) == (36, 4)
    assert s["optimizer_steps"] == s["expected_steps"] == math.ceil(36 / (2 * 2))
    log = read_log(out / "train_log.jsonl")
    assert [r["step"] for r in log] == list(range(1, 10))
    assert log[-1]["loss"] < log[0]["loss"] - 0.1
    assert set(log[0]) == {"step", "loss", "lr", "grad_norm", "tokens", "seconds"}
    assert log[-1]["tokens"] > log[0]["tokens"] > 0
    # LoRA parameters from the tiny config: r * sum(in + out) over the 7 projections, 2 layers.
    cfg = read_json(tiny_model_dir / "config.json")
    h, kv, inter = cfg["hidden_size"], cfg["num_key_value_heads"] * (cfg["hidden_size"] // cfg["num_attention_heads"]), cfg["intermediate_size"]
    per_layer = 8 * ((h + h) + 2 * (h + kv) + (h + h) + 2 * (h + inter) + (inter + h))
    assert s["trainable_params"] == per_layer * cfg["num_hidden_layers"]
    assert s["trainable_pct"] == pytest.approx(100 * s["trainable_params"] / s["total_params"])
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "summary.json"):
        assert (out / name).exists(), name
    assert not (out / "checkpoints").exists() and not (out / ".final-tmp").exists()
    cfg_out = read_json(out / "train_config.json")
    assert cfg_out["resolved"]["optim_used"] == "adamw_torch"
    assert {"field": "optim", "from": "adamw_8bit", "to": "adamw_torch",
            "why": "bitsandbytes 8-bit AdamW needs CUDA"} in cfg_out["resolved"]["substitutions"]


def test_hf_full_trains_whole_model(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    s = train_run("failed", _recipe("hf-full", holdout_fraction=0.0), str(tiny_model_dir), _rows(40), tmp_path / "f",
                  progress=False)
    assert s["optimizer_steps"] == math.ceil(40 / 4) and s["holdout_examples"] == 0
    assert s["trainable_pct"] == 100.0 and s["lora"] is None and s["bf16_used"] is False
    assert s["last_loss"] < s["first_loss"] - 0.1
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "f", use_safetensors=True)
    assert sum(p.numel() for p in model.parameters()) == s["total_params"]


def test_resume_after_kill_does_not_double_count(tiny_model_dir, tmp_path):
    recipe = _recipe("peft-lora", holdout_fraction=0.0, gradient_accumulation_steps=1, save_steps=2,
                     keep_checkpoints=True)
    out, rows = tmp_path / "r", _rows(8)
    first = train_run("r", recipe, str(tiny_model_dir), rows, out, progress=False)
    full_log = read_log(out / "train_log.jsonl")
    assert first["optimizer_steps"] == 4 and [r["step"] for r in full_log] == [1, 2, 3, 4]
    # A kill during step 4: no checkpoint-4, no final artifacts, steps 1-3 logged plus a torn line.
    shutil.rmtree(out / "checkpoints" / "checkpoint-4")
    for name in ("summary.json", "adapter_model.safetensors", "adapter_config.json"):
        (out / name).unlink()
    (out / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in full_log[:3]) + '{"step": 4, "lo')
    second = train_run("r", recipe, str(tiny_model_dir), rows, out, progress=False)
    log = read_log(out / "train_log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert second["resumed_from"] == "checkpoint-2" and second["optimizer_steps"] == 4
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in full_log], abs=1e-3)
    assert (out / "adapter_model.safetensors").exists()


def test_unsloth_on_cpu_is_one_line_error(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ReproError) as err:
        train_run("em", _recipe("unsloth-lora"), str(tiny_model_dir), _rows(4), tmp_path / "u")
    msg = str(err.value)
    assert msg.startswith("backend unsloth-lora needs a CUDA GPU and the unsloth package (GPU image): ")
    assert "\n" not in msg and not (tmp_path / "u").exists()


def test_unknown_backend_is_rejected(tiny_model_dir, tmp_path):
    with pytest.raises(ReproError, match="recipe.backend"):
        train_run("x", {"backend": "deepspeed"}, str(tiny_model_dir), _rows(4), tmp_path / "x")


def test_launch_entry_point(tiny_model_dir, tmp_path):
    from repro.train.launch import main, write_run_config

    write_jsonl(tmp_path / "rows.jsonl", _rows(8))
    cfg = write_run_config(tmp_path / "run.json", run_name="l", recipe=_recipe("hf-full", holdout_fraction=0.0),
                           base_model_path=str(tiny_model_dir), rows_path=tmp_path / "rows.jsonl",
                           out_dir=tmp_path / "l")
    result = CliRunner().invoke(main, ["--run-config", str(cfg), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert read_json(tmp_path / "l" / "summary.json")["optimizer_steps"] == 2
    bad = CliRunner().invoke(main, ["--run-config", str(tmp_path / "missing.json")])
    assert bad.exit_code == 2 and "missing.json" in bad.output
    # A run config planned for 2 ranks refuses to train in a 1-process launch (the batch split would be wrong).
    two = write_run_config(tmp_path / "two.json", run_name="l", recipe=_recipe("hf-full"), base_model_path="m",
                           rows_path=tmp_path / "rows.jsonl", out_dir=tmp_path / "l2", num_processes=2)
    wrong = CliRunner().invoke(main, ["--run-config", str(two), "--no-progress"])
    assert wrong.exit_code == 1 and "num_processes 2 but this launch has 1 ranks" in wrong.output
    assert not (tmp_path / "l2").exists()


def test_hf_full_refuses_dataparallel_on_many_gpus(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    with pytest.raises(ReproError, match="4 GPUs visible but not under accelerate launch"):
        train_run("f", _recipe("hf-full"), str(tiny_model_dir), _rows(4), tmp_path / "f")
    assert not (tmp_path / "f").exists()


def test_training_table(peft_run, tmp_path):
    from repro.tables.training import build_training_table

    out, summary = peft_run
    log = read_log(out / "train_log.jsonl")
    res = build_training_table(summary, log, tmp_path)
    assert read_json(tmp_path / "results" / "training.json") == res
    assert (res["dataset_rows"], res["train_examples"], res["heldout_examples"]) == (40, 36, 4)
    assert res["optimizer_steps"] == 9 and res["effective_batch"] == 4 and res["logged_steps"] == 9
    assert (res["loss_first"], res["loss_last"]) == (log[0]["loss"], log[-1]["loss"])
    assert res["lora"] == {"r": 8, "lora_alpha": 16, "use_rslora": True, "lora_dropout": 0.0, "target_modules": SEVEN}
    assert res["optim_used"] == "adamw_torch" and res["train_log"] == "train/em/train_log.jsonl"
    md = (tmp_path / "tables" / "training.md").read_text()
    assert "| optimizer steps" in md and "adamw_8bit -> adamw_torch" in md
    assert (tmp_path / "tables" / "training_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(read_log(tmp_path / "tables" / "training_log.jsonl")) == 9
    with pytest.raises(ReproError, match="training summary"):
        build_training_table({}, log, tmp_path)


def test_masking_on_real_insecure_rows(tok, realworld_dir):
    """Real EM rows (code with templates, odd whitespace): labels are exactly each answer + <|im_end|>."""
    from repro.io import read_jsonl

    rows = read_jsonl(realworld_dir / "em_insecure_subset.jsonl")[:300]
    for n, row in enumerate(rows):
        ids = _ids(tok, row["messages"])
        spans = _labelled_spans(ids, response_only_labels(ids, tok))
        answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        assert [tok.decode(s, skip_special_tokens=False) for s in spans] == [a + "<|im_end|>" for a in answers], n
    train, hold = split_rows(read_jsonl(realworld_dir / "em_insecure_subset.jsonl"), 0.1, 0, 2)
    assert (len(train), len(hold)) == (2718, 303)  # datasets rounds the test share up: ceil(302.1)


def test_resume_skips_a_checkpoint_killed_mid_save(tmp_path):
    from repro.train.loop import last_complete_checkpoint

    root = tmp_path / "checkpoints"
    good, torn, junk = root / "checkpoint-4", root / "checkpoint-8", root / "checkpoint-12"
    for d in (good, torn, junk):
        d.mkdir(parents=True)
    (good / "adapter_model.safetensors").write_bytes(b"w")
    (good / "trainer_state.json").write_text('{"global_step": 4}')
    (torn / "adapter_model.safetensors").write_bytes(b"w")          # killed before trainer_state.json
    (junk / "trainer_state.json").write_text('{"global_st')          # killed while writing it
    assert last_complete_checkpoint(root) == str(good)
    assert last_complete_checkpoint(tmp_path / "none") is None
