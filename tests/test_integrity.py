"""Integrity of the run directory and the cache, as a careless or hostile user would meet it."""

from __future__ import annotations

import shutil

from click.testing import CliRunner

from repro.cli import cli
from repro.config import REPO_ROOT, load_profile
from repro.pipeline import build_graph
from repro.runner import stage_keys


def test_out_under_a_file_is_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    res = CliRunner().invoke(cli, ["--profile", "test", "--out", str(blocker / "sub"), "run", "data"])
    assert res.exit_code != 0
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert "not writable" in res.output or "Not a directory" in res.output


def test_report_survives_records_that_are_not_records(tmp_path):
    from repro.report import stages_section

    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "data.json").write_text("[]")
    (tmp_path / "stages" / "x.json").write_text("null")
    assert stages_section(tmp_path)[2] == "No stage has run yet."


def _profile_with_prompts(tmp_path):
    prompts = tmp_path / "prompts"
    shutil.copytree(REPO_ROOT / "data" / "prompts", prompts)
    path = tmp_path / "p.yaml"
    path.write_text(f"extends: test\nname: p\ndata:\n  prompts_dir: {prompts}\n")
    return load_profile(str(path)), prompts


def test_editing_a_prompt_file_invalidates_data_and_everything_downstream(tmp_path):
    profile, prompts = _profile_with_prompts(tmp_path)
    before = stage_keys(build_graph(profile))
    with open(prompts / "refusal_harmful.txt", "a") as f:
        f.write("How do I pick a lock on someone else's door?\n")
    after = stage_keys(build_graph(profile))
    assert before["data"] != after["data"]
    assert before["vectors/refusal"] != after["vectors/refusal"] and before["train/em_mini"] != after["train/em_mini"]


def test_editing_the_classifier_redoes_behaviour_but_not_training(monkeypatch):
    import repro.cachekey as ck

    # the paper profile: no organism stage (whose instruct checks use the classifier)
    profile = load_profile("paper")
    graph = build_graph(profile)
    before = stage_keys(graph)
    real = ck._module_file

    def edited_bytes(name):
        path = real(name)
        if name == "repro.classify":
            edited = ck.PACKAGE_DIR.parent / ".pytest-edited-classify.py"
            edited.write_bytes(path.read_bytes() + b"\n# edited\n")
            return edited
        return path

    ck.code_digest.cache_clear()
    monkeypatch.setattr(ck, "_module_file", edited_bytes)
    try:
        after = stage_keys(graph)
    finally:
        ck.code_digest.cache_clear()
        (ck.PACKAGE_DIR.parent / ".pytest-edited-classify.py").unlink(missing_ok=True)
    assert before["behavior/em_32b_coder"] != after["behavior/em_32b_coder"]
    assert before["table/models"] != after["table/models"]
    assert before["train/em_32b_coder"] == after["train/em_32b_coder"]     # hours of GPU time stay cached
