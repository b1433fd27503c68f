"""`unsloth-lora`: the paper's recipe (EM repository open_models/), GPU only.

Unsloth FastLanguageModel + LoRA (7 projections, r 32, alpha 64, RSLoRA), TRL SFTTrainer on the
chat-template text, and Unsloth's train_on_responses_only with the ChatML markers. Unsloth and
TRL are imported here only, so the CPU install never needs them.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
from pathlib import Path

import torch

from ..errors import ReproError
from . import loop
from ..data import split_rows
from .dataset import render_chat
from .steplog import LOG_NAME, StepLogCallback

INSTRUCTION_PART = "<|im_start|>user\n"
RESPONSE_PART = "<|im_start|>assistant\n"


def require_gpu_stack() -> None:
    missing = [name for name in ("unsloth", "trl") if importlib.util.find_spec(name) is None]
    problems = ([] if torch.cuda.is_available() else ["no CUDA device"]) + \
               ([f"missing packages: {', '.join(missing)}"] if missing else [])
    if problems:
        raise ReproError("backend unsloth-lora needs a CUDA GPU and the unsloth package (GPU image): "
                         + "; ".join(problems) + " (use backend peft-lora on this machine)")


def _accepted(cls, kwargs: dict) -> dict:
    """TRL renamed max_seq_length -> max_length (0.20); pass whichever this version has."""
    names = {f.name for f in dataclasses.fields(cls)}
    if "max_length" not in names and "max_length" in kwargs:
        kwargs["max_seq_length"] = kwargs.pop("max_length")
    return kwargs


def train(run_name: str, recipe: dict, base_model_path: str, rows: list[dict], out_dir: Path, *,
          progress: bool = True) -> dict:
    require_gpu_stack()
    from unsloth import FastLanguageModel  # noqa: I001  (unsloth must patch before trl is imported)
    from unsloth.chat_templates import train_on_responses_only
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    res = loop.resolve(recipe, bf16_wanted=True)
    seed = int(recipe.get("seed", 0))
    set_seed(seed)
    resume, prior = loop.prepare_out_dir(out_dir)
    max_len = int(loop.need(recipe, "max_seq_length"))

    from ..hubref import hub_ref

    name, revision = hub_ref(base_model_path)
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=name, revision=revision, max_seq_length=max_len, dtype=None,
        load_in_4bit=bool(recipe.get("load_in_4bit", False)))
    lora = loop.lora_block(recipe)
    model = FastLanguageModel.get_peft_model(
        model, r=lora["r"], target_modules=lora["target_modules"], lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"], bias=lora["bias"], use_gradient_checkpointing="unsloth",
        random_state=seed, use_rslora=lora["rslora"], loftq_config=None)
    trainable, total, pct = loop.param_counts(model)

    train_rows, holdout = split_rows(rows, float(recipe.get("holdout_fraction", 0.0)),
                                     int(recipe.get("split_seed", seed)), recipe.get("shuffle_seed"))
    dataset = Dataset.from_dict({"text": [render_chat(tokenizer, r, n) for n, r in enumerate(train_rows)]})
    kwargs = loop.args_kwargs(recipe, out_dir, res)
    kwargs.update(dataset_text_field="text", max_length=max_len, packing=False)
    args = SFTConfig(**_accepted(SFTConfig, kwargs))
    loop.write_config(out_dir, run_name, base_model_path, res,
                      {"response_markers": [INSTRUCTION_PART, RESPONSE_PART]})
    steplog = StepLogCallback(out_dir / LOG_NAME, progress=progress, prior_rows=prior)
    tok_kw = "processing_class" if "processing_class" in inspect.signature(SFTTrainer.__init__).parameters else "tokenizer"
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, callbacks=[steplog], **{tok_kw: tokenizer})
    trainer = train_on_responses_only(trainer, instruction_part=INSTRUCTION_PART, response_part=RESPONSE_PART)
    loop.drop_printer(trainer)
    summary = loop.base_summary(run_name, base_model_path, recipe, res, examples=len(train_rows),
                                holdout=len(holdout), rows_total=len(rows), world_size=args.world_size,
                                trainable=trainable, total=total, pct=pct, lora=lora)
    summary.update(artifact="adapter")
    return loop.run_and_finalise(trainer, tokenizer, out_dir=out_dir, resume=resume, steplog=steplog,
                                 summary=summary)
