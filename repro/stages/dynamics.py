"""dynamics: per-token projections on each trait's chosen vector while the EM model answers.

The answers are the EM model's greedy answers to the behaviour questions that answers/<EM run>
stored (its `behavior` set: chat template, behavior.max_new_tokens, the rows T3 and T7 quote);
nothing is generated here. Prompt + stored answer is read in one forward pass (teacher forcing)
and every token's residual stream (output of each monitored decoder block) is dotted with the
trait's unit vector (the chosen method of vectors/<trait>, taken at every monitored layer, as the
original write-up did). The answer is only tokenised and fed to the model: generated code is
never executed.

dynamics.json:
  {model, layers, rule, max_new_tokens, answers,
   traits: {trait: {method, score_layer, rule}},
   prompts: [{id, prompt, response, text, tokens, response_start,
              projections: {trait: [[per token] per layer]}, avg: {trait: [per token]}}]}
`response_start` is the index of the first token that belongs to the answer; `avg` is the mean
over the monitored layers (the write-up's "avg" column).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ..activations import answered_texts, token_projections
from ..config import em_run
from ..errors import InputError
from ..io import read_json, write_json
from ..models import load_model, load_tokenizer
from ..runner import StageContext
from ..vectors import load_vectors
from .answers import BEHAVIOR, em_answers, read_index
from .common import data_file, dtype, model_ref

RULE = "raw block output of each token . unit-normalised vector (no pooling)"


def chosen_vector(vectors_dir, trait: str) -> tuple[torch.Tensor, dict]:
    """The [L, D] vectors of the method vectors/<trait> chose for scoring, and that choice."""
    metrics = read_json(vectors_dir / "metrics.json")
    choice = metrics.get("choice") or {}
    method = choice.get("method")
    vectors, _ = load_vectors(vectors_dir / "vectors.safetensors")
    if method not in vectors:
        raise InputError(f"{vectors_dir / 'metrics.json'}: choice.method {method!r} is not in vectors.safetensors "
                         f"(has {sorted(vectors)})")
    return vectors[method], {"method": method, "score_layer": choice.get("layer"), "rule": choice.get("rule")}


def token_dynamics(model, tokenizer, answers: Sequence[tuple[str, str, str]], vectors: Mapping[str, torch.Tensor],
                   layers: Sequence[int]) -> list[dict]:
    """Per-token projections of (id, question, stored answer) triples: chat-formatted question +
    answer, one forward pass each."""
    if not answers:
        raise InputError("behavior.questions: empty; dynamics needs at least one question")
    if not layers:
        raise InputError("vectors.dynamics_layers: empty; expected the layers to monitor")
    rows = answered_texts(tokenizer, [q for _, q, _ in answers], [a for _, _, a in answers], chat_template=True)
    out = []
    for (qid, _, _), row in zip(answers, rows):
        proj = token_projections(model, tokenizer, row["text"], vectors, layers)
        avg = {name: torch.tensor(per_layer).mean(0).tolist() for name, per_layer in proj["projections"].items()}
        out.append({"id": qid, "prompt": row["prompt"], "response": row["response"], "text": row["text"],
                    "tokens": proj["tokens"], "response_start": int(row["prompt_len_tokens"]),
                    "projections": proj["projections"], "avg": avg})
    return out


def run(ctx: StageContext) -> None:
    profile = ctx.profile
    layers = [int(l) for l in profile["vectors"].get("dynamics_layers") or []]
    traits = list(profile["vectors"]["traits"])
    vectors, info = {}, {}
    for trait in traits:
        vectors[trait], info[trait] = chosen_vector(ctx.dep(f"vectors/{trait}"), trait)

    prompts = read_json(data_file(ctx, "prompts.json"))
    questions = list(profile["behavior"]["questions"])
    missing = [q for q in questions if q not in prompts["eval_questions"]]
    if missing:
        raise InputError(f"behavior.questions: {missing} not in the data stage's eval_questions")

    em = em_run(profile)
    answers_dir = ctx.dep(f"answers/{em['name']}")
    stored = em_answers(answers_dir, questions)
    for qid, row in zip(questions, stored):
        if row["prompt"] != prompts["eval_questions"][qid]:
            raise InputError(f"{answers_dir / 'behavior.jsonl'}: the answer to {qid!r} is for another prompt "
                             f"than data/prompts.json; rerun answers/{em['name']} with --force")
    ref = model_ref(ctx, em["name"])
    model = load_model(ref["path"], adapter=ref["adapter"], dtype=dtype(ctx))
    tokenizer = load_tokenizer(ref["path"])
    rows = token_dynamics(model, tokenizer, [(q, r["prompt"], r["response"]) for q, r in zip(questions, stored)],
                          vectors, layers)
    behavior_set = read_index(answers_dir)["sets"][BEHAVIOR]
    write_json(ctx.out / "dynamics.json", {"model": em["name"], "layers": layers, "rule": RULE,
                                           "max_new_tokens": behavior_set["max_new_tokens"],
                                           "answers": f"answers/{em['name']}/{behavior_set['file']}",
                                           "traits": info, "prompts": rows})
