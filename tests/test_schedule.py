"""The side-by-side scheduler (repro/schedule.py): RAM estimates and option checks.

That `--jobs 2` gives the bits of a sequential run is checked end to end in test_determinism.py."""

from __future__ import annotations

import json

from click.testing import CliRunner

from repro.cli import cli
from repro.config import load_profile
from repro.pipeline import build_graph
from repro.runner import record_path
from repro.schedule import BASE_PROCESS_MB, ram_estimates_mb


def test_estimates_rank_stage_kinds_by_what_they_hold_in_memory(tmp_path):
    profile = load_profile("smol")   # its model config is in the repo: no wheel needed
    est = ram_estimates_mb(profile, build_graph(profile), tmp_path)
    full, lora = est["train/failed_smol_full"], est["train/em_smol"]
    assert full > lora > est["answers/smol_base"] > est["data"] == BASE_PROCESS_MB
    # the smol profile's full finetune and a LoRA finetune do not both fit in the 6 GB the Makefile allows
    assert full + lora > 6 * 1024 and full + est["answers/em_smol"] <= 6 * 1024


def test_a_recorded_peak_replaces_the_rule(tmp_path):
    profile = load_profile("smol")
    path = record_path(tmp_path, "train/em_smol")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"stage": "train/em_smol", "peak_rss_mb": 1234.5}))
    assert ram_estimates_mb(profile, build_graph(profile), tmp_path)["train/em_smol"] == 1234.5


def test_jobs_must_be_positive():
    result = CliRunner().invoke(cli, ["--jobs", "0", "--profile", "test", "graph"])
    assert result.exit_code == 2 and "--jobs" in result.output


def test_jobs_from_the_environment_is_validated_too():
    result = CliRunner().invoke(cli, ["--profile", "test", "graph"], env={"REPRO_JOBS": "many"})
    assert result.exit_code == 2 and "many" in result.output
