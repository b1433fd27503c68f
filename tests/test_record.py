"""Re-recording a profile's references: values from the run, tolerances from the seed spread."""

from __future__ import annotations

import json

import pytest
import yaml

from repro.errors import InputError
from repro.record import record_profile


def _setup(tmp_path):
    ref = tmp_path / "refs" / "mini"
    ref.mkdir(parents=True)
    (ref / "models.yaml").write_text(
        "# header kept\ntable: T1\ntitle: t\nresults: models.json\nentries:\n"
        "- {quantity: 'em rate', path: 'models[run=em].rate', kind: numeric, value: 0.1, tolerance: {abs: 0.5}, source: old}\n"
        "- {quantity: 'em effect', path: 'models[run=em].effect', kind: categorical, value: 'no', source: old}\n"
        "- {quantity: 'claim', kind: claim, expr: 'models[0].rate > 0', source: spec}\n")
    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    (run / "results" / "models.json").write_text(json.dumps({"models": [{"run": "em", "rate": 0.45, "effect": "yes"}]}))
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"runs": ["reference", "seed-1", "seed-2", "seed-3"], "quantities": [
        {"quantity": "em rate", "values": {"reference": 0.45, "seed-1": 0.4, "seed-2": 0.5, "seed-3": 0.42},
         "min": 0.4, "max": 0.5, "suggested_tolerance": 0.15}]}))
    return ref, run, sweep


def test_record_takes_values_from_the_run_and_tolerances_from_the_sweep(tmp_path):
    ref, run, sweep = _setup(tmp_path)
    out = record_profile({"name": "mini"}, run, tmp_path / "refs", sweep)
    assert out == [(str(ref / "models.yaml"), 2)]
    text = (ref / "models.yaml").read_text()
    assert text.startswith("# header kept\n")
    doc = yaml.safe_load(text)
    rate, effect, claim = doc["entries"]
    assert rate["value"] == 0.45 and rate["tolerance"] == {"abs": 0.15} and "3 seeds" in rate["note"]
    assert effect["value"] == "yes" and claim["expr"] == "models[0].rate > 0"


def test_record_refuses_the_published_numbers_and_thin_sweeps(tmp_path):
    ref, run, sweep = _setup(tmp_path)
    with pytest.raises(InputError, match="published numbers"):
        record_profile({"name": "paper"}, run, tmp_path / "refs", None)
    doc = json.loads(sweep.read_text())
    doc["runs"] = ["reference", "seed-1"]
    sweep.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=">= 3"):
        record_profile({"name": "mini"}, run, tmp_path / "refs", sweep)


def test_record_counts_the_reference_runs_seed_among_the_three(tmp_path):
    ref, run, sweep = _setup(tmp_path)
    doc = json.loads(sweep.read_text())
    doc["runs"] = ["seed-1", "seed-2", "seed-3"]          # no reference run: not a sweep of this run
    sweep.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="no .reference. run"):
        record_profile({"name": "mini"}, run, tmp_path / "refs", sweep)
    doc["runs"] = ["reference", "seed-1", "seed-2"]       # seeds 0 (the reference), 1 and 2
    sweep.write_text(json.dumps(doc))
    assert record_profile({"name": "mini"}, run, tmp_path / "refs", sweep) == [(str(ref / "models.yaml"), 2)]
