"""Per-step training log (JSONL, one line per optimizer step) and a tqdm progress bar.

Each line is written with a single O_APPEND write + fsync, so a kill leaves at most one
partial last line; `truncate_log` drops it (and any step past a checkpoint) before a resume,
so resumed runs never count a step twice.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
from transformers import TrainerCallback

from ..io import write_text

LOG_NAME = "train_log.jsonl"


def read_log(path: str | os.PathLike) -> list[dict]:
    """Complete lines only (a torn last line from a kill is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def truncate_log(path: str | os.PathLike, max_step: int) -> list[dict]:
    """Keep only steps <= max_step (the checkpoint we resume from); rewrite atomically."""
    kept = [r for r in read_log(path) if r.get("step", 0) <= max_step]
    write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def append_line(path: str | os.PathLike, row: dict) -> None:
    data = (json.dumps(row) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


class StepLogCallback(TrainerCallback):
    """Writes step, loss, lr, grad_norm, tokens (cumulative non-padding), seconds (cumulative
    wall time over all sessions) per optimizer step; tracks peak RSS; draws a tqdm bar."""

    def __init__(self, log_path: str | os.PathLike, *, progress: bool = True, prior_rows: list[dict] | None = None):
        self.log_path = Path(log_path)
        self.progress = progress
        prior = prior_rows or []
        self._seconds_offset = float(prior[-1]["seconds"]) if prior else 0.0
        self._t0 = time.perf_counter()
        self.peak_rss_mb = _rss_mb()
        self._bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=state.max_steps, initial=state.global_step, unit="step",
                             desc="train", disable=None if self.progress else True)

    def on_step_end(self, args, state, control, **kwargs):
        self.peak_rss_mb = max(self.peak_rss_mb, _rss_mb())

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs or not state.is_world_process_zero:
            return  # the end-of-training summary log has train_loss, not loss
        row = {
            "step": state.global_step,
            "loss": float(logs["loss"]),
            "lr": float(logs.get("learning_rate", float("nan"))),
            "grad_norm": float(logs["grad_norm"]) if logs.get("grad_norm") is not None else None,
            "tokens": int(state.num_input_tokens_seen),
            "seconds": round(self._seconds_offset + time.perf_counter() - self._t0, 3),
        }
        append_line(self.log_path, row)
        if self._bar is not None:
            self._bar.n = state.global_step
            self._bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
            self._bar.refresh()

    def on_train_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
