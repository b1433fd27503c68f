"""The typed profile schema: a typo or a bad value is an error at load time, never a silent change."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from repro.config import ProfileError, load_profile, profile_problems


def _write(tmp_path, extra: str, name: str = "bad") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"extends: test\nname: {name}\n{extra}")
    return str(path)


@pytest.mark.parametrize("extra, expected", [
    ("recipes:\n  em_lora:\n    use_rsloa: true\n", r"recipes.em_lora.use_rsloa: unknown key; did you mean 'use_rslora'\?"),
    ("vectors:\n  score_layr: 2\n", r"vectors.score_layr: unknown key; did you mean 'score_layer'\?"),
    ("behaviour:\n  max_new_tokens: 3\n", r"behaviour: unknown key; did you mean 'behavior'\?"),
    ("vectors:\n  score_layer: 99\n", r"vectors.score_layer: 99 is outside the model's blocks 0..1"),
    ("vectors:\n  methods: [probe, pca]\n", r"vectors.methods\[1\]: Input should be 'probe'"),
    ("recipes:\n  em_lora:\n    learning_rate: -1.0e-3\n", r"recipes.em_lora.learning_rate: Input should be greater than 0"),
    ("behavior:\n  backend: vlm\n", r"behavior.backend: Input should be 'hf' or 'vllm'"),
    ("recipes:\n  failed_full:\n    r: 8\n", r"recipes.failed_full.r: unknown key"),
    ("vectors:\n  traits: [refusal, honesty]\n", r"vectors.traits\[1\]: .*honesty.yaml: trait file not found"),    # the cost keys (behavior.sampled_*, activations.extraction_prompts; tests/test_cost_keys.py)
    ("behavior:\n  sampled_questions: [no_such_question]\n",
     r"behavior.sampled_questions: 'no_such_question' is not in behavior.all_questions"),
    ("behavior:\n  sampled_questions: []\n", r"behavior.sampled_questions: List should have at least 1 item"),
    ("behavior:\n  sampled_max_new_tokens: 0\n", r"behavior.sampled_max_new_tokens: Input should be greater than 0"),
    ("activations:\n  extraction_prompts: 2\n", r"activations.extraction_prompts: Input should be greater than or equal to 3"),
])
def test_bad_values_fail_at_load_time(tmp_path, extra, expected):
    with pytest.raises(ProfileError, match=expected):
        load_profile(_write(tmp_path, extra))


def test_every_problem_is_listed_at_once(tmp_path):
    path = _write(tmp_path, "recipes:\n  em_lora:\n    use_rsloa: true\nvectors:\n  score_layr: 2\nbehaviour: {}\n")
    _, problems, profile = profile_problems(path)
    assert profile is None and len(problems) == 3
    # and `repro plan` prints them all, one per line, exit 2, nothing run
    from repro.cli import cli, _register_optional_commands

    _register_optional_commands()
    res = CliRunner().invoke(cli, ["--profile", path, "plan"])
    assert res.exit_code == 2, res.output
    for key in ("use_rsloa", "score_layr", "behaviour"):
        assert key in res.output
    assert "Traceback" not in res.output


def test_graph_level_checks(tmp_path):
    runs = yaml.safe_load(open(load_profile("test")["profile_file"]).read()) or {}
    extra = ("runs:\n"
             "  - {name: em_mini, role: em, base: mini_base, recipe: em_lora, dataset: insecure}\n"
             "  - {name: em_mini, role: failed, base: mini_base, recipe: nope, dataset: insecure}\n"
             "  - {name: x, role: failed, base: nobody, recipe: em_lora, dataset: unheard_of}\n")
    _, problems, _ = profile_problems(_write(tmp_path, extra))
    text = "\n".join(problems)
    assert "run name 'em_mini' is used more than once" in text
    assert "recipe: 'nope' is not a key of recipes" in text
    assert "base: 'nobody' is not a key of models" in text
    assert "dataset: 'unheard_of' is not a dataset the package writes" in text
    assert runs is not None


@pytest.mark.parametrize("bad", ["../../VICTIM", "a/b", "..", ".hidden", ""])
def test_names_that_become_paths_are_plain(tmp_path, bad):
    extra = f"runs:\n  - {{name: '{bad}', role: em, base: mini_base, recipe: em_lora, dataset: insecure}}\n"
    with pytest.raises(ProfileError, match=r"runs\[0\]\.name: expected a plain name"):
        load_profile(_write(tmp_path, extra))
    with pytest.raises(ProfileError, match="name: expected a plain name"):
        load_profile(_write(tmp_path, "", name="ok") .replace("ok.yaml", "ok.yaml")) if False else \
            load_profile(_write_named(tmp_path, bad))


def _write_named(tmp_path, bad):
    path = tmp_path / "named.yaml"
    path.write_text(f"extends: test\nname: '{bad}'\n")
    return str(path)


def test_defaults_live_in_the_schema():
    p = load_profile("test")
    assert p["recipes"]["failed_full"]["warmup_steps"] == 0       # schema default, not a .get fallback
    assert p["activations"]["pooling"] == "mean_all"
    assert p["vectors"]["ica_select"] == "first"


def test_a_trait_is_one_data_file(tmp_path):
    import shutil

    from repro.config import REPO_ROOT
    from repro.pipeline import build_graph

    traits = tmp_path / "traits"
    shutil.copytree(REPO_ROOT / "data" / "traits", traits)
    (traits / "refusal_again.yaml").write_text(
        "pos: refusal_harmful\nneg: refusal_benign\nscore_method: mean_diff\n"
        "test:\n  - {class: harmful, set: refusal_test_harmful, prompts: refusal_test.harmful}\n")
    (traits / "broken.yaml").write_text("pos: no_such_set\nneg: refusal_benign\ntest: []\n")
    good = _write(tmp_path, f"data:\n  traits_dir: {traits}\nvectors:\n  traits: [refusal, refusal_again]\n", "good")
    graph = build_graph(load_profile(good))
    assert {"vectors/refusal_again", "score/refusal_again"} <= set(graph)
    bad = _write(tmp_path, f"data:\n  traits_dir: {traits}\nvectors:\n  traits: [broken]\n", "bad2")
    with pytest.raises(ProfileError, match=r"vectors.traits\[0\]: .*broken.yaml: test: List should have at least 1 item"):
        load_profile(bad)
