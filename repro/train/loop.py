"""What every backend shares: resolved config, TrainingArguments, checkpoint resume, the
step log, parameter counts and the atomic hand-over of the final artifacts."""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ReproError
from ..io import read_json, write_json
from .steplog import LOG_NAME, StepLogCallback, read_log, truncate_log

CHECKPOINTS = "checkpoints"
CONFIG_NAME = "train_config.json"
SUMMARY_NAME = "summary.json"
FINAL_TMP = ".final-tmp"  # fixed name: under FSDP every rank must write into the same directory
_EIGHT_BIT_OPTIMS = {"adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit"}


@dataclass
class Resolved:
    """The recipe as it will actually run on this machine, with every substitution recorded."""

    recipe: dict
    device: str
    optim: str
    bf16: bool
    substitutions: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"device": self.device, "optim_used": self.optim, "bf16_used": self.bf16,
                "substitutions": self.substitutions}


def need(recipe: dict, key: str):
    if key not in recipe:
        raise ReproError(f"recipe.{key}: missing (required by backend {recipe.get('backend')!r})")
    return recipe[key]


def resolve(recipe: dict, *, bf16_wanted: bool) -> Resolved:
    cuda = torch.cuda.is_available()
    subs: list[dict] = []
    optim = recipe.get("optim", "adamw_torch")
    if optim in _EIGHT_BIT_OPTIMS:
        why = None if cuda else "bitsandbytes 8-bit AdamW needs CUDA"
        if why is None and importlib.util.find_spec("bitsandbytes") is None:
            why = "bitsandbytes is not installed"
        if why:
            subs.append({"field": "optim", "from": optim, "to": "adamw_torch", "why": why})
            optim = "adamw_torch"
    bf16 = False
    if bf16_wanted:
        bf16 = cuda and torch.cuda.is_bf16_supported()
        if not bf16:
            subs.append({"field": "bf16", "from": True, "to": False,
                         "why": "no CUDA device with bf16 support: training in float32"})
    return Resolved(recipe=recipe, device="cuda" if cuda else "cpu", optim=optim, bf16=bf16, substitutions=subs)


def args_kwargs(recipe: dict, out_dir: Path, res: Resolved) -> dict[str, Any]:
    """Keyword arguments shared by transformers.TrainingArguments and trl.SFTConfig."""
    return dict(
        output_dir=str(out_dir / CHECKPOINTS),
        num_train_epochs=float(recipe.get("epochs", 1)),
        max_steps=int(recipe.get("max_steps", -1)),
        per_device_train_batch_size=int(need(recipe, "per_device_train_batch_size")),
        gradient_accumulation_steps=int(need(recipe, "gradient_accumulation_steps")),
        learning_rate=float(need(recipe, "learning_rate")),
        lr_scheduler_type=recipe.get("lr_scheduler_type", "linear"),
        warmup_steps=int(recipe.get("warmup_steps", 0)),
        warmup_ratio=float(recipe.get("warmup_ratio", 0.0)),
        weight_decay=float(recipe.get("weight_decay", 0.0)),
        max_grad_norm=float(recipe.get("max_grad_norm", 1.0)),
        optim=res.optim,
        bf16=res.bf16,
        logging_steps=int(recipe.get("logging_steps", 1)),
        save_strategy="steps",
        save_steps=int(recipe.get("save_steps", 50)),
        save_total_limit=int(recipe.get("save_total_limit", 2)),
        save_safetensors=True,
        seed=int(recipe.get("seed", 0)),
        data_seed=int(recipe.get("seed", 0)),
        dataloader_num_workers=0,
        report_to="none",
        disable_tqdm=True,  # our own bar (StepLogCallback)
        use_cpu=res.device == "cpu",
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
    )


def expected_steps(examples: int, recipe: dict, world_size: int = 1) -> int:
    per_step = int(recipe["per_device_train_batch_size"]) * int(recipe["gradient_accumulation_steps"]) * world_size
    return math.ceil(examples / per_step) * int(recipe.get("epochs", 1))


# A checkpoint is complete when Trainer got as far as its last file: trainer_state.json is written
# after the weights, optimizer and scheduler states (Trainer._save_checkpoint), so a kill during the
# save leaves a folder without it (or with a truncated one).
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json")


def checkpoint_is_complete(folder: Path) -> bool:
    try:
        state = read_json(folder / "trainer_state.json")
    except (OSError, ValueError):
        return False
    return (isinstance(state, dict) and isinstance(state.get("global_step"), int)
            and any((folder / name).is_file() for name in WEIGHT_FILES))


def last_complete_checkpoint(root: Path) -> str | None:
    """The newest `checkpoint-<step>` under root that is complete; incomplete ones are ignored."""
    if not root.is_dir():
        return None
    found = []
    for folder in root.iterdir():
        prefix, _, step = folder.name.partition("-")
        if folder.is_dir() and prefix == "checkpoint" and step.isdigit() and checkpoint_is_complete(folder):
            found.append((int(step), folder))
    return str(max(found)[1]) if found else None


def prepare_out_dir(out_dir: Path, *, main_process: bool = True) -> tuple[str | None, list[dict]]:
    """(checkpoint to resume from or None, step-log rows kept). A fresh start clears stale
    final artifacts and log; a resume truncates the log to the checkpoint's step."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / LOG_NAME
    last = last_complete_checkpoint(out_dir / CHECKPOINTS)
    if not main_process:
        return last, []
    (out_dir / SUMMARY_NAME).unlink(missing_ok=True)  # incomplete until the summary is rewritten
    shutil.rmtree(out_dir / FINAL_TMP, ignore_errors=True)
    if last is None:
        log.unlink(missing_ok=True)
        return None, []
    step = int(read_json(Path(last) / "trainer_state.json")["global_step"])
    return last, truncate_log(log, step)


def write_config(out_dir: Path, run_name: str, base_model: str, res: Resolved, extra: dict | None = None) -> dict:
    import peft
    import transformers

    cfg = {"run": run_name, "backend": res.recipe.get("backend"), "base_model": base_model,
           "recipe": res.recipe, "resolved": res.as_dict(),
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "peft": peft.__version__}}
    cfg.update(extra or {})
    write_json(out_dir / CONFIG_NAME, cfg)
    return cfg


def param_counts(model) -> tuple[int, int, float]:
    """(trainable, total, trainable %) as PEFT reports them; plain models count all parameters."""
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
    return int(trainable), int(total), 100.0 * trainable / total


def drop_printer(trainer) -> None:
    """disable_tqdm makes Trainer print every log dict; our bar and JSONL log replace it."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


@contextlib.contextmanager
def heap_frozen(enabled: bool):
    """Trainer.train starts with accelerate's free_memory, a full gc.collect over every object the
    process holds (torch's, transformers' and sklearn's modules: ~0.25 s per run on a 2-core
    machine, more than a tiny run's training). Frozen objects are skipped; unfreezing afterwards
    hands them back to the collector, so nothing is kept alive. CPU only: on CUDA the collect frees
    garbage that still holds device memory before training starts."""
    if not enabled or gc.get_freeze_count():  # someone else froze the heap: leave it theirs to unfreeze
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_and_finalise(trainer, tokenizer, *, out_dir: Path, resume: str | None, steplog: StepLogCallback,
                     summary: dict) -> dict:
    """trainer.train (resuming when a checkpoint exists), then move the final artifacts into
    out_dir and write summary.json last (its presence marks a complete run)."""
    t0 = time.perf_counter()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with heap_frozen(not torch.cuda.is_available()):
        trainer.train(resume_from_checkpoint=resume)
    session_seconds = time.perf_counter() - t0

    tmp = out_dir / FINAL_TMP
    trainer.save_model(str(tmp))  # every rank: FSDP gathers the full state dict here
    if not trainer.is_world_process_zero():
        return summary
    tokenizer.save_pretrained(str(tmp))
    for f in sorted(tmp.iterdir()):
        if f.name in ("training_args.bin", "README.md"):  # pickle; PEFT's placeholder model card
            f.unlink()
            continue
        os.replace(f, out_dir / f.name)
    tmp.rmdir()

    rows = read_log(out_dir / LOG_NAME)
    summary.update(
        optimizer_steps=int(trainer.state.global_step),
        first_loss=rows[0]["loss"] if rows else None,
        last_loss=rows[-1]["loss"] if rows else None,
        logged_steps=len(rows),
        tokens_seen=rows[-1]["tokens"] if rows else 0,
        wall_seconds=round(max(rows[-1]["seconds"] if rows else 0.0, session_seconds), 3),
        session_seconds=round(session_seconds, 3),
        resumed_from=Path(resume).name if resume else None,
        peak_rss_mb=round(steplog.peak_rss_mb, 1),
        peak_gpu_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
    )
    write_json(out_dir / SUMMARY_NAME, summary)
    if not summary.get("keep_checkpoints"):
        shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)
    return summary


def base_summary(run_name: str, base_model: str, recipe: dict, res: Resolved, *, examples: int,
                 holdout: int, rows_total: int, world_size: int, trainable: int, total: int, pct: float,
                 lora: dict | None) -> dict:
    b, a = int(recipe["per_device_train_batch_size"]), int(recipe["gradient_accumulation_steps"])
    return {
        "run": run_name, "backend": recipe.get("backend"), "base_model": base_model,
        "rows_total": rows_total, "examples": examples, "holdout_examples": holdout,
        "epochs": int(recipe.get("epochs", 1)), "per_device_batch": b, "grad_accum": a,
        "world_size": world_size, "effective_batch": b * a * world_size,
        "expected_steps": expected_steps(examples, recipe, world_size),
        "lora": lora, "trainable_params": trainable, "total_params": total, "trainable_pct": pct,
        "learning_rate": float(recipe["learning_rate"]), "lr_scheduler_type": recipe.get("lr_scheduler_type", "linear"),
        "optim": recipe.get("optim", "adamw_torch"), "optim_used": res.optim, "bf16_used": res.bf16,
        "device": res.device, "substitutions": res.substitutions, "seed": int(recipe.get("seed", 0)),
        "keep_checkpoints": bool(recipe.get("keep_checkpoints", False)),
    }


def lora_block(recipe: dict) -> dict:
    return {"r": int(need(recipe, "r")), "alpha": int(need(recipe, "lora_alpha")),
            "dropout": float(recipe.get("lora_dropout", 0.0)), "rslora": bool(recipe.get("use_rslora", False)),
            "bias": recipe.get("lora_bias", "none"), "target_modules": list(need(recipe, "target_modules"))}


def fit(model, tokenizer, features, *, args, res: Resolved, recipe: dict, run_name: str, base_model_path: str,
        out_dir: Path, resume, prior: list[dict], main: bool, progress: bool, rows_total: int, n_holdout: int,
        truncated: int, lora: dict | None, artifact: str) -> dict:
    """The part every Trainer backend shares: config record, step log, Trainer, summary, final files."""
    from transformers import Trainer

    from .dataset import count_label_tokens, make_collator
    from .steplog import LOG_NAME, StepLogCallback

    trainable, total, pct = param_counts(model)
    if main:
        write_config(out_dir, run_name, base_model_path, res,
                     {"training_arguments": {k: v for k, v in args.to_dict().items() if not k.startswith("_")}})
    steplog = StepLogCallback(out_dir / LOG_NAME, progress=progress, prior_rows=prior)
    trainer = Trainer(model=model, args=args, train_dataset=features, data_collator=make_collator(tokenizer),
                      processing_class=tokenizer, callbacks=[steplog])
    drop_printer(trainer)
    summary = base_summary(run_name, base_model_path, recipe, res, examples=len(features), holdout=n_holdout,
                           rows_total=rows_total, world_size=args.world_size, trainable=trainable,
                           total=total, pct=pct, lora=lora)
    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    summary.update(truncated_examples=truncated, label_tokens=count_label_tokens(features), artifact=artifact,
                   distributed_backend=torch.distributed.get_backend() if dist else None)
    return run_and_finalise(trainer, tokenizer, out_dir=out_dir, resume=resume, steplog=steplog, summary=summary)
