"""Parameter counts from a model's config.json alone, on the meta device (no weights, no real memory).

Why meta: the 32B model would need ~65 GB just to exist; on the meta device every tensor has a shape
but no storage, so we can build the *real* architecture (transformers) and apply the *real* LoRA
config (peft) and read PEFT's own numbers, instead of re-deriving them by hand.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from repro.errors import InputError, ReproError

LORA_BACKENDS = ("unsloth-lora", "peft-lora")
FULL_BACKENDS = ("hf-full",)


def load_model_config(config_path: str | Path):
    """A transformers config object from a config.json file (local only, no remote code)."""
    from transformers import AutoConfig

    path = Path(config_path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise InputError(f"{path}: model config not found (expected a config.json)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: invalid JSON in model config ({exc.msg})") from None
    model_type = raw.pop("model_type", None)
    if not model_type:
        raise InputError(f"{path}: missing field 'model_type'")
    try:
        return AutoConfig.for_model(model_type, **raw)
    except ValueError as exc:
        raise InputError(f"{path}: unknown model_type {model_type!r} ({exc})") from None


def meta_model(config):
    """Instantiate the causal-LM architecture of `config` with every tensor on the meta device."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=False)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) over unique parameters (tied weights counted once, as PEFT does)."""
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def lora_config_from_recipe(recipe: dict[str, Any]):
    from peft import LoraConfig

    try:
        return LoraConfig(
            r=int(recipe["r"]),
            lora_alpha=int(recipe["lora_alpha"]),
            lora_dropout=float(recipe.get("lora_dropout", 0.0)),
            target_modules=list(recipe["target_modules"]),
            use_rslora=bool(recipe.get("use_rslora", False)),
            bias=recipe.get("lora_bias", "none"),
            task_type="CAUSAL_LM",
        )
    except KeyError as exc:
        raise InputError(f"recipe: missing LoRA field {exc.args[0]!r} (need r, lora_alpha, target_modules)") from None


def _lora_key(recipe: dict[str, Any]) -> tuple:
    return (int(recipe["r"]), tuple(recipe["target_modules"]), recipe.get("lora_bias", "none"))


@functools.lru_cache(maxsize=16)
def _base_count(config_path: str) -> int:
    _, total = count_parameters(meta_model(load_model_config(config_path)))
    return total


@functools.lru_cache(maxsize=16)
def _lora_count(config_path: str, key: tuple, recipe_json: str) -> tuple[int, int]:
    import torch
    from peft import get_peft_model

    recipe = json.loads(recipe_json)
    model = meta_model(load_model_config(config_path))
    # peft builds the adapter Linear layers with the default device; keep them on meta too,
    # otherwise 268M LoRA parameters would be allocated (and initialised) in real memory.
    with torch.device("meta"):
        peft_model = get_peft_model(model, lora_config_from_recipe(recipe))
    trainable, total = peft_model.get_nb_trainable_parameters()
    return int(trainable), int(total)


def parameter_summary(config_path: str | Path, recipe: dict[str, Any] | None) -> dict[str, Any]:
    """Counts for one run: base model size, trainable and total params, PEFT-style percentage.

    LoRA backends: total = base + adapter (PEFT's "all params"), pct = trainable / total.
    hf-full: everything trainable.  recipe None (evaluation only): nothing trainable.
    """
    config_path = str(Path(config_path).resolve())
    base = _base_count(config_path)
    backend = (recipe or {}).get("backend", "none")
    if recipe is None:
        trainable, total = 0, base
    elif backend in LORA_BACKENDS:
        trainable, total = _lora_count(config_path, _lora_key(recipe), json.dumps(recipe, sort_keys=True, default=str))
    elif backend in FULL_BACKENDS:
        trainable, total = base, base
    else:
        raise ReproError(f"recipe.backend: unknown backend {backend!r} (expected one of "
                         f"{', '.join(LORA_BACKENDS + FULL_BACKENDS)})")
    return {
        "backend": backend,
        "base_params": base,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_pct": round(100.0 * trainable / total, 4) if total else 0.0,
    }
