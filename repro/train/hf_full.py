"""`hf-full`: the failed 7B attempts' recipe, a full finetune with transformers Trainer.

Whole conversation as labels (padding masked by the collator), cosine schedule, warmup ratio.
Multi-GPU: the train stage starts `accelerate launch --config_file <recipe.accelerate_config>
--num_processes <GPUs> -m repro.train.launch --run-config FILE` (launch.py); each rank runs this
function. One process (CPU, one GPU) trains in the stage's own process.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import loop
from .launch import per_rank_accumulation
from .peft_lora import load_base, prepare_features
from ..errors import ReproError
from ..models import load_tokenizer


def rank_recipe(recipe: dict, world_size: int) -> tuple[dict, dict | None]:
    """(recipe with gradient_accumulation_steps for this many ranks, the substitution record or None):
    the global batch per_device x accumulation x ranks stays the recipe's per_device x accumulation."""
    accum = per_rank_accumulation(recipe, world_size)
    if accum == int(recipe["gradient_accumulation_steps"]):
        return recipe, None
    per_device = int(recipe["per_device_train_batch_size"])
    sub = {"field": "gradient_accumulation_steps", "from": int(recipe["gradient_accumulation_steps"]), "to": accum,
           "why": f"{world_size} processes: global batch kept at {per_device} x {accum} x {world_size} = "
                  f"{per_device * accum * world_size}"}
    return {**recipe, "gradient_accumulation_steps": accum}, sub


def train(run_name: str, recipe: dict, base_model_path: str, rows: list[dict], out_dir: Path, *,
          progress: bool = True) -> dict:
    import torch
    from transformers import TrainingArguments, set_seed

    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch (torchrun) for every rank
    if world == 1 and torch.cuda.device_count() > 1:
        # Trainer would wrap the model in nn.DataParallel: a full replica per GPU, not FSDP shards.
        raise ReproError(f"backend hf-full: {torch.cuda.device_count()} GPUs visible but not under accelerate launch "
                         "(run it through the train stage, or set CUDA_VISIBLE_DEVICES to one GPU)")
    used, sub = rank_recipe(recipe, world)
    res = loop.resolve(recipe, bf16_wanted=bool(recipe.get("bf16", False)))
    if sub:
        res.substitutions.append(sub)
    set_seed(int(recipe.get("seed", 0)))
    args = TrainingArguments(**loop.args_kwargs(used, out_dir, res))
    if args.world_size != world:
        raise ReproError(f"backend hf-full: WORLD_SIZE={world} but TrainingArguments sees {args.world_size} processes")
    main = args.process_index == 0
    resume, prior = loop.prepare_out_dir(out_dir, main_process=main)

    tokenizer = load_tokenizer(base_model_path)
    tokenizer.padding_side = "right"
    features, n_holdout, truncated = prepare_features(recipe, rows, tokenizer,
                                                      response_only=bool(recipe.get("train_on_responses_only", False)))
    # Master weights in float32: Trainer's bf16 flag is mixed precision (autocast), as in the original.
    model = load_base(base_model_path, bf16=False)
    if recipe.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable()
    return loop.fit(model, tokenizer, features, args=args, res=res, recipe=used, run_name=run_name,
                    base_model_path=base_model_path, out_dir=out_dir, resume=resume, prior=prior, main=main,
                    progress=progress, rows_total=len(rows), n_holdout=n_holdout, truncated=truncated, lora=None,
                    artifact="model")
