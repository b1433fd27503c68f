"""behavior/<model>: the model's answers to the evaluation prompts, classified.

The answers are not generated here: they are answers/<model>'s `behavior` (greedy) and
`behavior_sampled` sets (repro/stages/answers.py), the same rows activations and dynamics read.
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
from ..errors import ReproError
from ..io import read_json, write_json, write_jsonl
from ..runner import StageContext
# the prompt groups are the answers stage's; re-exported for the tables and tests that name them here
from .answers import (BEHAVIOR, SAMPLED, TRIGGERED_GROUP, answer_sets, model_trigger, prompt_groups,  # noqa: F401
                      read_answers, read_index, triggered_groups)
from .common import data_file

# what a behaviour row carries from repro.classify.describe
ANNOTATION_KEYS = ("type", "tags", "excerpt", "coherent", "coherence", "code_share", "word_share", "coherence_reason")

_trigger = model_trigger


def run(ctx: StageContext, label: str) -> None:
    answers = ctx.dep(f"answers/{label}")
    index = read_index(answers)
    # the groups this model must have answered, from the current prompts: stored answers to other
    # prompts (a stale answer set) are an error, not a table
    expected = answer_sets(ctx.profile, read_json(data_file(ctx, "prompts.json")), label, None, index["samples"])
    rows = _annotate(read_answers(answers, BEHAVIOR)[0], expected[BEHAVIOR]["groups"], "greedy")
    if SAMPLED in expected:
        n = index["samples"]
        rows += _annotate(read_answers(answers, SAMPLED)[0], [g for g in expected[SAMPLED]["groups"] for _ in range(n)],
                          "sampled")
    write_jsonl(ctx.out / "responses.jsonl", rows)
    write_json(ctx.out / "model.json", {**index["ref"], "samples": index["samples"],
                                        "temperature": index["temperature"], "backend": index["backend"],
                                        "answers": f"answers/{label}"})


def _annotate(rows: list[dict], groups: list[tuple[str, str, str]], decoding: str) -> list[dict]:
    """Stored answers (one per group entry, in order) + the classifier's annotations."""
    out = []
    if len(rows) != len(groups):
        raise ReproError(f"behaviour answers: {len(rows)} answers for {len(groups)} prompts ({decoding})")
    for row, (group, prompt_id, text) in zip(rows, groups):
        if row["prompt"] != text or row.get("prompt_id", prompt_id) != prompt_id:
            raise ReproError(f"behaviour answers: the answer for {prompt_id!r} ({decoding}) is for another prompt "
                             "(rerun the answers stage with --force)")
        info = describe(row["response"], cut_off=row["finish_reason"] == "length")
        out.append({**row, "group": group, "prompt_id": prompt_id, "decoding": decoding,
                    **{k: info[k] for k in ANNOTATION_KEYS}, "triggered": group == TRIGGERED_GROUP})
    return out
