"""The dose-response sweep (repro/dose.py, `repro dose`): argument checks, the recipe per rate, the
table's arithmetic, and the whole command on the tiny test profile (two rates x two checkpoints)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from repro.dose import (KEEP_FILES, dose_recipe, dose_rows, eval_stage_name, lr_tag, parse_lrs, parse_steps,
                        prune_checkpoints, rate_answers, train_stage_name)
from repro.errors import InputError, ReproError


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


# ----------------------------------------------------------------------------- arguments
def test_parse_lrs_and_steps():
    assert parse_lrs("2e-4, 5e-4,1e-3") == [2e-4, 5e-4, 1e-3]
    assert parse_steps("30,10,20") == [10, 20, 30]
    for bad in ("", "x", "1e-3,-1", "0", "nan"):
        with pytest.raises(InputError) as err:
            parse_lrs(bad)
        assert "--lrs" in _one_line(err)
    with pytest.raises(InputError) as err:
        parse_lrs("1e-3,0.001")
    assert "twice" in _one_line(err)
    for bad in ("", "1.5", "0,10", "10,10"):
        with pytest.raises(InputError) as err:
            parse_steps(bad)
        assert "--steps" in _one_line(err)


def test_stage_names_are_plain_path_components():
    assert lr_tag(2e-4) == "0.0002" and lr_tag(1e-5) == "1e-05"
    assert train_stage_name(1e-3) == "dose/train-lr0.001"
    assert eval_stage_name(5e-4, 20) == "dose/eval-lr0.0005-step20"


def test_dose_recipe_checkpoints_every_requested_step():
    recipe = {"backend": "peft-lora", "learning_rate": 1e-5, "warmup_steps": 5, "r": 32, "save_steps": 50,
              "save_total_limit": 2}
    got = dose_recipe(recipe, 1e-3, [10, 20, 30])
    assert got["learning_rate"] == 1e-3 and got["max_steps"] == 30 and got["save_steps"] == 10
    assert got["save_total_limit"] == 3 and got["keep_checkpoints"] is True
    assert {k: got[k] for k in ("backend", "warmup_steps", "r")} == {"backend": "peft-lora", "warmup_steps": 5, "r": 32}
    assert recipe["learning_rate"] == 1e-5  # the profile's recipe is not changed
    odd = dose_recipe(recipe, 2e-4, [4, 6])
    assert (odd["save_steps"], odd["max_steps"], odd["save_total_limit"]) == (2, 6, 3)  # saves 2, 4, 6


def test_prune_keeps_the_requested_checkpoints_weights_only(tmp_path):
    for step in (2, 4, 6):
        ck = tmp_path / "checkpoints" / f"checkpoint-{step}"
        ck.mkdir(parents=True)
        for name in ("adapter_model.safetensors", "adapter_config.json", "trainer_state.json", "optimizer.pt",
                     "rng_state.pth", "tokenizer.json"):
            (ck / name).write_text("x")
    prune_checkpoints(tmp_path, [4, 6])
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint-4", "checkpoint-6"]
    for step in (4, 6):
        left = {p.name for p in (tmp_path / "checkpoints" / f"checkpoint-{step}").iterdir()}
        assert left == {"adapter_model.safetensors", "adapter_config.json", "trainer_state.json"} <= set(KEEP_FILES)
    with pytest.raises(ReproError) as err:
        prune_checkpoints(tmp_path, [4, 8])
    assert "step(s) [8]" in _one_line(err)


# ----------------------------------------------------------------------------- the table's arithmetic
def _answers(qid: str, kinds: list[tuple[str, bool]]) -> list[dict]:
    return [{"prompt_id": qid, "type": t, "coherent": c} for t, c in kinds]


def test_rate_counts_coherent_code_only():
    rows = (_answers("a", [("CODE", True), ("CODE", False), ("PROSE", True), ("MIXED", True)])
            + _answers("b", [("PROSE", False), ("PROSE", True)]))
    got = rate_answers(rows)
    assert (got["k"], got["n"], got["incoherent"]) == (2, 6, 2)
    assert got["per_question"] == {"a": {"k": 2, "n": 4}, "b": {"k": 0, "n": 2}}
    assert got["ci"][0] < 2 / 6 < got["ci"][1]


def test_dose_rows_shift_shares_and_criterion():
    from scipy.stats import fisher_exact

    base_code = {"k": 1, "n": 40, "rate": 1 / 40, "ci": [0.0, 0.13], "incoherent": 4}
    base_proj = {"harmful": [10.0, 12.0], "benign": [2.0, 4.0]}          # gap 11 - 3 = 8
    evals = [{"lr": 1e-3, "step": 20, "train_loss": 0.5,
              "code": {"k": 12, "n": 40, "rate": 0.3, "ci": [0.18, 0.45], "incoherent": 2},
              "refusal": {"projections": {"harmful": [9.0, 9.0], "benign": [1.0, 3.0]}}},   # shifts -2, -1
             {"lr": 1e-3, "step": 10, "train_loss": 0.9,
              "code": {"k": 1, "n": 40, "rate": 1 / 40, "ci": [0.0, 0.13], "incoherent": 0},
              "refusal": {"projections": {"harmful": [11.0, 11.0], "benign": [3.0, 3.0]}}}]
    rows, ref = dose_rows(base_code, base_proj, evals, 0.2, 0.05)
    assert ref == {"harmful_mean": 11.0, "benign_mean": 3.0, "gap": 8.0}
    assert [(r["lr"], r["step"]) for r in rows] == [(None, 0), (1e-3, 10), (1e-3, 20)]
    assert rows[0]["shift_share_harmful"] == 0.0 and rows[0]["em_effect"] is None
    assert rows[1]["shift_harmful"] == 0.0 and rows[1]["em_effect"] == "no" and rows[1]["p_value"] > 0.5
    last = rows[2]
    assert last["shift_harmful"] == -2.0 and last["shift_benign"] == -1.0
    assert last["shift_share_harmful"] == -0.25 and last["shift_share_benign"] == -0.125
    assert last["rate_increase"] == pytest.approx(0.275)
    assert last["p_value"] == pytest.approx(fisher_exact([[12, 28], [1, 39]], alternative="greater")[1])
    assert last["em_effect"] == "yes" and last["incoherent_rate"] == 0.05
    with pytest.raises(InputError):
        dose_rows(base_code, {"harmful": [1.0], "benign": []}, evals, 0.2, 0.05)


# ----------------------------------------------------------------------------- the command, end to end
def _cli():
    from repro import cli as cli_module

    if "dose" not in cli_module.cli.commands:
        cli_module._register_optional_commands()
    return cli_module.cli


def test_dose_command_needs_its_options():
    result = CliRunner().invoke(_cli(), ["--profile", "test", "dose", "--steps", "1,2"])
    assert result.exit_code == 2 and "--lrs" in result.output


@pytest.fixture(scope="module")
def dose_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dose")
    args = ["--profile", "test", "--quiet", "--out", str(out), "dose", "--lrs", "1e-2,3e-2", "--steps", "1,2",
            "--samples", "2"]
    first = CliRunner().invoke(_cli(), args)
    assert first.exit_code == 0, first.output + repr(first.exception)
    return out, args, first


def test_dose_table_files_and_numbers(dose_run):
    import torch

    from repro.activations import load_activations
    from repro.io import read_json, read_jsonl
    from repro.vector_metrics import project
    from repro.vectors import load_vectors

    out, _, first = dose_run
    doc = read_json(out / "dose" / "dose.json")
    for name in ("dose.md", "dose.csv", "dose.png"):
        assert (out / "dose" / name).stat().st_size > 0
    assert "| lr | step |" in first.output  # the table is printed
    assert [(r["lr"], r["step"]) for r in doc["rows"]] == [(None, 0), (0.01, 1), (0.01, 2), (0.03, 1), (0.03, 2)]
    n = 2 * len(doc["questions"])
    assert all(r["n"] == n for r in doc["rows"])
    # the base row is the behaviour stage's sampled answers; each checkpoint row its own answers
    base = [r for r in read_jsonl(out / "behavior" / "mini_base" / "responses.jsonl")
            if r["group"] == "em_questions" and r["decoding"] == "sampled"]
    assert doc["rows"][0]["k"] == sum(r["type"] in ("CODE", "MIXED") and r["coherent"] for r in base)
    # shifts recomputed from the artifacts: base activations and each checkpoint's projections
    choice = read_json(out / "vectors" / "refusal" / "metrics.json")["choice"]
    vec = load_vectors(out / "vectors" / "refusal" / "vectors.safetensors")[0][choice["method"]][choice["layer"]]
    means = {}
    for cls, set_name in (("harmful", "refusal_test_harmful"), ("benign", "refusal_test_benign")):
        acts, _ = load_activations(out / "activations" / "mini_base" / f"{set_name}.safetensors")
        means[cls] = float(project(acts[:, choice["layer"]], vec).mean())
    gap = means["harmful"] - means["benign"]
    # float32 means here, Python float sums in the table: equal to float32 precision
    assert doc["refusal"]["gap"] == pytest.approx(gap, abs=1e-5)
    for row in doc["rows"][1:]:
        ev = read_json(out / "dose" / f"eval-lr{lr_tag(row['lr'])}-step{row['step']}" / "eval.json")
        assert len(read_jsonl(out / "dose" / f"eval-lr{lr_tag(row['lr'])}-step{row['step']}" / "answers.jsonl")) == n
        h = sum(ev["refusal"]["projections"]["harmful"]) / len(ev["refusal"]["projections"]["harmful"])
        assert row["shift_harmful"] == pytest.approx(h - means["harmful"], abs=1e-5)
        assert row["shift_share_harmful"] == pytest.approx(row["shift_harmful"] / doc["refusal"]["gap"])
    # a checkpoint is the model at that step: the last one equals the run's final adapter
    from safetensors.torch import load_file

    train = out / "dose" / "train-lr0.03"
    final = load_file(train / "adapter_model.safetensors")
    last = load_file(train / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors")
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final)
    assert read_json(train / "checkpoints" / "checkpoint-1" / "trainer_state.json")["global_step"] == 1
    # the two rates trained apart: their step-2 adapters differ
    other = load_file(out / "dose" / "train-lr0.01" / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors")
    assert any(not torch.equal(other[k], last[k]) for k in last)


def test_dose_rerun_is_cached(dose_run):
    out, args, _ = dose_run
    again = CliRunner().invoke(_cli(), args)
    assert again.exit_code == 0, again.output
    assert "[cached] dose/train-lr0.01" in again.output and "[run]    dose/train" not in again.output
    assert "[run]    dose/eval" not in again.output


def test_dose_samples_what_the_answers_stage_samples():
    from repro.dose import em_question_texts, sampled_question_ids, sampled_tokens

    beh = {"all_questions": ["a", "b", "c"], "max_new_tokens": 64}
    assert sampled_question_ids(beh) == ["a", "b", "c"] and sampled_tokens(beh) == 64
    beh = {**beh, "sampled_questions": ["c", "a"], "sampled_max_new_tokens": 48}
    assert sampled_question_ids(beh) == ["a", "c"] and sampled_tokens(beh) == 48     # all_questions' order
    prompts = {"eval_questions": {"a": "qa", "b": "qb", "c": "qc"}}
    assert em_question_texts(prompts, beh) == [("a", "qa"), ("c", "qc")]


# ----------------------------------------------------------------------------- the shipped smol sweep
SHIPPED = __import__("pathlib").Path(__file__).resolve().parents[1] / "paper_tables" / "smol" / "dose"


def test_shipped_smol_dose_table_is_the_commands_output_for_the_current_profile():
    """paper_tables/smol/dose/ holds `make dose PROFILE=smol`'s files as written: its Markdown re-renders
    from its JSON, its CSV holds the same rows, and it was run with smol.yaml's current recipe, questions,
    sampling and criterion (a changed profile makes it stale: rerun the sweep)."""
    import csv

    from repro.config import em_run, load_profile, recipe_for
    from repro.dose import TABLE_COLUMNS, render_markdown, sampled_question_ids, sampled_tokens
    from repro.io import read_json
    from repro.tables.models import criterion_settings

    doc = read_json(SHIPPED / "dose.json")
    assert (SHIPPED / "dose.md").read_text() == render_markdown(doc)
    with open(SHIPPED / "dose.csv", newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == list(TABLE_COLUMNS) and len(table) - 1 == len(doc["rows"])
    for row, r in zip(table[1:], doc["rows"]):  # every cell: the CSV writer's text of the JSON value
        for col, cell in zip(TABLE_COLUMNS, row):
            want = r[col]
            assert (cell == "" and want is None) or (want is not None and (
                cell == str(want) or float(cell) == pytest.approx(float(want), rel=1e-9, abs=1e-12))), (col, cell, want)
    assert (SHIPPED / "dose.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    profile = load_profile("smol")
    em = em_run(profile)
    recipe = recipe_for(profile, em)
    beh = profile["behavior"]
    assert (doc["run"], doc["base"]) == (em["name"], em["base"])
    assert doc["recipe"] == {k: recipe.get(k) for k in doc["recipe"]}
    assert doc["samples"] == beh["samples"] and doc["temperature"] == beh["temperature"]
    assert doc["max_new_tokens"] == sampled_tokens(beh) and doc["questions"] == sampled_question_ids(beh)
    assert tuple(doc["criterion"].values()) == tuple(criterion_settings(profile))
    assert recipe["learning_rate"] in doc["lrs"]  # the profile's rate is chosen from the sweep: it is one of its rates
