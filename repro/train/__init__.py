"""Training stage: one entry point, `train_run`, dispatching on the recipe's `backend`.

Backends: unsloth-lora (paper recipe, GPU), hf-full (failed 7B recipe, accelerate/FSDP),
peft-lora (CPU-capable LoRA, mini profile). Artifacts in out_dir: adapter or full model +
tokenizer (safetensors), train_config.json, train_log.jsonl, summary.json (written last).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import ReproError

BACKENDS = {"unsloth-lora": "unsloth_lora", "peft-lora": "peft_lora", "hf-full": "hf_full"}
# imported by name below; declared so that cache keys cover their code (repro.cachekey)
CODE_DEPS = ("repro.train.unsloth_lora", "repro.train.peft_lora", "repro.train.hf_full")


def train_run(run_name: str, recipe: dict, base_model_path: str, rows: list[dict], out_dir: Path, *,
              progress: bool = True) -> dict:
    """Train one run; resumes from out_dir/checkpoints when present. Returns the summary dict."""
    backend = recipe.get("backend")
    if backend not in BACKENDS:
        raise ReproError(f"recipe.backend: expected one of {sorted(BACKENDS)}, got {backend!r}")
    module = importlib.import_module(f".{BACKENDS[backend]}", __name__)
    return module.train(run_name, recipe, str(base_model_path), rows, Path(out_dir), progress=progress)
