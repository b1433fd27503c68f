"""`hf-full`: the failed 7B attempts' recipe, a full finetune with transformers Trainer.

Whole conversation as labels (padding masked by the collator), cosine schedule, warmup ratio.
Multi-GPU: `accelerate launch --config_file docker/accelerate/fsdp.yaml -m repro.train.launch
--run-config FILE` (see launch.py); on CPU it runs in one process.
"""

from __future__ import annotations

from pathlib import Path

from . import loop
from .dataset import count_label_tokens, make_collator
from .peft_lora import load_base, prepare_features
from .steplog import LOG_NAME, StepLogCallback
from ..models import load_tokenizer


def train(run_name: str, recipe: dict, base_model_path: str, rows: list[dict], out_dir: Path, *,
          progress: bool = True) -> dict:
    from transformers import Trainer, TrainingArguments, set_seed

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
    trainable, total, pct = loop.param_counts(model)

    if main:
        loop.write_config(out_dir, run_name, base_model_path, res,
                          {"training_arguments": {k: v for k, v in args.to_dict().items() if not k.startswith("_")}})
    steplog = StepLogCallback(out_dir / LOG_NAME, progress=progress, prior_rows=prior)
    trainer = Trainer(model=model, args=args, train_dataset=features, data_collator=make_collator(tokenizer),
                      processing_class=tokenizer, callbacks=[steplog])
    loop.drop_printer(trainer)
    summary = loop.base_summary(run_name, base_model_path, recipe, res, examples=len(features), holdout=n_holdout,
                                rows_total=len(rows), world_size=args.world_size, trainable=trainable,
                                total=total, pct=pct, lora=None)
    summary.update(truncated_examples=truncated, label_tokens=count_label_tokens(features), artifact="model")
    return loop.run_and_finalise(trainer, tokenizer, out_dir=out_dir, resume=resume, steplog=steplog,
                                 summary=summary)
