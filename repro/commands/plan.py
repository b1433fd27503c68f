"""`repro plan`: what would run, with computed counts and time/memory estimates; no GPU, network or weights."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import click

from repro.commands.data import fail, profile_and_root, profile_options
from repro.config import ProfileError
from repro.errors import ReproError


def free_disk_gb(path: Path) -> float:
    """Free space of the filesystem that will hold `path` (its nearest existing ancestor)."""
    p = Path(path).resolve()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free / 1e9


def generation_lines(generation: list[dict]) -> list[str]:
    """One line per backend: which stages generate answers with it, and which only read them."""
    groups: dict[tuple[str, str], list[str]] = {}
    for g in generation:
        groups.setdefault((g["backend"], g["how"] if g["backend"] != "none" else ""), []).append(g["stage"])
    lines = []
    for (backend, how), stages in groups.items():
        if backend == "none":
            lines.append(f"{', '.join(stages)}: no generation, forward passes over the stored answers")
        else:
            lines.append(f"{', '.join(stages)}: generate with backend {backend} ({how})")
    if any(g["backend"] == "vllm" for g in generation):
        lines.append("vLLM and HF answers need not match token for token (same prompts, decoding and seeds)")
    return lines


def render_plan(plan: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    if console is None:  # the plan tables need ~120 columns; narrower terminals get long lines, not folded digits
        width = Console().width
        console = Console(width=max(width, 120))
    runs = Table(title=f"repro plan: profile {plan['profile']} (runs)")
    numeric = ("examples", "steps", "trainable", "total", "trainable %")
    for col in ("run", "model", "backend", *numeric):
        # numbers never wrap (a folded 268,435,456 is unreadable); the text columns fold instead
        runs.add_column(col, justify="right", no_wrap=True) if col in numeric else runs.add_column(col, overflow="fold")
    for r in plan["runs"]:
        runs.add_row(r["name"], str(r["model"]), r["backend"], f"{r['train_examples']:,}", f"{r['optimizer_steps']:,}",
                     f"{r['trainable_params']:,}", f"{r['total_params']:,}", f"{r['trainable_pct']:.2f}")
    console.print(runs)
    for r in plan["runs"]:
        la = r.get("launch")
        if la:  # per training stage: how it starts, and the batch split that keeps the global batch
            console.print(f"train/{r['name']}: {la['command']}  [{la['num_processes']} process(es) x "
                          f"{la['per_device_batch']} per device x {la['gradient_accumulation_steps']} accumulation "
                          f"= global batch {la['global_batch']}]", soft_wrap=True, markup=False)
    for line in generation_lines(plan.get("generation", [])):
        console.print(line, soft_wrap=True, markup=False)
    dev = plan.get("device", {"name": "GPU", "memory": "GPU memory"})
    stages = Table(title=f"estimates per stage on {dev['name']} (rules of thumb, see formula)")
    for col in ("stage", "run", "time", dev["memory"], "formula"):
        stages.add_column(col, overflow="fold")
    for s in plan["stages"]:
        stages.add_row(s["stage"], s["run"], f"{s['time_min']:.1f} min", f"{s['gpu_mem_gb']:.1f} GB", s["formula"])
    console.print(stages)
    models = Table(title="model sources")
    for col in ("model", "weights", "pinned"):
        models.add_column(col, overflow="fold")
    for m in plan.get("models", []):
        models.add_row(m["label"], m["path"], m["pin"])
    console.print(models)
    a = plan["assumptions"]
    console.print(f"assumptions: GPU peak {a['gpu_peak_flops'] / 1e12:.0f} TFLOP/s x MFU {a['mfu']}, "
                  f"HBM {a['hbm_bytes_per_s'] / 1e12:.1f} TB/s (decode memory-bound), {a['bytes_per_token']} bytes/token; "
                  f"activations: {a['activation_rule']}")
    if plan.get("gpu"):
        console.print(f"GPU: {plan['gpu']}")
    d = plan["disk"]
    if d["required_gb"] is not None:
        console.print(f"disk: need {d['required_gb']} GB, free {d['free_gb']} GB -> {'ok' if d['ok'] else 'NOT ENOUGH'}")


@click.command("plan")
@profile_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (runs with computed counts, estimates).")
@click.option("--check-disk/--no-check-disk", default=None,
              help="Fail when free disk under --out is below resources.disk_gb (default: on for the table, off for --json).")
def plan_cmd(profile, out, as_json, check_disk):
    """What the profile would run: examples, optimizer steps and parameter counts per run (computed
    from the data manifest, the recipe and the model config on the meta device), and time / GPU
    memory estimates per stage. Needs no GPU, network or weights."""
    from repro.plan import build_plan

    try:
        prof, root = profile_and_root(profile, out)
        plan = build_plan(prof, free_disk_gb=free_disk_gb(root))
        if as_json:
            click.echo(json.dumps(plan, indent=2))
        else:
            render_plan(plan)
        enforce = (not as_json) if check_disk is None else check_disk
        d = plan["disk"]
        if enforce and d["ok"] is False:
            raise ReproError(f"disk: {d['free_gb']} GB free under {root}, profile {plan['profile']} needs "
                             f"resources.disk_gb = {d['required_gb']} GB")
    except ProfileError as exc:  # the plan is where every profile problem is seen at once
        click.echo(f"{exc.path}: {len(exc.problems)} problem(s) in the profile; nothing was run:", err=True)
        for line in exc.problems:
            click.echo(f"  - {line}", err=True)
        sys.exit(exc.exit_code)
    except ReproError as exc:
        fail(exc)
