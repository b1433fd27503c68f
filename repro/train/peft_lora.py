"""`peft-lora`: transformers Trainer + PEFT LoRA with the Unsloth recipe's hyperparameters.

CPU-capable (the mini profile's EM finetune) and the GPU fallback when Unsloth is missing.
Response-only labels come from our own ChatML masking (masking.py), not Unsloth's helper.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ReproError
from ..models import load_tokenizer
from . import loop
from ..data import split_rows
from .dataset import count_label_tokens, tokenize_rows


def load_base(base_model_path: str, bf16: bool):
    from transformers import AutoModelForCausalLM

    from ..hubref import hub_ref

    path, revision = hub_ref(base_model_path)
    try:
        return AutoModelForCausalLM.from_pretrained(
            path, revision=revision, dtype=torch.bfloat16 if bf16 else torch.float32,
            use_safetensors=True, trust_remote_code=False)
    except OSError as exc:
        raise ReproError(f"model {base_model_path!r}: cannot load ({str(exc).splitlines()[0]})") from None


def prepare_features(recipe: dict, rows: list[dict], tokenizer, *, response_only: bool):
    train_rows, holdout = split_rows(rows, float(recipe.get("holdout_fraction", 0.0)),
                                     int(recipe.get("split_seed", recipe.get("seed", 0))),
                                     recipe.get("shuffle_seed"))
    max_len = int(loop.need(recipe, "max_seq_length"))
    features = tokenize_rows(train_rows, tokenizer, max_len, response_only=response_only)
    if count_label_tokens(features) == 0:
        raise ReproError("training rows: no labelled tokens after masking (expected assistant turns in ChatML)")
    truncated = sum(1 for f in features if len(f["input_ids"]) >= max_len)
    return features, len(holdout), truncated


def train(run_name: str, recipe: dict, base_model_path: str, rows: list[dict], out_dir: Path, *,
          progress: bool = True) -> dict:
    from peft import LoraConfig, get_peft_model
    from transformers import TrainingArguments, set_seed

    res = loop.resolve(recipe, bf16_wanted=True)  # the paper's script: bf16 where supported
    seed = int(recipe.get("seed", 0))
    set_seed(seed)
    args = TrainingArguments(**loop.args_kwargs(recipe, out_dir, res))
    main = args.process_index == 0  # under accelerate only rank 0 touches the log and final files
    resume, prior = loop.prepare_out_dir(out_dir, main_process=main)

    tokenizer = load_tokenizer(base_model_path)
    tokenizer.padding_side = "right"
    features, n_holdout, truncated = prepare_features(recipe, rows, tokenizer,
                                                      response_only=bool(recipe.get("train_on_responses_only", True)))
    lora = loop.lora_block(recipe)
    model = get_peft_model(load_base(base_model_path, res.bf16), LoraConfig(
        r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], use_rslora=lora["rslora"],
        bias=lora["bias"], target_modules=lora["target_modules"], task_type="CAUSAL_LM"))
    return loop.fit(model, tokenizer, features, args=args, res=res, recipe=recipe, run_name=run_name,
                    base_model_path=base_model_path, out_dir=out_dir, resume=resume, prior=prior, main=main,
                    progress=progress, rows_total=len(rows), n_holdout=n_holdout, truncated=truncated, lora=lora,
                    artifact="adapter")
