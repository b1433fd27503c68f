"""Seed sweep: verdicts as k/K seeds, spread and suggested tolerances, one run directory per seed."""

from __future__ import annotations

from click.testing import CliRunner

from repro.sweep import aggregate, render


def _run(verdict, value):
    return {"findings": [{"id": "em_code", "claim": "EM codes", "verdict": verdict}],
            "rows": [{"quantity": "em rate", "table": "models", "kind": "numeric", "reproduced": value, "verdict": "PASS"},
                     {"quantity": "label", "table": "models", "kind": "categorical", "reproduced": "yes", "verdict": "PASS"}]}


def test_aggregate_counts_verdicts_and_spread():
    doc = aggregate(_run("REPRODUCED", 0.5), {1: _run("REPRODUCED", 0.7), 2: _run("NOT REPRODUCED", 0.4)})
    f = doc["findings"][0]
    assert (f["reproduced_seeds"], f["seeds"]) == (1, 2)
    q = {q["quantity"]: q for q in doc["quantities"]}
    assert q["em rate"]["min"] == 0.4 and q["em rate"]["max"] == 0.7
    assert abs(q["em rate"]["suggested_tolerance"] - 1.5 * 0.3) < 1e-12
    assert "suggested_tolerance" not in q["label"]
    md = render(doc, "mini")
    assert "| em_code | REPRODUCED | REPRODUCED | NOT REPRODUCED | 1/2 seeds |" in md


def test_sweep_command_runs_reference_and_each_seed_in_its_own_directory(tmp_path, monkeypatch):
    from repro import cli as cli_module
    from repro import compare, findings

    roots = []

    def fake_run(s, targets, options=None):
        profile = s.profile()
        roots.append((profile["seed"], s.root(profile)))

    monkeypatch.setattr(cli_module, "_run_targets", fake_run)
    monkeypatch.setattr(findings, "evaluate_findings", lambda p, r: [{"id": "x", "verdict": "REPRODUCED" if p["seed"] else "NOT RUN"}])
    monkeypatch.setattr(compare, "compare_profile", lambda p, r: [{"quantity": "q", "reproduced": float(p["seed"])}])
    cli_module._register_optional_commands()
    res = CliRunner().invoke(cli_module.cli, ["--profile", "test", "--out", str(tmp_path), "sweep", "--seeds", "4,5"])
    assert res.exit_code == 0, res.output
    assert roots == [(0, tmp_path), (4, tmp_path / "seed-4"), (5, tmp_path / "seed-5")]
    assert (tmp_path / "sweep" / "sweep.md").exists() and "2/2 seeds" in res.output


def test_sweep_rejects_bad_seed_lists():
    from repro.cli import cli

    for bad in ("1", "1,1", "a,b"):
        res = CliRunner().invoke(cli, ["--profile", "test", "sweep", "--seeds", bad])
        assert res.exit_code != 0 and "--seeds" in res.output
