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
    assert json.loads((first_run / "compare.json").read_text()) == [] or (first_run / "compare.md").exists()
    training = json.loads((first_run / "results" / "training.json").read_text())
    assert training["optimizer_steps"] == math.ceil(training["train_examples"] / 16)


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
