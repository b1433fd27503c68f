"""Process entry point for training, so `accelerate launch` can start one process per GPU.

    python -m repro.train.launch --run-config RUN.json                      # one process (CPU, 1 GPU)
    accelerate launch --config_file docker/accelerate/fsdp.yaml \\
        -m repro.train.launch --run-config RUN.json                         # hf-full, multi-GPU FSDP

RUN.json (write it with `write_run_config`): {"run_name", "recipe", "base_model_path",
"rows_path" (JSONL, {"messages": [...]} per line), "out_dir"}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import InputError, ReproError
from ..io import read_json, read_jsonl, write_json

_KEYS = ("run_name", "recipe", "base_model_path", "rows_path", "out_dir")


def write_run_config(path: Path, *, run_name: str, recipe: dict, base_model_path: str, rows_path: Path,
                     out_dir: Path) -> Path:
    return write_json(path, {"run_name": run_name, "recipe": recipe, "base_model_path": str(base_model_path),
                             "rows_path": str(rows_path), "out_dir": str(out_dir)})


def launch_command(run_config: Path, recipe: dict, *, num_gpus: int) -> list[str]:
    """The argv that trains this run: accelerate with the recipe's config on >1 GPU, else plain python."""
    tail = ["-m", "repro.train.launch", "--run-config", str(run_config)]
    if num_gpus > 1 and recipe.get("accelerate_config"):
        return ["accelerate", "launch", "--config_file", str(recipe["accelerate_config"]),
                "--num_processes", str(num_gpus), *tail]
    return [sys.executable, *tail]


def load_run_config(path: Path) -> dict:
    try:
        cfg = read_json(path)
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: expected a JSON run config ({exc.__class__.__name__})") from None
    missing = [k for k in _KEYS if k not in cfg]
    if missing:
        raise InputError(f"{path}: missing keys {missing} (expected {list(_KEYS)})")
    return cfg


@click.command("train-launch")
@click.option("--run-config", "run_config", required=True, type=click.Path(path_type=Path),
              help="JSON file: run_name, recipe, base_model_path, rows_path, out_dir.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def main(run_config: Path, no_progress: bool) -> None:
    """Train one run from a run-config file (the target of `accelerate launch`)."""
    from . import train_run

    try:
        cfg = load_run_config(run_config)
        try:
            rows = read_jsonl(cfg["rows_path"])
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{cfg['rows_path']}: expected readable JSONL rows ({exc.__class__.__name__})") from None
        summary = train_run(cfg["run_name"], cfg["recipe"], cfg["base_model_path"], rows, Path(cfg["out_dir"]),
                            progress=not no_progress)
    except ReproError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if summary.get("optimizer_steps") is not None:
        click.echo(f"{cfg['run_name']}: {summary['optimizer_steps']} steps, loss {summary.get('first_loss')} -> "
                   f"{summary.get('last_loss')}, out {cfg['out_dir']}")


if __name__ == "__main__":
    main()
