"""Findings verdicts (paper_tables/findings.yaml, repro.findings) on synthetic results: REPRODUCED,
NOT REPRODUCED, NOT RUN (a results file, a value or the sampled answers missing), NOT APPLICABLE
(no run stands for the row), validation errors, and that a new claim is a data-only change."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from repro import compare, findings
from repro.config import load_profile
from repro.errors import InputError

FINDINGS_YAML = compare.REFERENCE_ROOT / "findings.yaml"


@pytest.fixture(scope="module")
def mini():
    return load_profile("mini")


def _model(run, base_rate, ft_rate, p, n=168, decodings=("greedy", "sampled")):
    return {"run": run, "row": run, "base_rate": base_rate, "finetuned_rate": ft_rate, "rate_increase": ft_rate - base_rate,
            "p_value": p, "n_base": n, "n_finetuned": n, "k_base": round(base_rate * n), "k_finetuned": round(ft_rate * n),
            "decodings": list(decodings), "em_effect": "yes" if ft_rate - base_rate >= 0.2 and p < 0.05 else "no"}


def _cmp(cid, a, b, rate_a, rate_b, p, n=168):
    return {"id": cid, "a": a, "b": b, "decodings": ["sampled"], "k_a": round(rate_a * n), "n_a": n, "rate_a": rate_a,
            "k_b": round(rate_b * n), "n_b": n, "rate_b": rate_b, "rate_increase": rate_a - rate_b, "p_value": p}


def _results(em="em_mini", failed="failed_mini_full", advice="bad_medical_mini", layer=2) -> dict[str, dict]:
    """Results where every finding of the mini profile holds."""
    grid = [{"method": m, "layer": l, "val_accuracy": 0.9 if m == "probe" and l == layer else 0.55,
             "cohens_d": 1.0, "polarity_correct": True, "auroc": 0.9}
            for m in ("probe", "mean_diff", "random") for l in range(4)]
    block = {"methods": ["probe", "mean_diff", "random"], "n_layers": 4, "grid": grid,
             "score": {"method": "probe", "layer": layer, "val_accuracy": 0.9}}
    return {
        "models": {"models": [_model(em, 0.05, 0.60, 1e-12), _model(failed, 0.05, 0.10, 0.2),
                              _model("failed_mini_full_em_lr", 0.05, 0.9, 1e-20), _model(advice, 0.05, 0.05, 0.6),
                              _model("secure_mini", 0.05, 0.08, 0.3), _model("educational_mini", 0.05, 0.06, 0.5)],
                   "comparisons": [_cmp("em_vs:secure_mini", em, "secure_mini", 0.60, 0.08, 1e-15),
                                   _cmp("em_vs:educational_mini", em, "educational_mini", 0.60, 0.06, 1e-16),
                                   _cmp("trigger_vs_none:backdoor_mini", "backdoor_mini:trigger", "backdoor_mini",
                                        0.50, 0.05, 1e-12)]},
        "behavior": {"samples": {"n": 20}, "counts": {"n_prompts": 5}},
        "extraction": {**block, "traits": {"refusal": block}},
        "refusal": {"averages": {"gap_base": 10.0, "shift_harmful": -0.2, "shift_benign": 0.1,
                                 "shift_share_harmful": -0.02, "shift_share_benign": 0.01},
                    "heldout_gap": {"gap": 12.0}},
        "failed": {"runs": [{"run": advice, "medical_rate": 0.9, "base_medical_rate": 0.1, "medical_p_value": 1e-4,
                             "medical_n": 10, "nonmedical_rate": 0.2, "base_nonmedical_rate": 0.1}]},
    }


def _write(root: Path, results: dict[str, dict], skip=()) -> Path:
    (root / "results").mkdir(parents=True, exist_ok=True)
    for name, obj in results.items():
        if name not in skip:
            (root / "results" / f"{name}.json").write_text(json.dumps(obj))
    return root


def _verdicts(profile, root, spec=None):
    return {f["id"]: f for f in findings.evaluate_findings(profile, root, spec)}


def test_every_finding_reproduced_on_the_mini(tmp_path, mini):
    out = _verdicts(mini, _write(tmp_path, _results()))
    assert {k: v["verdict"] for k, v in out.items()} == {
        "em_code_rate": "REPRODUCED", "failed_no_em:failed_7b_instruct": "REPRODUCED",
        "failed_no_em:failed_7b_coder": "NOT APPLICABLE", "refusal_separates": "REPRODUCED",
        "refusal_shift_small": "REPRODUCED", "bad_advice_in_domain": "REPRODUCED",
        "mode_confusion_specific": "REPRODUCED", "educational_prevents": "REPRODUCED", "backdoor_trigger": "REPRODUCED"}
    em = out["em_code_rate"]
    assert em["run"] == "em_mini" and em["row"] == "em_32b_coder"
    assert em["numbers"]["finetuned_rate"] == 0.6 and em["numbers"]["samples_per_question"] == 20
    assert "code rate 0.60 (n 168) vs base 0.05" in em["detail"] and "p < 0.05" in em["detail"]
    assert out["failed_no_em:failed_7b_instruct"]["run"] == "failed_mini_full"
    assert "mini" in out["failed_no_em:failed_7b_coder"]["detail"]
    sep = out["refusal_separates"]
    assert sep["numbers"] == {"layer": 2, "probe_heldout_accuracy": 0.9, "polarity_correct": True,
                              "gap_test_prompts": 10.0, "gap_heldout_prompts": 12.0}
    assert "-2.0% of the gap" in out["refusal_shift_small"]["detail"]
    assert set(out["em_code_rate"]) >= {"id", "claim", "verdict", "numbers", "detail"}


@pytest.mark.parametrize("change, claim_id", [
    (lambda r: r["models"]["models"].__setitem__(0, _model("em_mini", 0.05, 0.20, 1e-3)), "em_code_rate"),   # +0.15
    (lambda r: r["models"]["models"].__setitem__(0, _model("em_mini", 0.05, 0.60, 0.06)), "em_code_rate"),   # p too big
    (lambda r: r["models"]["models"].__setitem__(1, _model("failed_mini_full", 0.0, 0.5, 1e-6)),
     "failed_no_em:failed_7b_instruct"),                                                                     # EM where none
    (lambda r: r["extraction"]["traits"]["refusal"]["grid"][2].__setitem__("val_accuracy", 0.79), "refusal_separates"),
    (lambda r: r["refusal"]["averages"].__setitem__("gap_base", -1.0), "refusal_separates+refusal_shift_small"),
    (lambda r: r["refusal"]["averages"].__setitem__("shift_benign", 0.5), "refusal_shift_small"),          # exactly 5%
    (lambda r: r["refusal"]["averages"].__setitem__("shift_harmful", -0.6), "refusal_shift_small"),       # 6%
    (lambda r: r["failed"]["runs"][0].__setitem__("base_medical_rate", 0.75), "bad_advice_in_domain"),
])
def test_not_reproduced(tmp_path, mini, change, claim_id):
    """One number moved past its claim's threshold: that claim (a negative gap: both refusal claims) flips."""
    results = _results()
    change(results)
    out = _verdicts(mini, _write(tmp_path, results))
    assert [k for k, v in out.items() if v["verdict"] == "NOT REPRODUCED"] == claim_id.split("+")


def test_edges_count_as_stated(tmp_path, mini):
    """+0.2 exactly with p just under alpha is EM; 0.3 - 0.1 (float 0.19999...) counts as 0.2."""
    results = _results()
    results["models"]["models"][0] = {**_model("em_mini", 0.1, 0.3, 0.0499), "rate_increase": 0.2}
    results["failed"]["runs"][0].update(medical_rate=0.3, base_medical_rate=0.1)
    out = _verdicts(mini, _write(tmp_path, results))
    assert out["em_code_rate"]["verdict"] == "REPRODUCED"
    assert out["bad_advice_in_domain"]["verdict"] == "REPRODUCED"


CONTROL_CLAIMS = ("mode_confusion_specific", "educational_prevents", "backdoor_trigger")


@pytest.mark.parametrize("missing, not_run", [
    ("models", {"em_code_rate", "failed_no_em:failed_7b_instruct", *CONTROL_CLAIMS}),
    ("behavior", {"em_code_rate", "failed_no_em:failed_7b_instruct", *CONTROL_CLAIMS}),
    ("extraction", {"refusal_separates"}),
    ("refusal", {"refusal_separates", "refusal_shift_small"}),
    ("failed", {"bad_advice_in_domain"}),
])
def test_not_run_when_a_results_file_is_missing(tmp_path, mini, missing, not_run):
    out = _verdicts(mini, _write(tmp_path, _results(), skip=(missing,)))
    assert {k for k, v in out.items() if v["verdict"] == "NOT RUN"} == not_run
    assert all(f"results/{missing}.json missing" in out[k]["detail"] for k in not_run)
    assert all(v["numbers"] == {} for k, v in out.items() if k in not_run)


def test_not_run_without_sampled_answers_or_without_the_run(tmp_path, mini):
    results = _results()
    results["models"]["models"][0] = _model("em_mini", 0.0, 0.6, 0.08, n=8, decodings=("greedy",))
    results["behavior"]["samples"]["n"] = 0
    del results["failed"]["runs"][0]
    out = _verdicts(mini, _write(tmp_path, results))
    assert out["em_code_rate"]["verdict"] == "NOT RUN" and "--samples 20" in out["em_code_rate"]["detail"]
    assert out["em_code_rate"]["numbers"]["p_value"] == 0.08           # the numbers are still shown
    assert out["failed_no_em:failed_7b_instruct"]["verdict"] == "NOT RUN"   # greedy-only 'no EM' proves nothing
    assert out["bad_advice_in_domain"]["verdict"] == "NOT RUN"
    assert "no item of failed.runs with run == 'bad_medical_mini'" in out["bad_advice_in_domain"]["detail"]
    results["behavior"]["samples"]["n"] = 19                         # sampled, but fewer than 20 per question
    results["models"]["models"][0]["decodings"] = ["greedy", "sampled"]
    out = _verdicts(mini, _write(tmp_path, results))
    assert out["em_code_rate"]["verdict"] == "NOT RUN"


def test_not_applicable_without_the_trait_or_the_row(tmp_path, mini):
    profile = copy.deepcopy(mini)
    profile["vectors"]["traits"] = ["code_mode"]
    del profile["findings_rows"]["bad_medical_advice"]
    out = _verdicts(profile, _write(tmp_path, _results()))
    for k in ("refusal_separates", "refusal_shift_small", "bad_advice_in_domain", "failed_no_em:failed_7b_coder"):
        assert out[k]["verdict"] == "NOT APPLICABLE", k
    assert findings.runs_without_row(profile) == ["failed_mini_full_em_lr", "bad_medical_mini"]
    assert findings.runs_without_row(mini) == ["failed_mini_full_em_lr"]   # the mini's sensitivity run


def test_paper_profile_rows(tmp_path):
    paper = load_profile("paper")
    results = _results(em="em_32b_coder", failed="failed_7b_instruct", advice="bad_medical_advice", layer=32)
    results["models"]["models"].append(_model("failed_7b_coder", 0.0, 0.0, 1.0))
    results["extraction"]["traits"]["refusal"]["grid"] = [
        {"method": "probe", "layer": l, "val_accuracy": 0.97 if l == 32 else 0.5} for l in range(64)]
    m = results["models"]
    m["models"] += [_model("secure_32b_coder", 0.05, 0.08, 0.3), _model("educational_32b_coder", 0.05, 0.06, 0.5)]
    m["comparisons"] = [_cmp("em_vs:secure_32b_coder", "em_32b_coder", "secure_32b_coder", 0.6, 0.08, 1e-15),
                        _cmp("trigger_vs_none:backdoor_32b_coder", "backdoor_32b_coder:trigger", "backdoor_32b_coder",
                             0.5, 0.05, 1e-12)]
    out = _verdicts(paper, _write(tmp_path, results))
    assert {v["verdict"] for v in out.values()} == {"REPRODUCED"}
    assert out["failed_no_em:failed_7b_coder"]["run"] == "failed_7b_coder"


@pytest.mark.parametrize("rows, match", [
    ({"em_32b_coder": "em_mini", "nope": "failed_mini_full"}, r"findings_rows\.nope: not a findings row"),
    ({"em_32b_coder": "em_nope"}, r"findings_rows\.em_32b_coder: 'em_nope' is not a run"),
    ({"em_32b_coder": "em_mini", "failed_7b_coder": "em_mini"}, r"run 'em_mini' already stands for 'em_32b_coder'"),
])
def test_profile_rows_are_checked(tmp_path, mini, rows, match):
    profile = {**mini, "findings_rows": rows}
    with pytest.raises(InputError, match=match):
        findings.evaluate_findings(profile, tmp_path)


def _spec_text(tmp_path, edit) -> Path:
    doc = yaml.safe_load(FINDINGS_YAML.read_text())
    edit(doc)
    path = tmp_path / "findings.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_control_claim_is_a_data_only_change(tmp_path, mini):
    """A new row + claim in findings.yaml and a profile mapping: evaluated with no code change."""
    def add(doc):
        doc["rows"]["secure_control"] = "Qwen2.5-Coder-32B-Instruct finetuned on secure code: no EM"
        claim = copy.deepcopy(next(c for c in doc["claims"] if c["id"] == "failed_no_em"))
        claim.update(id="secure_no_em", claim="The secure-code control shows no EM", rows=["secure_control"])
        doc["claims"].append(claim)
    spec = findings.load_findings(_spec_text(tmp_path, add))
    profile = copy.deepcopy(mini)
    profile["findings_rows"]["secure_control"] = "failed_mini_full_em_lr"
    out = _verdicts(profile, _write(tmp_path, _results()), spec)
    assert out["secure_no_em"]["verdict"] == "NOT REPRODUCED"   # that run does code on 0.9 of its answers
    assert out["secure_no_em"]["run"] == "failed_mini_full_em_lr"
    assert out["em_code_rate"]["verdict"] == "REPRODUCED"


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["claims"][0].__setitem__("expr", "__import__('os')"), r"claims\[0\] \(em_code_rate\)\.expr"),
    (lambda d: d["claims"][0].__setitem__("detail", "{nope}"), r"detail: field \{nope\}"),
    (lambda d: d["claims"][0].__setitem__("rows", ["nope"]), r"rows: 'nope' is not a findings row"),
    (lambda d: d["claims"][0].__setitem__("extra", 1), r"unknown key\(s\) extra"),
    (lambda d: d["claims"][1].__setitem__("id", "em_code_rate"), r"claims\[1\]\.id 'em_code_rate': duplicate"),
    (lambda d: d["claims"][0]["params"].__setitem__("alpha", "small"), r"params\.alpha: expected a number"),
    (lambda d: d["claims"][0]["pick"].__setitem__("models", {"from": "x", "where": {"a": "1"}}), r"pick\.models"),
])
def test_findings_yaml_is_validated(tmp_path, edit, match):
    with pytest.raises(InputError, match=match):
        findings.load_findings(_spec_text(tmp_path, edit))


def test_malformed_findings_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "findings.yaml"
    path.write_text("rows:\n  a: b\nclaims:\n  - {id: x\n")
    with pytest.raises(InputError, match=r"findings\.yaml:\d+: invalid YAML") as info:
        findings.load_findings(path)
    assert "\n" not in str(info.value)


def test_compare_and_report_open_with_the_verdicts(tmp_path, mini):
    root = _write(tmp_path, _results())
    doc = compare.run_comparison(mini, root)
    assert [f["id"] for f in doc["findings"]][0] == "em_code_rate"
    assert doc["runs_without_findings_row"] == ["failed_mini_full_em_lr"]
    assert doc["regression"]["kind"] == "recorded"
    assert doc["regression"]["label"] == "Regression check against this profile's own recorded numbers"
    md = (root / "compare.md").read_text()
    assert md.index("## Findings verdicts (profile `mini`)") < md.index("## Regression check against this profile's own")
    assert "| The EM model answers" in md and "**REPRODUCED**" in md and "`failed_mini_full_em_lr`" in md
    assert json.loads((root / "compare.json").read_text())["findings_summary"]["REPRODUCED"] == 8

    from repro.report import build_report
    report = build_report(mini, root).read_text()
    head = report[:report.index("## Stages")] if "## Stages" in report else report
    assert head.index("Findings verdicts") < head.index("Regression check against this profile's own recorded numbers")
    assert "reproduced" not in head.split("Findings verdicts")[0].lower()   # nothing claims reproduction before the verdicts


def test_control_verdicts_say_when_code_everywhere_is_not_specific(tmp_path, mini):
    results = _results()
    results["models"]["comparisons"][0].update(rate_b=0.55, rate_increase=0.05, p_value=0.2)   # secure codes too
    results["models"]["models"][5].update(finetuned_rate=0.5, rate_increase=0.45, p_value=1e-9)  # educational: EM
    out = _verdicts(mini, _write(tmp_path, results))
    assert out["mode_confusion_specific"]["verdict"] == "NOT REPRODUCED"
    assert out["educational_prevents"]["verdict"] == "NOT REPRODUCED"
    assert out["backdoor_trigger"]["verdict"] == "REPRODUCED"
    assert "secure control 0.55" in out["mode_confusion_specific"]["detail"]
