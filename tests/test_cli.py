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
