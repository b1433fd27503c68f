"""train/<run>: finetune a base model with the run's recipe (backend chosen by the recipe).

hf-full with more than one visible GPU trains under `accelerate launch` (one rank per GPU, the
recipe's accelerate config); everything else trains in this process (train/launch.py:plan_launch).
The launch's run config and output go to runs/<profile>/logs/train__<run>.launch.{json,log}.
"""

from __future__ import annotations

from ..config import get_run, recipe_for
from ..data import load_chat_rows
from ..runner import StageContext
from ..train import train_run
from ..train.launch import launch_training, plan_launch
from .common import data_file, model_ref
from .data import check_trigger


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run(ctx: StageContext, run_name: str) -> None:
    run_cfg = get_run(ctx.profile, run_name)
    recipe = recipe_for(ctx.profile, run_cfg)
    rows_path = data_file(ctx, f"{run_cfg['dataset']}.jsonl")
    rows = load_chat_rows(rows_path)  # validated here, so a bad file fails before any rank starts
    if run_cfg.get("trigger"):  # a backdoor run: its trigger must be in the data it trains on
        check_trigger(rows, run_cfg["trigger"], f"run {run_name}: trigger {run_cfg['trigger']!r} in {run_cfg['dataset']}.jsonl")
    base = model_ref(ctx, run_cfg["base"])
    plan = plan_launch(recipe, visible_gpus())
    if plan.mode == "in-process":
        train_run(run_name, recipe, base["path"], rows, ctx.out, progress=ctx.progress)
        return
    # The ranks inherit this process's environment, REPRO_PARENT_LOCK included (launch.py docstring).
    launch_training(run_name, recipe, base["path"], rows_path, ctx.out, plan=plan, log_dir=ctx.root / "logs",
                    echo=ctx.progress)
