import pytest

from repro.config import available_profiles, config_hash, deep_merge, load_profile
from repro.errors import InputError
from repro.pipeline import build_graph


def test_profiles_load_and_share_keys():
    assert {"mini", "paper", "test"} <= set(available_profiles())
    paper, mini = load_profile("paper"), load_profile("mini")
    # the two profiles differ in values, not in structure
    assert set(paper) - {"organism"} == set(mini) - {"organism"}
    assert set(paper["behavior"]) == set(mini["behavior"])
    assert set(paper["recipes"]["em_lora"]) == set(mini["recipes"]["em_lora"])


def test_test_profile_extends_mini():
    test, mini = load_profile("test"), load_profile("mini")
    assert test["name"] == "test" and test["recipes"] == mini["recipes"]
    assert test["organism"]["model"]["hidden_size"] < mini["organism"]["model"]["hidden_size"]


def test_unknown_profile_and_bad_yaml(tmp_path):
    with pytest.raises(InputError, match="unknown"):
        load_profile("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(InputError, match=r"bad.yaml:\d+: invalid YAML"):
        load_profile(str(bad))
    missing = tmp_path / "missing.yaml"
    missing.write_text("name: x\nseed: 0\n")
    with pytest.raises(InputError, match=r"missing.yaml: data: missing \(required\)"):
        load_profile(str(missing))


def test_deep_merge_and_hash_stability():
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}
    assert config_hash({"x": 1, "y": [1, 2]}) == config_hash({"y": [1, 2], "x": 1})


def test_graph_paper_and_mini_have_same_stage_kinds():
    def kinds(profile):
        return {name.split("/")[0] for name in build_graph(load_profile(profile))}

    assert kinds("paper") | {"organism"} == kinds("mini")
    paper = build_graph(load_profile("paper"))
    assert "train/bad_medical_advice" not in paper  # pre-finetuned model: evaluated only
    assert "train/em_32b_coder" in paper
    with_override = build_graph(load_profile("paper"), {"em_model": "someone/em-model"})
    assert "train/em_32b_coder" not in with_override
