"""`hf-full`: the failed 7B attempts' recipe, a full finetune with transformers Trainer.

Whole conversation as labels (padding masked by the collator), cosine schedule, warmup ratio.
Multi-GPU: `accelerate launch --config_file docker/accelerate/fsdp.yaml -m repro.train.launch
--run-config FILE` (see launch.py); on CPU it runs in one process.
"""

from __future__ import annotations

from pathlib import Path

from . import loop
from .peft_lora import load_base, prepare_features
from ..models import load_tokenizer


def train(run_name: str, recipe: dict, base_model_path: str, rows: list[dict], out_dir: Path, *,
          progress: bool = True) -> dict:
    from transformers import TrainingArguments, set_seed

    res = loop.resolve(recipe, bf16_wanted=bool(recipe.get("bf16", False)))
    set_seed(int(recipe.get("seed", 0)))
    args = TrainingArguments(**loop.args_kwargs(recipe, out_dir, res))
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
    return loop.fit(model, tokenizer, features, args=args, res=res, recipe=recipe, run_name=run_name,
                    base_model_path=base_model_path, out_dir=out_dir, resume=resume, prior=prior, main=main,
                    progress=progress, rows_total=len(rows), n_holdout=n_holdout, truncated=truncated, lora=None,
                    artifact="model")
