"""Helpers shared by stage adapters: where a model label's weights are, which prompt sets exist."""

from __future__ import annotations

from pathlib import Path

from ..config import get_run, given_model, repo_path
from ..errors import ReproError
from ..io import read_json
from ..hubref import pinned
from ..pipeline import trains, uses_organism
from ..runner import StageContext


def model_ref(ctx: StageContext, label: str) -> dict:
    """{"path": weights dir or hub id, "adapter": LoRA dir or None, "label": label} for a model label."""
    profile, options = ctx.profile, ctx.options
    models = profile["models"]
    if label in models:
        return {"label": label, "path": _base_path(ctx, label), "adapter": None}
    run = get_run(profile, label)
    em_model = given_model(run, options)
    if em_model:
        spec = models.get(em_model, {})
        if spec.get("adapter_on"):  # a published adapter: its pinned base, then the adapter at its pinned commit
            return {"label": label, "path": _base_path(ctx, spec["adapter_on"]),
                    "adapter": pinned(spec["path"], spec.get("revision"))}
        path = _base_path(ctx, em_model) if em_model in models else em_model
        return {"label": label, "path": path, "adapter": None}
    if not trains(profile, run, options):
        raise ReproError(f"run {label}: has neither a recipe nor em_model")
    train_dir = ctx.dep(f"train/{label}")
    if not (train_dir / "summary.json").exists():
        raise ReproError(f"{train_dir}: run {label!r} not trained yet (expected summary.json); run the train stage")
    summary = read_json(train_dir / "summary.json")
    if summary.get("artifact") == "adapter":  # LoRA: the base weights + the adapter saved in train/<run>
        return {"label": label, "path": _base_path(ctx, run["base"]), "adapter": str(train_dir)}
    return {"label": label, "path": str(train_dir), "adapter": None}


def _base_path(ctx: StageContext, label: str) -> str:
    spec = ctx.profile["models"][label]
    if spec.get("gguf"):  # converted once by the convert/<label> stage
        return str(ctx.dep(f"convert/{label}") / "model")
    if spec.get("source") == "organism" or (uses_organism(ctx.profile) and spec.get("path") == "organism"):
        return str(ctx.dep("organism") / "model")
    path = spec["path"]
    if path.startswith(("./", "../", "data/")):
        return str(repo_path(path))
    return pinned(path, spec.get("revision"))   # a hub id carries its pinned commit (models.hub_ref)


def dtype(ctx: StageContext) -> str:
    return ctx.profile["activations"].get("dtype", "float32")


def data_file(ctx: StageContext, name: str) -> Path:
    path = ctx.dep("data") / name
    if not path.exists():
        raise ReproError(f"{path}: missing (the data stage did not produce it; rerun with --force)")
    return path
