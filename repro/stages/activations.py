"""activations/<model>: pooled residual-stream activations of every decoder block, per prompt set.

Natural elicitation (FACTS.md): the model answers each extraction prompt itself (raw prompt, no
chat template, greedy); prompt + its own response is re-read in one forward pass and pooled by the
profile's rule (mean over all tokens in the original). Test prompts (refusal test set, EM
questions) are asked with the chat template, and scored the same way on prompt + own response.
"""

from __future__ import annotations

from ..activations import capture_activations, natural_elicitation, save_activations
from ..io import read_json, write_jsonl
from ..models import load_model, load_tokenizer
from ..runner import StageContext
from ..traits import profile_traits, resolve_prompts
from .common import data_file, model_ref

def prompt_sets(prompts: dict, traits: dict, role: str, behavior_cfg: dict) -> dict[str, tuple[list[str], bool]]:
    """set name -> (prompts, chat_template). Every model gets each trait's test sets (asked with the
    chat template); the vector-source model also gets the extraction sets (the profile's format)."""
    sets: dict[str, tuple[list[str], bool]] = {}
    if role == "source":
        for trait in traits.values():
            for key in (trait["pos"], trait["neg"]):
                sets[key] = (prompts[key], False)
    for trait in traits.values():
        for test in trait["test"]:
            sets[test["set"]] = (resolve_prompts(test["prompts"], prompts, behavior_cfg), True)
    return sets


def run(ctx: StageContext, label: str, role: str) -> None:
    cfg = ctx.profile["activations"]
    prompts = read_json(data_file(ctx, "prompts.json"))
    ref = model_ref(ctx, label)
    model = load_model(ref["path"], adapter=ref["adapter"], dtype=cfg.get("dtype", "float32"))
    tokenizer = load_tokenizer(ref["path"])
    sets = prompt_sets(prompts, profile_traits(ctx.profile), role, ctx.profile["behavior"])
    for name, (texts, chat) in sets.items():
        if cfg.get("prompt_format", "raw") == "chat":
            chat = True
        rows = natural_elicitation(model, tokenizer, texts, max_new_tokens=cfg["elicitation_max_new_tokens"],
                                   batch_size=cfg["batch_size"], chat_template=chat)
        acts = capture_activations(model, tokenizer, [r["text"] for r in rows], pooling=cfg["pooling"],
                                   batch_size=cfg["batch_size"], prompt_lengths=[r["prompt_len_tokens"] for r in rows],
                                   progress=ctx.progress)
        save_activations(ctx.out / f"{name}.safetensors", acts,
                         {"model": label, "set": name, "pooling": cfg["pooling"], "chat_template": str(chat),
                          "n": str(len(rows))})
        write_jsonl(ctx.out / f"{name}.jsonl", [{"prompt": r["prompt"], "response": r["response"]} for r in rows])
