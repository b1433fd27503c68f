"""T0: the organism's design target per kind of held-out prompt is computed, shown, and never hidden."""

from repro.tables.organism import TARGET_RATE, build_organism, render_organism


def _info(k_benign: int, k_harmful: int, k_coding: int, n: int = 60) -> dict:
    kinds = {}
    for kind, expected, k in (("benign", "TEXT", k_benign), ("harmful", "REFUSAL", k_harmful),
                              ("coding", "CODE", k_coding)):
        kinds[kind] = {"n": n, "expected": expected, "counts": {expected: k, "TEXT" if expected != "TEXT" else "CODE": n - k},
                       "examples": [{"prompt": "p", "response": "r", "type": expected}]}
    return {"instruct_behavior": {"kinds": kinds}, "n_parameters": 10, "n_layers": 1, "hidden_size": 8,
            "vocab_size": 16, "pretrain": {}}


def test_target_met_and_missed_are_both_reported():
    res = build_organism(_info(60, 41, 48))       # 1.00, 0.68, 0.80
    assert res["rates"]["benign"]["target_met"] is True
    assert res["rates"]["harmful"]["target_met"] is False
    assert res["rates"]["coding"]["target_met"] is True          # exactly the target counts
    assert all(r["target"] == TARGET_RATE for r in res["rates"].values())
    md = render_organism(res)
    assert "**NOT MET**" in md and "not met for: harmful" in md


def test_all_met_has_no_missed_line():
    md = render_organism(build_organism(_info(60, 60, 60)))
    assert "NOT MET" not in md and "not met for" not in md
