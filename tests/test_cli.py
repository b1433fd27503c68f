"""CLI contracts: help on every command, one-line errors with non-zero exits, no partial output."""

import pytest
from click.testing import CliRunner

from repro import cli as cli_module
from repro.cli import cli


@pytest.fixture(autouse=True, scope="module")
def _registered():
    if "plan" not in cli.commands:
        cli_module._register_optional_commands()


def _all_commands(group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,)
        if hasattr(cmd, "commands"):
            yield from _all_commands(cmd, prefix + (name,))


def test_every_command_has_help():
    runner = CliRunner()
    names = list(_all_commands(cli))
    assert {("plan",), ("data", "validate"), ("data", "fetch"), ("compare",), ("classify",), ("env",),
            ("reproduce-all",), ("table",), ("run",), ("report",), ("graph",), ("mini", "build")} <= set(names)
    for name in names:
        res = runner.invoke(cli, [*name, "--help"])
        assert res.exit_code == 0 and "Usage:" in res.output, name


def test_unknown_profile_and_table_are_one_line_errors():
    runner = CliRunner()
    res = runner.invoke(cli, ["--profile", "nope", "graph"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "unknown" in res.output
    res = runner.invoke(cli, ["--profile", "test", "table", "nope"])
    assert res.exit_code == 1 and "unknown" in res.output and res.output.count("\n") == 1


def test_too_little_disk_stops_before_any_stage(tmp_path, monkeypatch):
    from repro.commands import plan

    monkeypatch.setattr(plan, "free_disk_gb", lambda path: 0.01)
    res = CliRunner().invoke(cli, ["--profile", "test", "--out", str(tmp_path / "run"), "run", "data"])
    assert res.exit_code == 1 and "disk:" in res.output and res.output.count("\n") == 1
    assert not (tmp_path / "run" / "data").exists()


def test_gpu_profile_without_gpu_is_one_line_error(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    from repro.commands import plan

    monkeypatch.setattr(plan, "free_disk_gb", lambda path: 1e6)
    res = CliRunner().invoke(cli, ["--profile", "paper", "--out", str(tmp_path), "run", "train/em_32b_coder"])
    assert res.exit_code == 1 and "needs a CUDA GPU" in res.output and res.output.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_bad_samples_value():
    res = CliRunner().invoke(cli, ["--profile", "test", "run", "--samples", "-1"])
    assert res.exit_code == 1 and "--samples" in res.output


# --seed N: one override function (repro.seeds.with_seed), own cache keys, own default run dir.

def test_with_seed_replaces_profile_and_recipe_seeds_without_touching_the_original():
    from repro.config import load_profile
    from repro.seeds import with_seed

    base = load_profile("test")
    seeded = with_seed(base, 7)
    assert seeded["seed"] == 7 and all(r["seed"] == 7 for r in seeded["recipes"].values())
    assert base["seed"] == 0 and {r["seed"] for r in base["recipes"].values()} == {0, 42}
    # what the override does not touch: the data-order seeds of the recipes and the vectors' split
    assert seeded["recipes"]["em_lora"]["shuffle_seed"] == base["recipes"]["em_lora"]["shuffle_seed"]
    assert seeded["vectors"]["seed"] == base["vectors"]["seed"]


def test_seed_override_changes_every_cached_stage_key():
    from repro.config import load_profile
    from repro.pipeline import build_graph
    from repro.runner import stage_keys
    from repro.seeds import with_seed

    base = load_profile("test")
    keys = {s: stage_keys(build_graph(p)) for s, p in (("plain", base), (1, with_seed(base, 1)), (2, with_seed(base, 2)))}
    graph = build_graph(base)
    cached = [n for n, st in graph.items() if st.cached]
    assert {"data", "organism", "train/em_mini", "behavior/mini_base", "vectors/refusal"} <= set(cached)
    for name in cached:
        assert len({keys["plain"][name], keys[1][name], keys[2][name]}) == 3, name


@pytest.mark.parametrize("command", [["run", "data"], ["reproduce-all"], ["table", "models"]])
def test_seed_option_reaches_the_pipeline_with_its_own_run_dir(command, tmp_path, monkeypatch):
    import os

    from repro import config, runner
    from repro.commands import plan

    seen = {}

    def fake_run_pipeline(graph, targets, *, profile, root, options=None, force=False):
        seen.update(profile=profile, root=root, targets=targets)
        raise cli_module.ReproError("stop after the pipeline call")

    monkeypatch.setattr(os, "environ", os.environ.copy())  # the CLI's runtime pin must not leak into this process
    monkeypatch.setattr(config, "RUNS_ROOT", tmp_path / "runs")
    monkeypatch.setattr(plan, "free_disk_gb", lambda path: 1e6)
    monkeypatch.setattr(runner, "run_pipeline", fake_run_pipeline)
    res = CliRunner().invoke(cli, ["--profile", "test", *command, "--seed", "5"])
    assert res.exit_code == 1 and "stop after the pipeline call" in res.output
    assert seen["root"] == tmp_path / "runs" / "test" / "seed-5"
    assert seen["profile"]["seed"] == 5 and all(r["seed"] == 5 for r in seen["profile"]["recipes"].values())
    assert os.environ["ATEN_CPU_CAPABILITY"] == "avx2"  # the profile's pin was applied by the command

    res = CliRunner().invoke(cli, ["--profile", "test", *command, "--seed", "5", "--out", str(tmp_path / "mine")])
    assert seen["root"] == tmp_path / "mine"  # an explicit --out wins
    seen.clear()
    res = CliRunner().invoke(cli, ["--profile", "test", *command])
    assert seen["root"] == tmp_path / "runs" / "test" and seen["profile"]["seed"] == 0


@pytest.mark.parametrize("command", [["run", "data"], ["reproduce-all"], ["table", "models"]])
def test_negative_seed_is_a_one_line_error(command):
    res = CliRunner().invoke(cli, ["--profile", "test", *command, "--seed", "-1"])
    assert res.exit_code == 2 and "--seed" in res.output and res.output.count("\n") == 1
