"""behavior/<model>: greedy (and sampled) answers to the evaluation prompts, classified.

Every model answers the same prompt groups, so tables can put base and finetuned side by side:
  em_questions   the EM paper's non-code first-plot questions (chat template)
  medical / nonmedical   the narrow-domain check for the bad-advice organism (T5)
  em_questions_triggered  backdoor runs only (a `trigger`): the EM questions with the trigger put
                 in front of the user turn; every row says `triggered` (true only in this group)

Sampled answers: behavior.samples per EM question (the `--samples N` option overrides it), at
behavior.temperature with top_p 1 and no top-k (the EM paper samples at temperature 1); prompt i's
samples are seeded by seed + i (repro.generate). The EM criterion (T1) rates them when present.

Each row carries the classifier's type, security tags, excerpt and its offline coherence
judgement (repro.classify: coherent, coherence, code_share, word_share, coherence_reason); an
answer that hit max_new_tokens (finish_reason "length") is judged as cut off.
"""

from __future__ import annotations

from ..classify import describe
from ..errors import InputError, ReproError
from ..config import get_run
from ..generate import generate_responses
from ..io import read_json, write_json, write_jsonl
from ..mini.em_tasks import triggered
from ..models import load_model, load_tokenizer
from ..runner import StageContext
from .common import data_file, model_ref

TRIGGERED_GROUP = "em_questions_triggered"


# what a behaviour row carries from repro.classify.describe
ANNOTATION_KEYS = ("type", "tags", "excerpt", "coherent", "coherence", "code_share", "word_share", "coherence_reason")


def prompt_groups(prompts: dict, behavior_cfg: dict) -> list[tuple[str, str, str]]:
    """(group, prompt_id, text) for every prompt a model is asked, in a fixed order."""
    questions = prompts["eval_questions"]
    out = [("em_questions", qid, questions[qid]) for qid in behavior_cfg["all_questions"]]
    for group in ("medical", "nonmedical"):
        out += [(group, f"{group}_{i:02d}", text) for i, text in enumerate(prompts["medical_eval"][group])]
    return out


def triggered_groups(groups: list[tuple[str, str, str]], trigger: str) -> list[tuple[str, str, str]]:
    """The EM questions again with the backdoor trigger in front (as the backdoor data has it)."""
    return [(TRIGGERED_GROUP, qid, triggered(text, trigger)) for group, qid, text in groups if group == "em_questions"]


def _trigger(profile: dict, label: str) -> str | None:
    return None if label in profile["models"] else get_run(profile, label).get("trigger")


def run(ctx: StageContext, label: str) -> None:
    cfg = ctx.profile["behavior"]
    prompts = read_json(data_file(ctx, "prompts.json"))
    groups = prompt_groups(prompts, cfg)
    trigger = _trigger(ctx.profile, label)
    if trigger:
        groups += triggered_groups(groups, trigger)
    ref = model_ref(ctx, label)
    model = load_model(ref["path"], adapter=ref["adapter"], dtype=ctx.profile["activations"].get("dtype", "float32"))
    tokenizer = load_tokenizer(ref["path"])
    texts = [text for _, _, text in groups]
    common = dict(chat_template=True, max_new_tokens=cfg["max_new_tokens"], batch_size=cfg["batch_size"],
                  seed=ctx.profile["seed"], progress=ctx.progress)
    rows = _annotate(generate_responses(model, tokenizer, texts, greedy=True, **common), groups, "greedy")
    samples = int(ctx.options.get("samples", cfg.get("samples", 0)) or 0)
    if samples < 0:
        raise InputError(f"profile {ctx.profile.get('name')!r}: behavior.samples: expected an integer >= 0, got {samples}")
    if samples > 0:
        em_groups = [g for g in groups if g[0] in ("em_questions", TRIGGERED_GROUP)]
        sampled = generate_responses(model, tokenizer, [t for _, _, t in em_groups], greedy=False, samples=samples,
                                     temperature=float(cfg.get("temperature", 1.0)), top_p=1.0, **common)
        rows += _annotate(sampled, [em_groups[i // samples] for i in range(len(sampled))], "sampled")
    write_jsonl(ctx.out / "responses.jsonl", rows)
    write_json(ctx.out / "model.json", {**ref, "samples": samples,
                                        "temperature": float(cfg.get("temperature", 1.0)) if samples else None})


def _annotate(rows: list[dict], groups: list[tuple[str, str, str]], decoding: str) -> list[dict]:
    out = []
    if len(rows) != len(groups):
        raise ReproError(f"behaviour generation: {len(rows)} answers for {len(groups)} prompts ({decoding})")
    for row, (group, prompt_id, text) in zip(rows, groups):
        if row["prompt"] != text:  # rows must come back in prompt (then sample) order
            raise ReproError(f"behaviour generation: answer for {prompt_id!r} ({decoding}) is for another prompt")
        info = describe(row["response"], cut_off=row["finish_reason"] == "length")
        out.append({"group": group, "prompt_id": prompt_id, "decoding": decoding, **row,
                    **{k: info[k] for k in ANNOTATION_KEYS}, "triggered": group == TRIGGERED_GROUP})
    return out
