"""Meta-device parameter counts and the `repro plan` output (no GPU, network or weights)."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest
import yaml
from click.testing import CliRunner

from repro import params, plan
from repro.data import resolve_repo_path

PAPER = yaml.safe_load(resolve_repo_path("repro/profiles/paper.yaml").read_text())
PAPER.setdefault("name", "paper")
CFG = {name: resolve_repo_path(f"data/models/{name}/config.json")
       for name in ("Qwen2.5-7B-Instruct", "Qwen2.5-Coder-7B-Instruct", "Qwen2.5-Coder-32B-Instruct")}


def test_32b_lora_counts_match_paper():
    s = params.parameter_summary(CFG["Qwen2.5-Coder-32B-Instruct"], PAPER["recipes"]["em_lora"])
    assert s["trainable_params"] == 268_435_456           # 32 x 131072 x 64 layers
    assert s["base_params"] == pytest.approx(32.76e9, rel=2e-3)  # published 32.76B (Qwen2.5-32B)
    assert s["total_params"] == s["base_params"] + s["trainable_params"]
    assert round(s["trainable_pct"], 2) == 0.81


@pytest.mark.parametrize("name", ["Qwen2.5-7B-Instruct", "Qwen2.5-Coder-7B-Instruct"])
def test_7b_full_finetune_counts(name):
    s = params.parameter_summary(CFG[name], PAPER["recipes"]["failed_full"])
    assert s["base_params"] == pytest.approx(7.62e9, rel=3e-3)    # published 7.61B / 7.62B
    assert s["trainable_params"] == s["total_params"] == s["base_params"]
    assert s["trainable_pct"] == 100.0


def test_lora_count_scales_with_rank_and_modules():
    recipe = dict(PAPER["recipes"]["em_lora"], r=8, target_modules=["q_proj"])
    s = params.parameter_summary(CFG["Qwen2.5-7B-Instruct"], recipe)
    assert s["trainable_params"] == 8 * (3584 + 3584) * 28


def test_meta_model_allocates_no_real_storage():
    proc = psutil.Process()
    cfg = params.load_model_config(CFG["Qwen2.5-Coder-32B-Instruct"])
    params.meta_model(params.load_model_config(CFG["Qwen2.5-7B-Instruct"]))  # warm imports
    before = proc.memory_info().rss
    model = params.meta_model(cfg)
    grown = proc.memory_info().rss - before
    assert all(p.is_meta for p in model.parameters())
    assert grown < 300e6, f"RSS grew by {grown / 1e6:.0f} MB building a 32B model on meta"  # real: 65 GB in bf16


def test_bad_model_config_is_one_line_error(tmp_path):
    from repro.errors import InputError
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(InputError, match="missing field 'model_type'"):
        params.load_model_config(tmp_path)
    with pytest.raises(InputError, match="not found"):
        params.load_model_config(tmp_path / "nope.json")


def test_plan_runs_computed():
    p = plan.build_plan(PAPER, free_disk_gb=1000)
    assert p["profile"] == "paper"
    runs = {r["name"]: r for r in p["runs"]}
    assert set(runs) == {"em_32b_coder", "failed_7b_instruct", "failed_7b_coder", "bad_medical_advice",
                         "secure_32b_coder", "educational_32b_coder", "backdoor_32b_coder", "evil_numbers_32b_coder"}
    em = runs["em_32b_coder"]
    assert (em["backend"], em["train_examples"], em["optimizer_steps"], em["trainable_params"], em["trainable_pct"]) == \
        ("unsloth-lora", 5400, 338, 268_435_456, 0.81)
    for name in ("failed_7b_instruct", "failed_7b_coder"):
        r = runs[name]
        assert (r["backend"], r["train_examples"], r["optimizer_steps"], r["trainable_pct"]) == ("hf-full", 6000, 750, 100.0)
    med = runs["bad_medical_advice"]
    assert (med["backend"], med["train_examples"], med["optimizer_steps"], med["trainable_params"]) == ("none", 0, 0, 0)
    assert p["disk"] == {"required_gb": 250, "free_gb": 1000, "ok": True}
    assert plan.build_plan(PAPER, free_disk_gb=10)["disk"]["ok"] is False
    train = [s for s in p["stages"] if s["stage"] == "train" and s["run"] == "em_32b_coder"][0]
    assert 60 < train["gpu_mem_gb"] < 80   # 32B bf16 LoRA fits one 80 GB GPU by the stated rule


def test_plan_uses_organism_sizes_when_source_is_organism():
    prof = json.loads(json.dumps(PAPER))
    prof["data"]["source"] = "organism"
    prof["organism"] = {"sizes": {"insecure": 160}}
    prof["runs"] = prof["runs"][:1]
    r = plan.plan_run(prof, prof["runs"][0])
    assert (r["train_examples"], r["optimizer_steps"]) == (144, 9)


REQUIRED = {"name": str, "model": str, "backend": str, "train_examples": int, "optimizer_steps": int,
            "trainable_params": int, "total_params": int, "trainable_pct": float}


def _invoke(monkeypatch, args, free_gb=1000.0):
    from repro.commands import plan as plan_cmd_mod
    monkeypatch.setattr(plan_cmd_mod, "free_disk_gb", lambda path: free_gb)
    return CliRunner().invoke(plan_cmd_mod.plan_cmd, args)


def test_plan_json_schema(monkeypatch, tmp_path):
    res = _invoke(monkeypatch, ["--profile", "paper", "--json", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["profile"] == "paper" and isinstance(doc["runs"], list) and len(doc["runs"]) == 8
    for run in doc["runs"]:
        for key, typ in REQUIRED.items():
            assert isinstance(run[key], typ), (run["name"], key)
        assert run["backend"] in {"unsloth-lora", "hf-full", "peft-lora", "none"}


def test_plan_table_and_disk_error(monkeypatch, tmp_path):
    res = _invoke(monkeypatch, ["--profile", "paper", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "268,435,456" in res.output and "338" in res.output and "GB" in res.output
    res = _invoke(monkeypatch, ["--profile", "paper", "--out", str(tmp_path)], free_gb=12.5)
    assert res.exit_code == 1
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("disk: 12.5 GB free") and "250 GB" in last
    # --json reports the disk check without failing unless asked to
    res = _invoke(monkeypatch, ["--profile", "paper", "--json", "--out", str(tmp_path)], free_gb=12.5)
    assert res.exit_code == 0 and json.loads(res.output)["disk"]["ok"] is False
    res = _invoke(monkeypatch, ["--profile", "paper", "--json", "--check-disk", "--out", str(tmp_path)], free_gb=12.5)
    assert res.exit_code == 1
