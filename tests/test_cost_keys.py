"""The profile keys that make a profile cheaper without changing what it measures
(behavior.sampled_questions, behavior.sampled_max_new_tokens, activations.extraction_prompts):
absent unless given (so mini/paper keep their values and cache keys). Bad values are refused at
load time: tests/test_schema.py::test_bad_values_fail_at_load_time."""

from __future__ import annotations

from test_schema import _write  # the same profile writer (an `extends: test` profile in tmp_path)

from repro.config import load_profile


def test_cost_keys_are_absent_unless_given(tmp_path):
    for name in ("mini", "test", "paper"):
        p = load_profile(name)
        assert not {"sampled_questions", "sampled_max_new_tokens"} & set(p["behavior"]), name
        assert "extraction_prompts" not in p["activations"], name
    test = load_profile("test")
    q = test["behavior"]["all_questions"][:1]
    lean = load_profile(_write(tmp_path, f"behavior:\n  sampled_questions: {q}\n  sampled_max_new_tokens: 7\n"
                                         "activations:\n  extraction_prompts: 5\n"))
    assert (lean["behavior"]["sampled_questions"], lean["behavior"]["sampled_max_new_tokens"]) == (q, 7)
    assert lean["activations"]["extraction_prompts"] == 5


def test_smol_samples_the_findings_questions():
    """smol's sampled answers are the findings' five questions (T1 and T3 rate the same answers),
    still >= 20 samples each (the findings verdicts' requirement)."""
    b = load_profile("smol")["behavior"]
    assert b["sampled_questions"] == b["questions"] and len(b["questions"]) == 5 and b["samples"] >= 20
