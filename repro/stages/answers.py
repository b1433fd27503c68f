"""answers/<model>: every answer a model gives, generated once; behavior, activations and dynamics read them.

One answer set per (model, prompt set, decoding), each a file of this stage's directory, listed
with its decoding in answers.json:

  behavior          greedy, chat template, behavior.max_new_tokens. The behaviour groups:
                    em_questions (behavior.all_questions), medical, nonmedical, and for a backdoor
                    run (a `trigger`) em_questions_triggered, the EM questions with the trigger in
                    front of the user turn.
  behavior_sampled  behavior.samples answers (`--samples N` overrides) to every prompt of both EM
                    groups at behavior.temperature, top_p 1, no top-k; prompt i of the set is
                    seeded seed + i (repro.generate). Only the questions behavior.sampled_questions
                    names, when given (default: every EM question), and at most
                    behavior.sampled_max_new_tokens new tokens (default behavior.max_new_tokens).
  <pos>, <neg>      the vector-source model (the EM run's base) only: each trait's extraction
                    sets, greedy, activations.prompt_format (raw or chat) and
                    activations.elicitation_max_new_tokens (natural elicitation, FACTS.md); the
                    first activations.extraction_prompts prompts of each set when given (default all).
  <test set>        the vector-source model and every scored run (the EM run, each control and
                    backdoor run: pipeline.scored_models): each trait's test sets, greedy, chat
                    template, activations.elicitation_max_new_tokens, like the extraction
                    answers whose held-out gap they are measured against.
  <test set>__triggered
                    a backdoor run only: the same test prompts with its trigger in front of the
                    user turn (repro.mini.em_tasks.triggered, as the backdoor data has it); the EM
                    questions' set is a view of the behaviour set's em_questions_triggered rows.

The EM questions are answered once. A test set drawn from them (`eval_questions.behavior`, the
code-mode trait's) is not generated again: it is a view of the `behavior` set's em_questions rows
(answers.json: view_of). So the greedy EM answers that T3 (behaviour), T7 (code mode, through the
activations it scores) and T8 (dynamics) quote are one artifact with one decoding:
behavior.max_new_tokens.

Backend: behavior.backend, `hf` (transformers generate) or `vllm` (GPU image only, imported when
first used; LoRA adapters through its LoRA request API). Both get the same prompts, chat template,
decoding settings and per-prompt seeds; their answers need not match token for token (other
kernels, batching and sampler). answers.json records the backend.

Rows: {group, prompt_id, decoding, prompt, sample, response, n_tokens, finish_reason}
(repro.generate's rows; an extraction or test set's group is its set name, prompt_id
`<set>_<index>`). Answers are only text here: nothing is executed.
"""

from __future__ import annotations

from pathlib import Path

from ..config import get_run
from ..errors import InputError, ReproError
from ..generate import open_generator
from ..io import read_json, read_jsonl, write_json, write_jsonl
from ..mini.em_tasks import triggered
from ..pipeline import activation_roles
from ..runner import StageContext
from ..traits import profile_traits, resolve_prompts
from .common import data_file, dtype, model_ref

TRIGGERED_GROUP = "em_questions_triggered"
EM_GROUPS = ("em_questions", TRIGGERED_GROUP)
BEHAVIOR, SAMPLED = "behavior", "behavior_sampled"
TRIGGERED_SUFFIX = "__triggered"         # <test set>__triggered: a backdoor run's test set with its trigger
EM_VIEW_SOURCE = "eval_questions.behavior"   # a trait test set of the EM questions: a view, never regenerated
INDEX = "answers.json"


def prompt_groups(prompts: dict, behavior_cfg: dict) -> list[tuple[str, str, str]]:
    """(group, prompt_id, text) for every behaviour prompt a model is asked, in a fixed order."""
    questions = prompts["eval_questions"]
    out = [("em_questions", qid, questions[qid]) for qid in behavior_cfg["all_questions"]]
    for group in ("medical", "nonmedical"):
        out += [(group, f"{group}_{i:02d}", text) for i, text in enumerate(prompts["medical_eval"][group])]
    return out


def triggered_groups(groups: list[tuple[str, str, str]], trigger: str) -> list[tuple[str, str, str]]:
    """The EM questions again with the backdoor trigger in front (as the backdoor data has it)."""
    return [(TRIGGERED_GROUP, qid, triggered(text, trigger)) for group, qid, text in groups if group == "em_questions"]


def model_trigger(profile: dict, label: str) -> str | None:
    return None if label in profile["models"] else get_run(profile, label).get("trigger")


def activation_role(profile: dict, label: str) -> str | None:
    """"source" (the EM run's base: vectors are extracted from it), "scored" (the EM run, every
    control and backdoor run) or None."""
    return activation_roles(profile).get(label)


def triggered_set(name: str) -> str:
    """The name of a test set's variant with the backdoor trigger in front of the user turn."""
    return f"{name}{TRIGGERED_SUFFIX}"


def sample_count(profile: dict, options: dict) -> int:
    samples = int(options.get("samples", profile["behavior"].get("samples", 0)) or 0)
    if samples < 0:
        raise InputError(f"profile {profile.get('name')!r}: behavior.samples: expected an integer >= 0, got {samples}")
    return samples


def activation_sets(prompts: dict, traits: dict, role: str | None, profile: dict,
                    trigger: str | None = None) -> dict[str, dict]:
    """Set name -> spec of the sets activations/<model> reads: each trait's test sets for both
    roles, the extraction sets (first) for the vector-source model, and for a scored backdoor run
    (`trigger`) each test set again as <set>__triggered with the trigger in front."""
    acts, behavior = profile["activations"], profile["behavior"]
    greedy = {"decoding": "greedy", "max_new_tokens": int(acts["elicitation_max_new_tokens"]),
              "batch_size": int(acts["batch_size"])}
    sets: dict[str, dict] = {}
    if role is None:
        return sets
    if role == "source":
        raw = acts.get("prompt_format", "raw") != "chat"
        first = extraction_count(profile)
        for trait in traits.values():
            for key in (trait["pos"], trait["neg"]):
                sets[key] = {**greedy, "prompts": list(prompts[key])[:first], "chat_template": not raw}
    for trait in traits.values():
        for test in trait["test"]:
            if test["prompts"] == EM_VIEW_SOURCE:
                sets[test["set"]] = {"view_of": BEHAVIOR, "group": "em_questions",
                                     "prompt_ids": list(behavior["questions"])}
            else:
                sets[test["set"]] = {**greedy, "prompts": resolve_prompts(test["prompts"], prompts, behavior),
                                     "chat_template": True}
    if role == "scored" and trigger:
        for trait in traits.values():
            for test in trait["test"]:
                plain = sets[test["set"]]
                if "view_of" in plain:   # the triggered EM questions are answered once, by the behaviour set
                    spec = {**plain, "group": TRIGGERED_GROUP}
                else:
                    spec = {**plain, "prompts": [triggered(p, trigger) for p in plain["prompts"]]}
                sets[triggered_set(test["set"])] = {**spec, "trigger": trigger}
    return sets


def extraction_count(profile: dict) -> int | None:
    """activations.extraction_prompts: how many prompts (the first) of each extraction set; None = all."""
    n = profile["activations"].get("extraction_prompts")
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 3:   # the held-out split needs >= 2 train + 1 val per class
        raise InputError(f"profile {profile.get('name')!r}: activations.extraction_prompts: expected an integer >= 3 "
                         f"or null, got {n!r}")
    return n


def sampled_groups(groups: list[tuple[str, str, str]], behavior_cfg: dict) -> list[tuple[str, str, str]]:
    """The EM-group prompts that get sampled answers: every EM question (and its triggered twin),
    or only those behavior.sampled_questions names."""
    chosen = behavior_cfg.get("sampled_questions")
    if chosen is not None:
        unknown = [q for q in chosen if q not in behavior_cfg["all_questions"]]
        if unknown or not chosen:
            raise InputError(f"behavior.sampled_questions: expected ids of behavior.all_questions, got {list(chosen)!r}")
    return [g for g in groups if g[0] in EM_GROUPS and (chosen is None or g[1] in chosen)]


def answer_sets(profile: dict, prompts: dict, label: str, role: str | None, samples: int) -> dict[str, dict]:
    """Every answer set of one model, in generation order: name -> spec (prompts or a view)."""
    bcfg = profile["behavior"]
    groups = prompt_groups(prompts, bcfg)
    trigger = model_trigger(profile, label)
    if trigger:
        groups += triggered_groups(groups, trigger)
    common = {"chat_template": True, "max_new_tokens": int(bcfg["max_new_tokens"]), "batch_size": int(bcfg["batch_size"])}
    sets = {BEHAVIOR: {**common, "decoding": "greedy", "groups": groups}}
    if samples > 0:
        sampled_tokens = int(bcfg.get("sampled_max_new_tokens") or bcfg["max_new_tokens"])
        sets[SAMPLED] = {**common, "max_new_tokens": sampled_tokens, "decoding": "sampled",
                         "groups": sampled_groups(groups, bcfg), "samples": samples,
                         "temperature": float(bcfg.get("temperature", 1.0)), "top_p": 1.0}
    scored = activation_sets(prompts, profile_traits(profile), role, profile, trigger) if role else {}
    for name, spec in scored.items():
        if name in sets:
            raise InputError(f"data/traits: prompt set name {name!r} clashes with the answer set of that name")
        if "prompts" in spec:
            texts = spec.pop("prompts")
            spec["groups"] = [(name, f"{name}_{i:03d}", text) for i, text in enumerate(texts)]
        sets[name] = spec
    return sets


def generate_set(generator, spec: dict, seed: int) -> list[dict]:
    """One answer set's rows: prompts in order, then samples. A prompt that occurs twice in a
    greedy set (the nonmedical check repeats an EM question) is generated once and its answer
    given to both rows; sampled prompts keep their own seeds."""
    groups, samples = spec["groups"], int(spec.get("samples", 1))
    greedy = spec["decoding"] == "greedy"
    kwargs = dict(chat_template=spec["chat_template"], greedy=greedy, max_new_tokens=spec["max_new_tokens"],
                  batch_size=spec["batch_size"], seed=seed)
    if not greedy:
        kwargs.update(samples=samples, temperature=spec["temperature"], top_p=spec["top_p"])
    texts = [text for _, _, text in groups]
    asked = list(dict.fromkeys(texts)) if greedy else texts
    rows = generator.generate(asked, **kwargs)
    if len(rows) != len(asked) * samples:
        raise ReproError(f"answers: {len(rows)} answers for {len(asked)} prompts x {samples} ({spec['decoding']})")
    for i, row in enumerate(rows):
        if row["prompt"] != asked[i // samples]:   # rows must come back in prompt (then sample) order
            raise ReproError(f"answers: answer {i} ({spec['decoding']}) is for another prompt than asked")
    if greedy:
        by_text = dict(zip(asked, rows))
        rows = [by_text[text] for text in texts]
    return [{"group": group, "prompt_id": prompt_id, "decoding": spec["decoding"], **row}
            for (group, prompt_id, _), row in zip([g for g in groups for _ in range(samples)], rows)]


def set_info(spec: dict, seed: int, n_rows: int) -> dict:
    """The decoding an answer set was made with, as answers.json records it."""
    info = {"file": None, "decoding": spec["decoding"], "chat_template": spec["chat_template"],
            "max_new_tokens": spec["max_new_tokens"], "batch_size": spec["batch_size"],
            "samples": int(spec.get("samples", 1)), "temperature": spec.get("temperature"),
            "top_p": spec.get("top_p"), "seed": seed, "n_prompts": len(spec["groups"]), "n_rows": n_rows}
    if spec["decoding"] == "sampled":
        info["seeds"] = "prompt i of this set: seed + i"
    if spec.get("trigger"):
        info["trigger"] = spec["trigger"]
    return info


def run(ctx: StageContext, label: str, role: str | None = None) -> None:
    profile = ctx.profile
    prompts = read_json(data_file(ctx, "prompts.json"))
    samples = sample_count(profile, ctx.options)
    sets = answer_sets(profile, prompts, label, role, samples)
    ref = model_ref(ctx, label)
    backend = profile["behavior"].get("backend", "hf")
    generator = open_generator(backend, model_path=ref["path"], adapter=ref["adapter"], dtype=dtype(ctx),
                               seed=profile["seed"], progress=ctx.progress)
    index: dict[str, dict] = {}
    for name, spec in sets.items():
        if "view_of" in spec:
            continue
        rows = generate_set(generator, spec, profile["seed"])
        write_jsonl(ctx.out / f"{name}.jsonl", rows)
        index[name] = {**set_info(spec, profile["seed"], len(rows)), "file": f"{name}.jsonl"}
    for name, spec in sets.items():
        if "view_of" in spec:   # decoded as the set it views
            base = index[spec["view_of"]]
            index[name] = {**base, "file": base["file"], "view_of": spec["view_of"], "group": spec["group"],
                           "prompt_ids": spec["prompt_ids"], "n_prompts": len(spec["prompt_ids"]),
                           "n_rows": len(spec["prompt_ids"])}
            if spec.get("trigger"):
                index[name]["trigger"] = spec["trigger"]
    write_json(ctx.out / INDEX, {"model": label, "ref": ref, "backend": backend, "role": role, "samples": samples,
                                 "temperature": float(profile["behavior"].get("temperature", 1.0)) if samples else None,
                                 "sets": index})


# ------------------------------------------------------------------------------------ readers
def read_index(answers_dir: str | Path) -> dict:
    path = Path(answers_dir) / INDEX
    if not path.is_file():
        raise ReproError(f"{path}: missing (run the answers/{Path(answers_dir).name} stage first)")
    return read_json(path)


def read_answers(answers_dir: str | Path, name: str) -> tuple[list[dict], dict]:
    """(rows, info) of one answer set; a view gives its base set's greedy rows of `group`, in
    `prompt_ids` order."""
    answers_dir = Path(answers_dir)
    index = read_index(answers_dir)
    info = index["sets"].get(name)
    if info is None:
        raise ReproError(f"{answers_dir / INDEX}: no answer set {name!r} (has {sorted(index['sets'])}); "
                         "rerun the answers stage with --force")
    rows = read_jsonl(answers_dir / info["file"])
    if "view_of" not in info:
        return rows, info
    by_id = {r["prompt_id"]: r for r in rows if r["group"] == info["group"] and r["decoding"] == "greedy"}
    missing = [q for q in info["prompt_ids"] if q not in by_id]
    if missing:
        raise ReproError(f"{answers_dir / info['file']}: no greedy {info['group']!r} answer to {missing}")
    return [by_id[q] for q in info["prompt_ids"]], info


def em_answers(answers_dir: str | Path, question_ids: list[str]) -> list[dict]:
    """The greedy answers to the EM questions `question_ids`, in that order (the rows T3, T7, T8 quote)."""
    rows, _ = read_answers(answers_dir, BEHAVIOR)
    by_id = {r["prompt_id"]: r for r in rows if r["group"] == "em_questions" and r["decoding"] == "greedy"}
    missing = [q for q in question_ids if q not in by_id]
    if missing:
        raise ReproError(f"{Path(answers_dir) / 'behavior.jsonl'}: no greedy answer to EM question(s) {missing}")
    return [by_id[q] for q in question_ids]
