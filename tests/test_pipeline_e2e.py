"""The whole pipeline on the tiny `test` profile: every stage and table, caching, determinism.

The test profile is the mini profile with toy sizes, so this exercises exactly the code paths of
`make reproduce-all` (organism build, peft-lora and hf-full finetunes, generation, activations,
vectors, scores, dynamics, every table, compare, report) in well under a minute.
"""

from __future__ import annotations

import json
import math
import sys

import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.pipeline import TABLES

RESULTS = ("organism",) + tuple(t for t in TABLES)


def _register():
    from repro import cli as cli_module

    if "plan" not in cli.commands:
        cli_module._register_optional_commands()


def _reproduce(out):
    _register()
    result = CliRunner().invoke(cli, ["--profile", "test", "--quiet", "--out", str(out), "reproduce-all"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


GENERATED: dict[str, list] = {"hf": [], "answers": []}   # filled while first_run runs


def _stage_of_caller() -> tuple[str, dict]:
    """(module, locals) of the stage `run` function on the call stack, ("", {}) if none."""
    frame = sys._getframe(2)
    found = ("", {})
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.startswith("repro.stages.") and frame.f_code.co_name == "run":
            found = (name, frame.f_locals)
        frame = frame.f_back
    return found


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """The first run, with every generation recorded: transformers' generate (whoever calls it)
    and repro.generate.generate_responses (which prompts, which decoding, for which answers stage)."""
    import transformers.generation.utils as gen_utils

    import repro.generate as gen

    real_generate, real_responses = gen_utils.GenerationMixin.generate, gen.generate_responses

    def spy_generate(self, *args, **kwargs):
        GENERATED["hf"].append(_stage_of_caller()[0])
        return real_generate(self, *args, **kwargs)

    def spy_responses(model, tokenizer, prompts, **kwargs):
        module, local = _stage_of_caller()
        GENERATED["answers"].append({"stage": module, "label": local.get("label"), "prompts": list(prompts),
                                     "greedy": kwargs.get("greedy", True), "max_new_tokens": kwargs.get("max_new_tokens")})
        return real_responses(model, tokenizer, prompts, **kwargs)

    out = tmp_path_factory.mktemp("run1")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gen_utils.GenerationMixin, "generate", spy_generate)
        mp.setattr(gen, "generate_responses", spy_responses)
        _reproduce(out)
    return out


def _close(a, b, path=""):
    if isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            if k in ("wall_seconds", "peak_rss_mb", "peak_gpu_mb", "seconds", "steps_per_second", "train_log", "loss_curve",
                     "model", "path", "base_model"):
                continue
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_every_table_report_and_compare_are_written(first_run):
    for name in RESULTS:
        assert (first_run / "results" / f"{name}.json").exists(), name
        assert (first_run / "tables" / f"{name}.md").exists(), name
    report = (first_run / "report" / "REPORT.md").read_text()
    for title in ("T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "Stages", "Environment"):
        assert title in report
    assert (first_run / "report" / "training_loss.png").exists()
    _check_comparison(first_run, report)
    training = json.loads((first_run / "results" / "training.json").read_text())
    assert training["optimizer_steps"] == math.ceil(training["train_examples"] / 16)


def _check_comparison(root, report: str) -> None:
    """compare.json / compare.md / REPORT.md open with the findings verdicts, computed from this run's results."""
    from repro.findings import load_findings

    doc = json.loads((root / "compare.json").read_text())
    spec = load_findings()
    expected_ids = [c["id"] if not c["rows"] or len(c["rows"]) == 1 else f"{c['id']}:{r}"
                    for c in spec["claims"] for r in (c["rows"] or [None])]
    verdicts = {f["id"]: f for f in doc["findings"]}
    assert list(verdicts) == expected_ids
    # the test profile has no recorded numbers: no regression rows, exit 0, and it says so
    assert doc["regression"]["kind"] == "none" and doc["regression"]["rows"] == [] and doc["exit_code"] == 0
    # every results file exists, so nothing is NOT RUN for a missing file
    assert not [f for f in doc["findings"] if "missing" in f["detail"]], doc["findings"]
    # the test profile's mapping: the failed-recipe row of the coder model has no run
    assert verdicts["failed_no_em:failed_7b_coder"]["verdict"] == "NOT APPLICABLE"
    models = json.loads((root / "results" / "models.json").read_text())["models"]
    sampled = all("sampled" in m["decodings"] for m in models)
    n_samples = json.loads((root / "results" / "behavior.json").read_text())["samples"]["n"]
    for fid in ("em_code_rate", "failed_no_em:failed_7b_instruct", "mode_confusion_specific", "backdoor_trigger"):
        claim = next(c for c in spec["claims"] if c["id"] == fid.split(":")[0])
        if sampled and n_samples >= claim["params"]["min_samples_per_question"]:
            assert verdicts[fid]["verdict"] in ("REPRODUCED", "NOT REPRODUCED"), verdicts[fid]
        else:   # greedy answers only, or too few samples: the rate claims are not judged
            assert verdicts[fid]["verdict"] == "NOT RUN" and "--samples" in verdicts[fid]["detail"], verdicts[fid]
    em = next(m for m in models if m["run"] == "em_mini")
    assert verdicts["em_code_rate"]["numbers"]["p_value"] == em["p_value"]
    refusal = json.loads((root / "results" / "refusal.json").read_text())["averages"]
    small = verdicts["refusal_shift_small"]
    assert small["numbers"]["gap_base"] == refusal["gap_base"]
    holds = refusal["gap_base"] > 0 and max(abs(refusal["shift_harmful"]), abs(refusal["shift_benign"])) < 0.05 * refusal["gap_base"]
    assert small["verdict"] == ("REPRODUCED" if holds else "NOT REPRODUCED")
    assert verdicts["refusal_separates"]["verdict"] in ("REPRODUCED", "NOT REPRODUCED")
    assert verdicts["bad_advice_in_domain"]["verdict"] in ("REPRODUCED", "NOT REPRODUCED")
    md = (root / "compare.md").read_text()
    assert md.index("## Findings verdicts (profile `test`)") < md.index("Regression check against this profile's own recorded numbers")
    assert report.index("Findings verdicts (profile `test`)") < report.index("## T1")


def test_one_answer_set_feeds_behavior_activations_and_dynamics(first_run):
    """T3, T7 and T8 quote the same EM answers, generated once by answers/<model>; no other stage
    generates (the organism's instruct checks aside)."""
    from repro.config import load_profile

    profile = load_profile("test")
    questions, max_new = profile["behavior"]["questions"], profile["behavior"]["max_new_tokens"]
    assert set(GENERATED["hf"]) == {"repro.stages.answers", "repro.stages.organism"}, set(GENERATED["hf"])
    assert {c["stage"] for c in GENERATED["answers"]} == {"repro.stages.answers", "repro.stages.organism"}
    texts = json.loads((first_run / "data" / "prompts.json").read_text())["eval_questions"]
    for label in ("em_mini", "mini_base"):
        calls = [c for c in GENERATED["answers"] if c["stage"] == "repro.stages.answers" and c["label"] == label]
        greedy = [p for c in calls if c["greedy"] for p in c["prompts"]]
        for qid in questions:   # each EM question answered greedily exactly once, with behavior.max_new_tokens
            assert greedy.count(texts[qid]) == 1, (label, qid)
            assert [c["max_new_tokens"] for c in calls if c["greedy"] and texts[qid] in c["prompts"]] == [max_new]
    stored = {label: {r["prompt_id"]: r for r in map(json.loads, (first_run / "answers" / label / "behavior.jsonl")
                                                     .read_text().splitlines()) if r["group"] == "em_questions"}
              for label in ("em_mini", "mini_base")}
    t3 = {p["id"]: p for p in json.loads((first_run / "results" / "behavior.json").read_text())["prompts"]}
    t7 = {p["id"]: p for p in json.loads((first_run / "results" / "codemode.json").read_text())["prompts"]}
    t8 = json.loads((first_run / "results" / "dynamics.json").read_text())
    assert list(t3) == list(t7) == [p["id"] for p in t8["prompts"]] == questions
    assert t8["max_new_tokens"] == max_new and t8["answers"] == "answers/em_mini/behavior.jsonl"
    for p in t8["prompts"]:
        qid = p["id"]
        assert t3[qid]["em_response"] == t7[qid]["em_response"] == p["response"] == stored["em_mini"][qid]["response"]
        assert t3[qid]["base_response"] == t7[qid]["base_response"] == stored["mini_base"][qid]["response"]


def test_rerun_uses_the_cache(first_run):
    _register()
    result = CliRunner().invoke(cli, ["--profile", "test", "--quiet", "--out", str(first_run), "run"])
    assert result.exit_code == 0, result.output
    assert "[cached] organism" in result.output and "[cached] train/em_mini" in result.output
    assert "[run]    organism" not in result.output and "[run]    train/" not in result.output


def test_two_runs_from_scratch_give_the_same_tables(first_run, tmp_path):
    _reproduce(tmp_path)
    for name in RESULTS:
        a = json.loads((first_run / "results" / f"{name}.json").read_text())
        b = json.loads((tmp_path / "results" / f"{name}.json").read_text())
        _close(a, b, name)
