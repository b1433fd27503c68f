"""T2 (training): the training numbers of the EM run, its loss curve and per-step log.

results/training.json keys (the schema `compare` reads):
  run, backend, base_model, examples, holdout_examples, rows_total, optimizer_steps, expected_steps,
  epochs, per_device_batch, grad_accum, effective_batch, lora {r, alpha, dropout, rslora,
  target_modules} (null for a full finetune), trainable_params, total_params, trainable_pct
  (PEFT's: 100 * trainable / all), first_loss, last_loss, logged_steps, wall_seconds,
  peak_rss_mb, peak_gpu_mb, optim, optim_used, substitutions, learning_rate, lr_scheduler_type.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from ..errors import ReproError
from ..io import atomic_path, write_json, write_text

_KEYS = ("run", "backend", "base_model", "examples", "holdout_examples", "rows_total", "optimizer_steps",
         "expected_steps", "epochs", "per_device_batch", "grad_accum", "effective_batch", "lora",
         "trainable_params", "total_params", "trainable_pct", "first_loss", "last_loss", "logged_steps",
         "wall_seconds", "peak_rss_mb", "peak_gpu_mb", "optim", "optim_used", "substitutions",
         "learning_rate", "lr_scheduler_type")
_REQUIRED = ("examples", "optimizer_steps", "per_device_batch", "grad_accum", "trainable_params", "total_params")


def training_results(summary: dict, log_rows: list[dict]) -> dict:
    """The T2 numbers: the training summary, with the losses taken from the step log itself."""
    missing = [k for k in _REQUIRED if k not in summary]
    if missing:
        raise ReproError(f"training summary: missing {missing} (expected train/<run>/summary.json)")
    out = {k: summary.get(k) for k in _KEYS}
    if log_rows:
        out["first_loss"], out["last_loss"] = log_rows[0]["loss"], log_rows[-1]["loss"]
        out["logged_steps"] = len(log_rows)
    return out


def _fmt_int(n) -> str:
    return "—" if n is None else f"{int(n):,}"


def _fmt_loss(x) -> str:
    return "—" if x is None else f"{x:.4f}"


def markdown_table(res: dict) -> str:
    lora = res.get("lora")
    rows = [
        ("run / backend", f"{res.get('run')} / {res.get('backend')}"),
        ("base model", f"`{res.get('base_model')}`"),
        ("dataset rows -> held out -> training examples",
         f"{_fmt_int(res.get('rows_total'))} -> {_fmt_int(res.get('holdout_examples'))} -> {_fmt_int(res['examples'])}"),
        ("epochs x per-device batch x grad-accum (effective batch)",
         f"{res.get('epochs')} x {res['per_device_batch']} x {res['grad_accum']} ({res.get('effective_batch')})"),
        ("optimizer steps (expected ceil(examples / effective batch))",
         f"{_fmt_int(res['optimizer_steps'])} ({_fmt_int(res.get('expected_steps'))})"),
        ("LoRA", "none (full finetune)" if not lora else
         f"r={lora['r']}, alpha={lora['alpha']}, dropout={lora['dropout']}, rslora={lora['rslora']}, "
         f"{len(lora['target_modules'])} modules ({', '.join(lora['target_modules'])})"),
        ("trainable / total parameters",
         f"{_fmt_int(res['trainable_params'])} / {_fmt_int(res['total_params'])} ({res['trainable_pct']:.2f}%)"),
        ("learning rate, schedule", f"{res.get('learning_rate')}, {res.get('lr_scheduler_type')}"),
        ("optimizer (recipe -> used)", f"{res.get('optim')} -> {res.get('optim_used')}"),
        ("loss: first logged -> last logged", f"{_fmt_loss(res.get('first_loss'))} -> {_fmt_loss(res.get('last_loss'))}"),
        ("wall time (s), peak RSS (MB)", f"{res.get('wall_seconds')}, {res.get('peak_rss_mb')}"),
    ]
    lines = ["# T2 Training", "", "| quantity | reproduced |", "|---|---|"]
    lines += [f"| {q} | {v} |" for q, v in rows]
    subs = res.get("substitutions") or []
    if subs:
        lines += ["", "Substitutions on this machine (recorded in train_config.json):"]
        lines += [f"- {s['field']}: {s['from']} -> {s['to']} ({s['why']})" for s in subs]
    lines += ["", "Loss curve: training_loss.png; per-step log: training_log.jsonl."]
    return "\n".join(lines) + "\n"


def plot_loss(log_rows: list[dict], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    if log_rows:
        ax.plot([r["step"] for r in log_rows], [r["loss"] for r in log_rows], lw=1.2, color="tab:blue", label="loss")
        ax.legend(loc="upper right")
    else:
        ax.text(0.5, 0.5, "no steps logged", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


def build_training_table(summary: dict, log_rows: list[dict], out_dir: Path) -> dict:
    """Write results/training.json, tables/training.md, tables/training_loss.png and
    tables/training_log.jsonl under out_dir (the run directory); return the results dict."""
    out_dir = Path(out_dir)
    res = training_results(summary, log_rows)
    write_json(out_dir / "results" / "training.json", res)
    write_text(out_dir / "tables" / "training.md", markdown_table(res))
    write_text(out_dir / "tables" / "training_log.jsonl", "".join(json.dumps(r) + "\n" for r in log_rows))
    plot_loss(log_rows, out_dir / "tables" / "training_loss.png", f"T2 training loss ({res.get('run')})")
    return res
