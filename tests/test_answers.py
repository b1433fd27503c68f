"""The answers stage: one answer set per (model, prompt set, decoding), generated once with the
profile's backend and read back by behaviour, activations and dynamics (the end-to-end proof that
T3, T7 and T8 quote one answer set is in tests/test_pipeline_e2e.py)."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import fake_vllm
import pytest

from repro.config import load_profile, repo_path
from repro.errors import InputError, ReproError
from repro.generate import format_prompt
from repro.io import write_json
from repro.models import load_tokenizer
from repro.pipeline import build_graph
from repro.prompts import load_prompt_sets
from repro.runner import StageContext
from repro.stages import answers
from repro.traits import profile_traits

PROFILE = load_profile("test")


@pytest.fixture(scope="module")
def prompts() -> dict:
    return load_prompt_sets(repo_path(PROFILE["data"]["prompts_dir"]))


def test_answer_sets_per_model_role_and_decoding(prompts):
    b, a = PROFILE["behavior"], PROFILE["activations"]
    source = answers.answer_sets(PROFILE, prompts, "mini_base", "source", 3)
    traits = profile_traits(PROFILE)
    extraction = [k for t in traits.values() for k in (t["pos"], t["neg"])]
    assert list(source) == ["behavior", "behavior_sampled", *extraction,
                            "refusal_test_harmful", "refusal_test_benign", "em_questions"]
    beh = source["behavior"]
    assert (beh["decoding"], beh["chat_template"], beh["max_new_tokens"]) == ("greedy", True, b["max_new_tokens"])
    assert [g[1] for g in beh["groups"] if g[0] == "em_questions"] == b["all_questions"]
    smp = source["behavior_sampled"]
    assert (smp["samples"], smp["temperature"], smp["top_p"]) == (3, b["temperature"], 1.0)
    assert {g[0] for g in smp["groups"]} == {"em_questions"}
    for name in extraction:   # the profile's prompt format, the elicitation length
        spec = source[name]
        assert spec["chat_template"] == (a["prompt_format"] == "chat") and spec["max_new_tokens"] == a["elicitation_max_new_tokens"]
        assert [g[2] for g in spec["groups"]] == prompts[name]
    assert source["refusal_test_harmful"]["chat_template"] is True
    # the EM questions' test set is a view of the behaviour answers: never generated twice
    assert source["em_questions"] == {"view_of": "behavior", "group": "em_questions", "prompt_ids": b["questions"]}
    raw = copy.deepcopy(PROFILE)
    raw["activations"]["prompt_format"] = "raw"
    assert answers.answer_sets(raw, prompts, "mini_base", "source", 0)["refusal_harmful"]["chat_template"] is False
    scored = answers.answer_sets(PROFILE, prompts, "em_mini", "scored", 0)
    assert list(scored) == ["behavior", "refusal_test_harmful", "refusal_test_benign", "em_questions"]
    # a backdoor run also answers the EM questions with its trigger in front, greedy and sampled
    backdoor = answers.answer_sets(PROFILE, prompts, "backdoor_mini", None, 2)
    assert list(backdoor) == ["behavior", "behavior_sampled"]
    trig = [g for g in backdoor["behavior_sampled"]["groups"] if g[0] == answers.TRIGGERED_GROUP]
    trigger = next(r["trigger"] for r in PROFILE["runs"] if r["name"] == "backdoor_mini")
    assert len(trig) == len(b["all_questions"]) and all(t.startswith(trigger + " ") for _, _, t in trig)


def test_graph_generates_only_in_answers_stages():
    g = build_graph(PROFILE)
    labels = [r["base"] for r in PROFILE["runs"][:1]] + [r["name"] for r in PROFILE["runs"]]
    for label in dict.fromkeys(labels):
        assert f"answers/{label}" in g[f"behavior/{label}"].deps and not g[f"behavior/{label}"].needs_model
    assert "answers/mini_base" in g["activations/mini_base"].deps and "answers/em_mini" in g["activations/em_mini"].deps
    assert "answers/em_mini" in g["dynamics"].deps
    assert g["answers/mini_base"].fingerprint["role"] == "source" and g["answers/em_mini"].fingerprint["role"] == "scored"
    # the T1 criterion is read by the tables only: changing it regenerates no answer
    other = copy.deepcopy(PROFILE)
    other["behavior"]["em_criterion"]["alpha"] = 0.01
    assert build_graph(other)["answers/em_mini"].fingerprint == g["answers/em_mini"].fingerprint
    # the classifier is not part of the answers' code key: editing it regenerates nothing
    from repro.cachekey import module_closure

    assert "repro.classify" not in module_closure("repro.stages.answers")
    assert "repro.classify" in module_closure("repro.stages.behavior")
    # the stages that read answers never import a generation entry point
    banned = {"generate", "generate_responses", "natural_elicitation", "open_generator", "generate_responses_vllm"}
    for module in ("behavior", "activations", "dynamics"):
        tree = ast.parse((repo_path("repro/stages") / f"{module}.py").read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | \
                {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert not names & banned, (module, names & banned)


def _ctx(tmp_path: Path, profile: dict, prompts: dict) -> StageContext:
    write_json(tmp_path / "data" / "prompts.json", prompts)
    out = tmp_path / "answers" / "em_mini"
    out.mkdir(parents=True)
    return StageContext(profile=profile, root=tmp_path, out=out, options={"progress": False})


def test_answers_stage_with_the_vllm_backend(tmp_path, tiny_model_dir, prompts, monkeypatch):
    """behavior.backend vllm: one engine, the EM run's LoRA adapter through LoRARequest, the same
    chat-formatted prompts, decoding and per-prompt seeds as HF; behaviour reads the stored rows."""
    tok = load_tokenizer(str(tiny_model_dir))
    rec = fake_vllm.install(monkeypatch, tok)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 32}))
    profile = copy.deepcopy(PROFILE)
    profile["behavior"]["backend"] = "vllm"
    ref = {"label": "em_mini", "path": str(tiny_model_dir), "adapter": str(adapter)}
    monkeypatch.setattr(answers, "model_ref", lambda ctx, label: ref)
    monkeypatch.setattr("repro.models.load_model", lambda *a, **k: pytest.fail("the vllm backend loaded an HF model"))
    ctx = _ctx(tmp_path, profile, prompts)
    answers.run(ctx, "em_mini", "scored")

    b = profile["behavior"]
    assert len(rec.llm) == 1 and rec.llm[0]["enable_lora"] and rec.llm[0]["max_lora_rank"] == 32
    assert rec.lora == [("adapter", 1, str(adapter))]
    assert all(c["lora_request"].args == ("adapter", 1, str(adapter)) for c in rec.calls)
    index = json.loads((ctx.out / "answers.json").read_text())
    assert index["backend"] == "vllm" and list(index["sets"]) == ["behavior", "behavior_sampled", "refusal_test_harmful",
                                                                  "refusal_test_benign", "em_questions"]
    assert len(rec.calls) == 4   # behaviour greedy, sampled, two refusal test sets; the EM questions' set is a view
    sets = answers.answer_sets(profile, prompts, "em_mini", "scored", b["samples"])
    for call, name in zip(rec.calls, ["behavior", "behavior_sampled", "refusal_test_harmful", "refusal_test_benign"]):
        spec = sets[name]
        texts = list(dict.fromkeys(g[2] for g in spec["groups"]))   # a repeated prompt is asked once
        assert [p["prompt_token_ids"] for p in call["prompts"]] == \
            [tok(format_prompt(tok, t), add_special_tokens=False).input_ids for t in texts]
        for i, sp in enumerate(call["params"]):
            assert sp.kwargs["seed"] == profile["seed"] + i and sp.kwargs["max_tokens"] == spec["max_new_tokens"]
            assert sp.kwargs["n"] == spec.get("samples", 1)
            assert sp.kwargs["temperature"] == (b["temperature"] if name == "behavior_sampled" else 0.0)
    assert rec.calls[2]["params"][0].kwargs["max_tokens"] == profile["activations"]["elicitation_max_new_tokens"]

    # the rows the consumers read: a view gives the behaviour set's EM answers, in behavior.questions order
    view, info = answers.read_answers(ctx.out, "em_questions")
    assert [r["prompt_id"] for r in view] == b["questions"] and info["max_new_tokens"] == b["max_new_tokens"]
    assert view == answers.em_answers(ctx.out, b["questions"])
    behavior_rows, _ = answers.read_answers(ctx.out, "behavior")
    seeds = {t: i for i, t in enumerate(dict.fromkeys(g[2] for g in sets["behavior"]["groups"]))}
    for r in behavior_rows:
        assert (r["response"], r["n_tokens"], r["finish_reason"]) == \
            fake_vllm.expected_answer(tok, seeds[r["prompt"]], 0, b["max_new_tokens"])

    # behaviour classifies exactly these rows, and refuses answers to other prompts than the data's
    from repro.stages import behavior

    out = tmp_path / "behavior" / "em_mini"
    out.mkdir(parents=True)
    bctx = StageContext(profile=profile, root=tmp_path, out=out, options={})
    behavior.run(bctx, "em_mini")
    rows = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    assert [r["response"] for r in rows if r["decoding"] == "greedy"] == [r["response"] for r in behavior_rows]
    assert sum(r["decoding"] == "sampled" for r in rows) == b["samples"] * len(b["all_questions"])
    assert json.loads((out / "model.json").read_text())["backend"] == "vllm"
    changed = copy.deepcopy(prompts)
    changed["eval_questions"][b["questions"][0]] += " (edited)"
    write_json(tmp_path / "data" / "prompts.json", changed)
    with pytest.raises(ReproError, match="is for another prompt"):
        behavior.run(bctx, "em_mini")


def test_answers_stage_without_vllm_is_one_line_error(tmp_path, tiny_model_dir, prompts, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "vllm", None)
    profile = copy.deepcopy(PROFILE)
    profile["behavior"]["backend"] = "vllm"
    monkeypatch.setattr(answers, "model_ref", lambda ctx, label: {"label": label, "path": str(tiny_model_dir),
                                                                   "adapter": None})
    with pytest.raises(ReproError) as exc:
        answers.run(_ctx(tmp_path, profile, prompts), "em_mini", "scored")
    assert "\n" not in str(exc.value) and "behavior.backend: hf" in str(exc.value)


def test_plan_names_each_answer_stage_backend(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from repro.commands import plan as plan_cmd
    from repro.plan import build_plan

    paper = load_profile("paper")
    gen = {g["stage"]: g for g in build_plan(paper)["generation"]}
    assert gen["answers/em_32b_coder"]["backend"] == paper["behavior"]["backend"]
    assert gen["activations/em_32b_coder"]["backend"] == gen["dynamics"]["backend"] == "none"
    vllm = copy.deepcopy(paper)
    vllm["behavior"]["backend"] = "vllm"
    plan = build_plan(vllm)
    lines = plan_cmd.generation_lines(plan["generation"])
    assert lines[0].startswith("answers/") and "backend vllm" in lines[0] and "LoRARequest" in lines[0]
    assert "activations/" in lines[1] and "no generation" in lines[1]
    assert "token for token" in lines[-1]
    answers_est = [s for s in plan["stages"] if s["stage"] == "answers"]
    assert answers_est and all(s["backend"] == "vllm" for s in answers_est)
    monkeypatch.setattr(plan_cmd, "free_disk_gb", lambda path: 1000.0)
    res = CliRunner().invoke(plan_cmd.plan_cmd, ["--profile", "paper", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert f"generate with backend {paper['behavior']['backend']}" in res.output and "no generation" in res.output


def test_sampled_questions_tokens_and_extraction_prompts_are_profile_values(prompts):
    """smol's cost levers: sampled answers on a subset of the EM questions, at their own length, and
    the first N prompts of each extraction set; unset, every answer set is as before."""
    b = PROFILE["behavior"]
    before = answers.answer_sets(PROFILE, prompts, "backdoor_mini", None, 2)
    lean = copy.deepcopy(PROFILE)
    chosen = b["all_questions"][1:3]
    lean["behavior"].update(sampled_questions=chosen, sampled_max_new_tokens=5)
    lean["activations"]["extraction_prompts"] = 4
    after = answers.answer_sets(lean, prompts, "backdoor_mini", None, 2)
    smp = after["behavior_sampled"]
    assert smp["max_new_tokens"] == 5 and after["behavior"] == before["behavior"]   # greedy: untouched
    # plain and triggered: only the chosen questions, in the profile's question order
    for group in answers.EM_GROUPS:
        assert [g[1] for g in smp["groups"] if g[0] == group] == chosen
    assert before["behavior_sampled"]["max_new_tokens"] == b["max_new_tokens"]
    assert len(before["behavior_sampled"]["groups"]) == 2 * len(b["all_questions"])
    source_before = answers.answer_sets(PROFILE, prompts, "mini_base", "source", 0)
    source = answers.answer_sets(lean, prompts, "mini_base", "source", 0)
    for trait in profile_traits(PROFILE).values():
        for name in (trait["pos"], trait["neg"]):
            assert [g[2] for g in source[name]["groups"]] == prompts[name][:4]
            assert [g[2] for g in source_before[name]["groups"]] == prompts[name]
    assert source["refusal_test_harmful"] == source_before["refusal_test_harmful"]   # test sets stay whole
    bad = copy.deepcopy(lean)
    bad["behavior"]["sampled_questions"] = ["no_such_question"]
    with pytest.raises(InputError, match="behavior.sampled_questions"):
        answers.answer_sets(bad, prompts, "mini_base", None, 2)
    bad = copy.deepcopy(lean)
    bad["activations"]["extraction_prompts"] = 2
    with pytest.raises(InputError, match="activations.extraction_prompts"):
        answers.answer_sets(bad, prompts, "mini_base", "source", 0)


def test_extraction_prompts_keys_the_answers_stage_only_when_set():
    """Profiles without activations.extraction_prompts keep their answers stage's cache key."""
    g = build_graph(PROFILE)
    assert "extraction_prompts" not in g["answers/mini_base"].fingerprint["elicitation"]
    lean = copy.deepcopy(PROFILE)
    lean["activations"]["extraction_prompts"] = 4
    g2 = build_graph(lean)
    assert g2["answers/mini_base"].fingerprint["elicitation"]["extraction_prompts"] == 4
    assert g2["answers/mini_base"].fingerprint != g["answers/mini_base"].fingerprint
    assert g2["activations/mini_base"].fingerprint != g["activations/mini_base"].fingerprint
