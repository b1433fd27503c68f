"""activations/<model>: pooled residual-stream activations of every decoder block, per prompt set.

Natural elicitation (FACTS.md): the model answers each extraction prompt itself (raw prompt, no
chat template, greedy) and prompt + its own response is re-read in one forward pass, pooled by the
profile's rule (mean over all tokens in the original). Test prompts (refusal test set, EM
questions) are asked with the chat template and scored the same way on prompt + own response; a
backdoor run's test sets also with its trigger in front (<set>__triggered).

The answers are not generated here: they are answers/<model>'s sets of the same names (its
docstring gives each set's decoding; the EM questions' set is the behaviour stage's greedy
answers). This stage only runs the forward pass over prompt + stored answer.
"""

from __future__ import annotations

from ..activations import answered_texts, capture_activations, save_activations
from ..errors import ReproError
from ..io import read_json, write_jsonl
from ..models import load_model, load_tokenizer
from ..runner import StageContext
from ..traits import profile_traits
from .answers import activation_sets, model_trigger, read_answers, triggered
from .common import data_file, dtype, model_ref


def expected_prompts(spec: dict, prompts: dict) -> list[str]:
    """The prompts an activation set must hold answers to (a view: the EM questions it names, with
    the backdoor trigger in front for a triggered set)."""
    if "view_of" in spec:
        texts = [prompts["eval_questions"][q] for q in spec["prompt_ids"]]
        return [triggered(t, spec["trigger"]) for t in texts] if spec.get("trigger") else texts
    return list(spec["prompts"])


def run(ctx: StageContext, label: str, role: str) -> None:
    cfg = ctx.profile["activations"]
    prompts = read_json(data_file(ctx, "prompts.json"))
    answers = ctx.dep(f"answers/{label}")
    ref = model_ref(ctx, label)
    model = load_model(ref["path"], adapter=ref["adapter"], dtype=dtype(ctx))
    tokenizer = load_tokenizer(ref["path"])
    trigger = model_trigger(ctx.profile, label)
    for name, spec in activation_sets(prompts, profile_traits(ctx.profile), role, ctx.profile, trigger).items():
        stored, info = read_answers(answers, name)
        if [r["prompt"] for r in stored] != expected_prompts(spec, prompts):
            raise ReproError(f"{answers / info['file']}: set {name!r} holds answers to other prompts than "
                             f"data/prompts.json; rerun answers/{label} with --force")
        chat = bool(info["chat_template"])
        rows = answered_texts(tokenizer, [r["prompt"] for r in stored], [r["response"] for r in stored],
                              chat_template=chat)
        acts = capture_activations(model, tokenizer, [r["text"] for r in rows], pooling=cfg["pooling"],
                                   batch_size=cfg["batch_size"], prompt_lengths=[r["prompt_len_tokens"] for r in rows],
                                   progress=ctx.progress)
        save_activations(ctx.out / f"{name}.safetensors", acts,
                         {"model": label, "set": name, "pooling": cfg["pooling"], "chat_template": str(chat),
                          "n": str(len(rows)), "answers": f"answers/{label}/{info['file']}",
                          "max_new_tokens": str(info["max_new_tokens"]),
                          **({"trigger": spec["trigger"]} if spec.get("trigger") else {})})
        # which prompts were scored, in row order (score/<trait> reads them); the answers stay in answers/<model>
        write_jsonl(ctx.out / f"{name}.jsonl", [{"prompt": r["prompt"], "prompt_id": s["prompt_id"],
                                                 "prompt_len_tokens": r["prompt_len_tokens"]}
                                                for r, s in zip(rows, stored)])
