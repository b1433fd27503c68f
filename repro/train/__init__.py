"""Training stage: one entry point, `train_run`, dispatching on the recipe's `backend`.

Backends: unsloth-lora (paper recipe, GPU), hf-full (failed 7B recipe, accelerate/FSDP),
peft-lora (CPU-capable LoRA, mini profile). Artifacts in out_dir: adapter or full model +
tokenizer (safetensors), train_config.json, train_log.jsonl, summary.json (written last).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import ReproError
from ..io import read_json

BACKENDS = {"unsloth-lora": "unsloth_lora", "peft-lora": "peft_lora", "hf-full": "hf_full"}


def train_run(run_name: str, recipe: dict, base_model_path: str, rows: list[dict], out_dir: Path, *,
              progress: bool = True) -> dict:
    """Train one run; resumes from out_dir/checkpoints when present. Returns the summary dict."""
    backend = recipe.get("backend")
    if backend not in BACKENDS:
        raise ReproError(f"recipe.backend: expected one of {sorted(BACKENDS)}, got {backend!r}")
    module = importlib.import_module(f".{BACKENDS[backend]}", __name__)
    return module.train(run_name, recipe, str(base_model_path), rows, Path(out_dir), progress=progress)


def is_trained(out_dir: Path) -> bool:
    return (Path(out_dir) / "summary.json").exists()


def resolve_trained_model(run: dict, models: dict, train_dir: Path, *, em_model: str | None = None) -> dict:
    """Where the finetuned model of `run` lives: {"model": path_or_id, "adapter": path|None, "trained": bool}.

    em_model (the --em-model flag) or run["em_model"] (a label in the profile's `models`, or a hub
    id / path) means no training: that model is used as is. Otherwise the run must have been
    trained into train_dir/<run name> (summary.json present).
    """
    label = em_model or run.get("em_model")
    if label:
        path = models[label]["path"] if label in models else label
        return {"model": str(path), "adapter": None, "trained": False}
    out = Path(train_dir) / run["name"]
    if not is_trained(out):
        raise ReproError(f"{out}: run {run['name']!r} not trained yet (expected summary.json); run the train stage")
    summary = read_json(out / "summary.json")
    if summary.get("lora") is not None:
        return {"model": summary["base_model"], "adapter": str(out), "trained": True}
    return {"model": str(out), "adapter": None, "trained": True}
