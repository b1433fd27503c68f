"""train/<run>: finetune a base model with the run's recipe (backend chosen by the recipe)."""

from __future__ import annotations

from ..config import get_run, recipe_for
from ..data import load_chat_rows
from ..runner import StageContext
from ..train import train_run
from .common import data_file, model_ref
from .data import check_trigger


def run(ctx: StageContext, run_name: str) -> None:
    run_cfg = get_run(ctx.profile, run_name)
    recipe = recipe_for(ctx.profile, run_cfg)
    rows = load_chat_rows(data_file(ctx, f"{run_cfg['dataset']}.jsonl"))
    if run_cfg.get("trigger"):  # a backdoor run: its trigger must be in the data it trains on
        check_trigger(rows, run_cfg["trigger"], f"run {run_name}: trigger {run_cfg['trigger']!r} in {run_cfg['dataset']}.jsonl")
    base = model_ref(ctx, run_cfg["base"])
    train_run(run_name, recipe, base["path"], rows, ctx.out, progress=ctx.progress)
