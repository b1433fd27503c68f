"""The profile keys that make a profile cheaper without changing what it measures
(behavior.sampled_questions, behavior.sampled_max_new_tokens, activations.extraction_prompts):
typed, checked at load time, absent unless given (so mini/paper keep their values and cache keys)."""

from __future__ import annotations

import pytest

from repro.config import ProfileError, load_profile


def _write(tmp_path, extra: str) -> str:
    path = tmp_path / "lean.yaml"
    path.write_text(f"extends: test\nname: lean\n{extra}")
    return str(path)


@pytest.mark.parametrize("extra, expected", [
    ("behavior:\n  sampled_questions: [no_such_question]\n",
     r"behavior.sampled_questions: 'no_such_question' is not in behavior.all_questions"),
    ("behavior:\n  sampled_questions: []\n", r"behavior.sampled_questions: List should have at least 1 item"),
    ("behavior:\n  sampled_max_new_tokens: 0\n", r"behavior.sampled_max_new_tokens: Input should be greater than 0"),
    ("activations:\n  extraction_prompts: 2\n", r"activations.extraction_prompts: Input should be greater than or equal to 3"),
])
def test_bad_cost_values_fail_at_load_time(tmp_path, extra, expected):
    with pytest.raises(ProfileError, match=expected):
        load_profile(_write(tmp_path, extra))


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
