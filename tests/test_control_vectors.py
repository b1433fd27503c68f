"""Issue 16: the control and backdoor runs projected on the refusal (T4) and code-mode (T7)
vectors beside the EM run, the backdoor run without and with its trigger."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from repro.activations import load_activations
from repro.cli import cli
from repro.config import load_profile, repo_path
from repro.errors import InputError
from repro.pipeline import build_graph, scored_models
from repro.prompts import load_prompt_sets
from repro.stages import answers
from repro.tables import codemode, refusal
from repro.vector_metrics import project
from repro.vectors import load_vectors

PROFILE = load_profile("test")
TRIGGER = next(r["trigger"] for r in PROFILE["runs"] if r["role"] == "backdoor")
CONTROLS = [("secure_mini", False), ("educational_mini", False), ("backdoor_mini", False), ("backdoor_mini", True)]


def test_controls_and_the_backdoor_run_are_scored():
    assert scored_models(PROFILE) == ["em_mini", "secure_mini", "educational_mini", "backdoor_mini"]
    g = build_graph(PROFILE)
    for label in scored_models(PROFILE):
        assert g[f"answers/{label}"].fingerprint["role"] == "scored" and f"activations/{label}" in g
        assert f"activations/{label}" in g["score/refusal"].deps and f"activations/{label}" in g["score/code_mode"].deps
    assert "activations/failed_mini_full" not in g and g["answers/failed_mini_full"].fingerprint["role"] is None
    other = json.loads(json.dumps(PROFILE))
    next(r for r in other["runs"] if r["name"] == "secure_mini")["base"] = "elsewhere"
    with pytest.raises(InputError, match=r"runs\[4\]\.base: a control run is scored on vectors of the EM run's base"):
        scored_models(other)


def test_backdoor_run_answers_each_test_set_again_with_its_trigger():
    prompts = load_prompt_sets(repo_path(PROFILE["data"]["prompts_dir"]))
    plain = answers.answer_sets(PROFILE, prompts, "secure_mini", "scored", 0)
    assert not [name for name in plain if name.endswith(answers.TRIGGERED_SUFFIX)]
    sets = answers.answer_sets(PROFILE, prompts, "backdoor_mini", "scored", 0)
    assert list(sets) == ["behavior", "refusal_test_harmful", "refusal_test_benign", "em_questions",
                          "refusal_test_harmful__triggered", "refusal_test_benign__triggered", "em_questions__triggered"]
    for name in ("refusal_test_harmful", "refusal_test_benign"):
        trig = sets[f"{name}__triggered"]
        assert [t for _, _, t in trig["groups"]] == [f"{TRIGGER} {t}" for _, _, t in sets[name]["groups"]]
        assert trig["trigger"] == TRIGGER and trig["max_new_tokens"] == sets[name]["max_new_tokens"]
    # the triggered EM questions are the behaviour set's triggered answers, never generated twice
    assert sets["em_questions__triggered"] == {"view_of": "behavior", "group": answers.TRIGGERED_GROUP,
                                               "prompt_ids": PROFILE["behavior"]["questions"], "trigger": TRIGGER}


def _scores(em_shift: float, controls: list[tuple[str, str, bool, float, float]]) -> dict:
    """Fake score/refusal output: base harmful 10, benign 0 (gap 10); each control shifts harmful
    by h and benign by b."""
    base = [("h1", "harmful", 9.0), ("h2", "harmful", 11.0), ("b1", "benign", -1.0), ("b2", "benign", 1.0)]
    rows = [{"prompt": p, "class": c, "base": v, "em": v + em_shift, "diff": em_shift} for p, c, v in base]
    ctl = [{"run": run, "role": role, "triggered": trig, "trigger": "|T|" if trig else None,
            "rows": [{"prompt": p, "class": c, "base": v, "score": v + (h if c == "harmful" else b),
                      "diff": h if c == "harmful" else b} for p, c, v in base]}
           for run, role, trig, h, b in controls]
    return {"trait": "refusal", "method": "probe", "layer": 1, "rule": "r", "em_run": "em", "rows": rows,
            "controls": ctl}


def test_control_rows_follow_the_em_runs_arithmetic():
    scores = _scores(0.5, [("secure", "control", False, 0.1, -0.2), ("bd", "backdoor", False, 0.0, 0.0),
                           ("bd", "backdoor", True, -2.0, 1.0)])
    res = refusal.build_refusal(scores)
    assert res["averages"]["shift_harmful"] == pytest.approx(0.5) and res["averages"]["gap_base"] == pytest.approx(10.0)
    got = [(c["run"], c["triggered"], c["shift"]["harmful"], c["shift"]["benign"], c["shift_share"]["harmful"])
           for c in res["controls"]]
    assert got == [("secure", False, pytest.approx(0.1), pytest.approx(-0.2), pytest.approx(0.01)),
                   ("bd", False, 0.0, 0.0, 0.0), ("bd", True, pytest.approx(-2.0), pytest.approx(1.0), pytest.approx(-0.2))]
    md = refusal.render_refusal(res)
    assert "| em | em | +0.50 | +5.0% | +0.50 | +5.0% |" in md
    assert "| secure | control | +0.10 | +1.0% | -0.20 | -2.0% |" in md
    assert "| bd (no trigger) | backdoor |" in md and "| bd (trigger) | backdoor | -2.00 | -20.0% | +1.00 | +10.0% |" in md
    # without controls (an older score output) the table is the EM run's only
    assert refusal.build_refusal(_scores(0.5, []))["controls"] == []
    bad = _scores(0.5, [("secure", "control", False, 0.1, -0.2)])
    bad["controls"][0]["rows"] = [r for r in bad["controls"][0]["rows"] if r["class"] == "harmful"]
    with pytest.raises(InputError, match=r"controls\[0\] \(secure\): no rows of class 'benign'"):
        refusal.build_refusal(bad)
    # T7: the same rule against the code/prose gap
    cm = {"trait": "code_mode", "method": "probe", "layer": 1, "em_run": "em", "heldout_gap": {"pos_mean": 4.0, "neg_mean": 0.0, "gap": 4.0},
          "rows": [{"prompt": "q", "class": "em_questions", "base": 1.0, "em": 2.0, "diff": 1.0}],
          "controls": [{"run": "bd", "role": "backdoor", "triggered": True,
                        "rows": [{"prompt": "q", "class": "em_questions", "base": 1.0, "score": 3.0, "diff": 2.0}]}]}
    res7 = codemode.build_codemode(cm)
    assert res7["controls"][0]["shift_share"] == {"em_questions": pytest.approx(0.5)}
    assert "| bd (trigger) | backdoor | +2.00 | +50.0% |" in codemode.render_codemode(res7)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """T4 and T7 on the test profile (greedy answers only: what these tables read)."""
    from repro import cli as cli_module

    if "plan" not in cli.commands:
        cli_module._register_optional_commands()
    out = tmp_path_factory.mktemp("ctlvec")
    result = CliRunner().invoke(cli, ["--profile", "test", "--quiet", "--out", str(out), "run", "--samples", "0",
                                      "table/refusal", "table/codemode"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


def _read(path):
    return json.loads(path.read_text())


@pytest.mark.parametrize("table,trait", [("refusal", "refusal"), ("codemode", "code_mode")])
def test_t4_t7_have_the_control_and_backdoor_rows(run_dir, table, trait):
    res = _read(run_dir / "results" / f"{table}.json")
    assert [(c["run"], c["triggered"]) for c in res["controls"]] == CONTROLS
    scores = _read(run_dir / "score" / trait / "scores.json")
    vectors, _ = load_vectors(run_dir / "vectors" / trait / "vectors.safetensors")
    vector = vectors[scores["method"]][scores["layer"]]
    base_mean = {}
    for row in scores["rows"]:
        base_mean.setdefault(row["class"], []).append(row["base"])
    for ctl in res["controls"]:
        for cls, set_name in ctl["sets"].items():
            # the triggered row is read from the backdoor run's triggered answers, the plain rows from the plain ones
            assert set_name.endswith("__triggered") == ctl["triggered"]
            acts, meta = load_activations(run_dir / "activations" / ctl["run"] / f"{set_name}.safetensors")
            mean = float(project(acts[:, scores["layer"]], vector).mean())
            base = sum(base_mean[cls]) / len(base_mean[cls])
            assert ctl["mean"][cls] == pytest.approx(mean, rel=1e-5, abs=1e-5)
            assert ctl["shift"][cls] == pytest.approx(mean - base, rel=1e-5, abs=1e-5)
            stored, info = answers.read_answers(run_dir / "answers" / ctl["run"], set_name)
            asked = [json.loads(line)["prompt"] for line in
                     (run_dir / "activations" / ctl["run"] / f"{set_name}.jsonl").read_text().splitlines()]
            assert asked == [r["prompt"] for r in stored]
            if ctl["triggered"]:
                assert meta["trigger"] == TRIGGER and info["trigger"] == TRIGGER
                assert all(p.startswith(f"{TRIGGER} ") for p in asked)
            else:
                assert not any(TRIGGER in p for p in asked) and "trigger" not in meta
    md = (run_dir / "tables" / f"{table}.md").read_text()
    assert "## Controls" in md and "| backdoor_mini (trigger) | backdoor |" in md and "| secure_mini | control |" in md
