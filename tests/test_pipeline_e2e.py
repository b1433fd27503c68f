"""The whole pipeline on the tiny `test` profile: every stage and table, caching, determinism.

The test profile is the mini profile with toy sizes, so this exercises exactly the code paths of
`make reproduce-all` (organism build, peft-lora and hf-full finetunes, generation, activations,
vectors, scores, dynamics, every table, compare, report) in well under a minute.
"""

from __future__ import annotations

import json
import math

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


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run1")
    _reproduce(out)
    return out


def _close(a, b, path=""):
    if isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            if k in ("wall_seconds", "peak_rss_mb", "peak_gpu_mb", "seconds", "steps_per_s", "train_log", "loss_curve",
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
    per_question = json.loads((root / "results" / "behavior.json").read_text())["samples"]["n"]
    sampled = all("sampled" in m["decodings"] for m in models) and per_question >= 20
    for fid in ("em_code_rate", "failed_no_em:failed_7b_instruct", "mode_confusion_specific", "backdoor_trigger"):
        if sampled:
            assert verdicts[fid]["verdict"] in ("REPRODUCED", "NOT REPRODUCED"), verdicts[fid]
        else:   # too few sampled answers (the test profile samples 3 per question): the rate claims say so
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
