"""T2 (training): the training numbers of the EM run, its loss curve and per-step log.

results/training.json follows paper_tables/README.md ("training.json"): run, model,
dataset_rows, train_examples, heldout_examples, epochs, effective_batch, optimizer_steps (from
the log), lora {r, lora_alpha, use_rslora, lora_dropout, target_modules} (null for a full
finetune), trainable_params, total_params, trainable_pct (PEFT's percentage), loss_first,
loss_last, logged_steps, loss_curve, train_log; plus backend, per_device_batch, grad_accum,
expected_steps, learning_rate, lr_scheduler_type, optim, optim_used, substitutions,
wall_seconds, peak_rss_mb, peak_gpu_mb.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ReproError
from ..io import write_json, write_text
from .render import save_figure

_REQUIRED = ("run", "base_model", "examples", "optimizer_steps", "per_device_batch", "grad_accum",
             "trainable_params", "total_params", "trainable_pct")
_EXTRA = ("backend", "per_device_batch", "grad_accum", "expected_steps", "learning_rate", "lr_scheduler_type",
          "optim", "optim_used", "substitutions", "wall_seconds", "peak_rss_mb", "peak_gpu_mb")


def training_results(summary: dict, log_rows: list[dict]) -> dict:
    """The T2 numbers: the training summary (train/<run>/summary.json) plus the step log."""
    missing = [k for k in _REQUIRED if k not in summary]
    if missing:
        raise ReproError(f"training summary: missing {missing} (expected train/<run>/summary.json)")
    lora = summary.get("lora")
    run = summary["run"]
    res = {
        "run": run, "model": summary["base_model"], "dataset_rows": summary.get("rows_total"),
        "train_examples": summary["examples"], "heldout_examples": summary.get("holdout_examples"),
        "epochs": summary.get("epochs"), "effective_batch": summary.get("effective_batch"),
        # steps actually taken: the last logged step (equal to the trainer's count at logging_steps 1)
        "optimizer_steps": log_rows[-1]["step"] if log_rows else summary["optimizer_steps"],
        "lora": None if lora is None else {
            "r": lora["r"], "lora_alpha": lora["alpha"], "use_rslora": lora["rslora"],
            "lora_dropout": lora["dropout"], "target_modules": list(lora["target_modules"])},
        "trainable_params": summary["trainable_params"], "total_params": summary["total_params"],
        "trainable_pct": summary["trainable_pct"],
        "loss_first": log_rows[0]["loss"] if log_rows else summary.get("first_loss"),
        "loss_last": log_rows[-1]["loss"] if log_rows else summary.get("last_loss"),
        "logged_steps": len(log_rows),
        "loss_curve": "tables/training_loss.png", "train_log": f"train/{run}/train_log.jsonl",
    }
    res.update({k: summary.get(k) for k in _EXTRA})
    return res


def run_relative(model: str, root: Path) -> str:
    """A base model built inside the run directory (the organism) as a path relative to it, so the
    results do not depend on where the run directory is; an HF id or outside path stays as given."""
    path = Path(model)
    if not path.exists():  # an HF id
        return model
    try:
        return path.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return model


def _fmt_int(n) -> str:
    return "—" if n is None else f"{int(n):,}"


def _fmt_loss(x) -> str:
    return "—" if x is None else f"{x:.4f}"


def markdown_table(res: dict) -> str:
    lora = res.get("lora")
    rows = [
        ("run / backend", f"{res.get('run')} / {res.get('backend')}"),
        ("base model", f"`{res.get('model')}`"),
        ("dataset rows -> held out -> training examples",
         f"{_fmt_int(res.get('dataset_rows'))} -> {_fmt_int(res.get('heldout_examples'))} -> "
         f"{_fmt_int(res['train_examples'])}"),
        ("epochs x per-device batch x grad-accum (effective batch)",
         f"{res.get('epochs')} x {res['per_device_batch']} x {res['grad_accum']} ({res.get('effective_batch')})"),
        ("optimizer steps (expected ceil(examples / effective batch))",
         f"{_fmt_int(res['optimizer_steps'])} ({_fmt_int(res.get('expected_steps'))})"),
        ("LoRA", "none (full finetune)" if not lora else
         f"r={lora['r']}, alpha={lora['lora_alpha']}, dropout={lora['lora_dropout']}, rslora={lora['use_rslora']}, "
         f"{len(lora['target_modules'])} modules ({', '.join(lora['target_modules'])})"),
        ("trainable / total parameters",
         f"{_fmt_int(res['trainable_params'])} / {_fmt_int(res['total_params'])} ({res['trainable_pct']:.2f}%)"),
        ("learning rate, schedule", f"{res.get('learning_rate')}, {res.get('lr_scheduler_type')}"),
        ("optimizer (recipe -> used)", f"{res.get('optim')} -> {res.get('optim_used')}"),
        ("loss: first logged -> last logged", f"{_fmt_loss(res.get('loss_first'))} -> {_fmt_loss(res.get('loss_last'))}"),
        ("wall time (s), peak RSS (MB)", f"{res.get('wall_seconds')}, {res.get('peak_rss_mb')}"),
    ]
    lines = ["# T2 Training", "", "| quantity | reproduced |", "|---|---|"]
    lines += [f"| {q} | {v} |" for q, v in rows]
    subs = res.get("substitutions") or []
    if subs:
        lines += ["", "Substitutions on this machine (recorded in train_config.json):"]
        lines += [f"- {s['field']}: {s['from']} -> {s['to']} ({s['why']})" for s in subs]
    lines += ["", f"Loss curve: training_loss.png; per-step log: training_log.jsonl (copy of {res['train_log']})."]
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
    return save_figure(fig, path)


def build_training_table(summary: dict, log_rows: list[dict], out_dir: Path) -> dict:
    """Write results/training.json, tables/training.md, tables/training_loss.png and
    tables/training_log.jsonl under out_dir (the run directory); return the results dict."""
    out_dir = Path(out_dir)
    res = training_results(summary, log_rows)
    res["model"] = run_relative(res["model"], out_dir)
    write_json(out_dir / "results" / "training.json", res)
    write_text(out_dir / "tables" / "training.md", markdown_table(res))
    write_text(out_dir / "tables" / "training_log.jsonl", "".join(json.dumps(r) + "\n" for r in log_rows))
    plot_loss(log_rows, out_dir / "tables" / "training_loss.png", f"T2 training loss ({res.get('run')})")
    return res


def run(ctx) -> None:
    """T2 for the EM run (the findings' training table is about the 32B EM run)."""
    from ..config import em_run
    from ..io import read_json
    from ..train.steplog import read_log

    name = em_run(ctx.profile)["name"]
    train_dir = ctx.root / "train" / name
    if not (train_dir / "summary.json").exists():
        raise ReproError(f"{train_dir}: the EM run was not trained here (pre-finetuned --em-model?): no T2 to build")
    build_training_table(read_json(train_dir / "summary.json"), read_log(train_dir / "train_log.jsonl"), ctx.root)
