"""dynamics: per-token projections on each trait's chosen vector while the EM model answers.

The EM model answers the behaviour questions greedily (chat template, behaviour max_new_tokens);
prompt + answer is then re-read in one forward pass and every token's residual stream (output of
each monitored decoder block) is dotted with the trait's unit vector (the chosen method of
vectors/<trait>, taken at every monitored layer, as the original write-up did). The answer is only
tokenised and fed back to the model: generated code is never executed.

dynamics.json:
  {model, layers, rule, max_new_tokens,
   traits: {trait: {method, score_layer, rule}},
   prompts: [{id, prompt, response, text, tokens, response_start,
              projections: {trait: [[per token] per layer]}, avg: {trait: [per token]}}]}
`response_start` is the index of the first token that belongs to the answer; `avg` is the mean
over the monitored layers (the write-up's "avg" column).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ..activations import natural_elicitation, token_projections
from ..config import em_run
from ..errors import InputError
from ..io import read_json, write_json
from ..models import load_model, load_tokenizer
from ..runner import StageContext
from ..vectors import load_vectors
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


def token_dynamics(model, tokenizer, questions: Sequence[tuple[str, str]], vectors: Mapping[str, torch.Tensor],
                   layers: Sequence[int], *, max_new_tokens: int, batch_size: int, seed: int,
                   progress: bool = False) -> list[dict]:
    """Greedy answers to (id, question) pairs, then per-token projections of prompt + answer."""
    if not questions:
        raise InputError("behavior.questions: empty; dynamics needs at least one question")
    if not layers:
        raise InputError("vectors.dynamics_layers: empty; expected the layers to monitor")
    rows = natural_elicitation(model, tokenizer, [q for _, q in questions], max_new_tokens=max_new_tokens,
                               batch_size=batch_size, chat_template=True, seed=seed, progress=progress)
    out = []
    for (qid, _), row in zip(questions, rows):
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
    bcfg = profile["behavior"]
    missing = [q for q in bcfg["questions"] if q not in prompts["eval_questions"]]
    if missing:
        raise InputError(f"behavior.questions: {missing} not in the data stage's eval_questions")
    questions = [(q, prompts["eval_questions"][q]) for q in bcfg["questions"]]

    em = em_run(profile)
    ref = model_ref(ctx, em["name"])
    model = load_model(ref["path"], adapter=ref["adapter"], dtype=dtype(ctx))
    tokenizer = load_tokenizer(ref["path"])
    rows = token_dynamics(model, tokenizer, questions, vectors, layers, max_new_tokens=bcfg["max_new_tokens"],
                          batch_size=bcfg["batch_size"], seed=profile["seed"], progress=ctx.progress)
    write_json(ctx.out / "dynamics.json", {"model": em["name"], "layers": layers, "rule": RULE,
                                           "max_new_tokens": bcfg["max_new_tokens"], "traits": info,
                                           "prompts": rows})
