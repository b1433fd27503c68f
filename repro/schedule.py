"""Runs independent cached stages side by side, each in a process of its own (`--jobs N`).

A CPU profile pins one intra-op thread per process (runtime.torch_threads: the bits must not
depend on the core count), so a single pipeline uses one core. The graph has independent
branches (three finetunes, the base model's answers), and on N cores N of them can run at once.

Each stage runs exactly as the sequential runner runs it (runner.run_stage: temp directory,
rename, record), in a fresh spawned process that inherits the pinned environment (set by
runtime.enter_runtime in this process before the pool starts), so its numbers are the ones the
sequential run gives: every stage seeds itself and reads only its inputs. A stage is started only
when its dependencies have finished, and its freshness is decided then, as the sequential
runner does. Render stages (tables, compare, report) are cheap and run here, in this process.

Memory: a stage starts beside running ones only when the sum of their RAM estimates stays within
`max_ram_gb`. The estimate is the stage's peak RSS recorded by an earlier run in this run
directory, else a multiple of the model's weight size by stage kind (WEIGHT_COPIES), else the
whole budget (it runs alone).
The peak RSS of all processes together is measured and written to stages/_schedule.json.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable

from .errors import ReproError
from .io import write_json
from .lock import run_dir_lock
from .runner import PeakRSS, Stage, closure, is_fresh, read_record, run_stage, stage_error, stage_keys

BASE_PROCESS_MB = 400   # a Python process with torch and transformers imported, before any model


def _work(profile: dict, options: dict, root: str, name: str, key: str, force: bool) -> dict:
    """One stage in a worker process (module level: spawn pickles it by name)."""
    from .pipeline import build_graph
    from .runtime import effective_runtime

    eff = effective_runtime(profile)  # torch threads; the environment pin was inherited
    if not eff["pinned"]:
        raise ReproError(f"stage {name}: runtime pin not in effect in the worker process ({'; '.join(eff['mismatch'])})")
    graph = build_graph(profile, options)
    try:
        return run_stage(graph[name], {"profile": profile, "options": options}, Path(root), key, force=force)
    except BaseException as exc:  # a ReproError crosses the process boundary (pickled by its message)
        raise stage_error(name, Path(root), exc) from None


# Peak RSS per stage kind, in fp32 copies of the model's weights (W) on top of a bare process:
# measured on smol (W 0.54 GB): conversion 1.25 GB, the base's answers 1.42 GB, a LoRA finetune
# 2.41 GB; a full finetune holds weights, gradients and two AdamW moments (4 W) plus activations.
WEIGHT_COPIES = {"convert": 2, "answers": 2, "activations": 2, "dynamics": 2, "train:peft-lora": 4,
                 "train:unsloth-lora": 4, "train:hf-full": 7}


def ram_estimates_mb(profile: dict, graph: dict[str, Stage], root: Path) -> dict[str, float]:
    """Stage -> expected peak RSS (MB): an earlier record's, else WEIGHT_COPIES x the model's fp32 size
    (the largest base model's, from its config), else absent (unknown: the stage runs alone)."""
    from .config import get_run

    try:
        from .plan import model_config_path
        from .params import parameter_summary

        sizes = [parameter_summary(model_config_path(profile, label), None)["base_params"]
                 for label in profile.get("models", {})]
        weights_mb = max(sizes, default=0) * 4 / 2**20
    except Exception:  # a model whose config is not on disk yet (the mini organism before its build)
        weights_mb = 0.0
    out: dict[str, float] = {}
    for name in graph:
        kind, _, target = name.partition("/")
        if kind == "train":
            try:
                kind = f"train:{profile['recipes'][get_run(profile, target)['recipe']]['backend']}"
            except (KeyError, ReproError):
                pass
        if kind in WEIGHT_COPIES and weights_mb:
            out[name] = BASE_PROCESS_MB + WEIGHT_COPIES[kind] * weights_mb
        elif kind in ("data", "behavior", "vectors", "score"):
            out[name] = BASE_PROCESS_MB
        record = read_record(root, name)
        if record and isinstance(record.get("peak_rss_mb"), (int, float)):
            out[name] = float(record["peak_rss_mb"])
    return out


def run_parallel(graph: dict[str, Stage], targets: list[str], *, profile: dict, root: Path, jobs: int,
                 max_ram_gb: float | None = None, options: dict | None = None, force: bool = False,
                 log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> list[dict]:
    from .runner import run_pipeline

    if jobs < 1:
        raise ReproError(f"--jobs: expected a positive number of processes, got {jobs}")
    options = dict(options or {})
    order = closure(graph, targets)
    keys = stage_keys(graph)
    planned = [n for n in order if graph[n].cached and (force or not is_fresh(root, graph[n], keys[n]))]
    if jobs == 1 or len(planned) < 2 or profile.get("requires_gpu"):
        # one process: the sequential runner (a GPU profile's stages share the GPUs, one at a time)
        return run_pipeline(graph, targets, profile=profile, root=root, options=options, force=force)
    budget_mb = max_ram_gb * 1024 if max_ram_gb else float("inf")
    estimates = ram_estimates_mb(profile, graph, root)
    worker_options = {**options, "progress": False}  # N interleaved progress bars are unreadable: stage lines instead
    with run_dir_lock(root):
        from .runtime import enter_runtime

        enter_runtime(profile, root, planned, log=log)
        log(f"[jobs]   {len(planned)} stages to run, up to {jobs} at once"
            + (f" within {max_ram_gb:g} GB RAM (estimates: earlier records, else by stage kind)" if max_ram_gb else ""))
        pending, finished, running = list(order), set(), {}
        records: list[dict] = []
        failure: ReproError | None = None
        start = time.perf_counter()
        ctx = multiprocessing.get_context("spawn")
        with PeakRSS(interval=0.5) as mem, \
                ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, max_tasks_per_child=1) as pool:
            while (pending and failure is None) or running:
                launched = True
                while launched and failure is None:
                    launched = False
                    for name in list(pending):
                        stage = graph[name]
                        if any(d not in finished for d in stage.deps):
                            continue
                        if not force and is_fresh(root, stage, keys[name]):
                            log(f"[cached] {name}")
                        elif not stage.cached:   # a render stage: cheap, here, while workers go on
                            log(f"[run]    {name}" + (f" - {stage.description}" if stage.description else ""))
                            try:
                                records.append(run_stage(stage, {"profile": profile, "options": options}, root, keys[name]))
                            except Exception as exc:  # Ctrl-C is not a stage failure: it stops the run as it is
                                failure = stage_error(name, root, exc)
                                break
                        else:
                            need = estimates.get(name, budget_mb)
                            used = sum(estimates.get(n, budget_mb) for n in running.values())
                            if len(running) >= jobs or (running and used + need > budget_mb):
                                continue
                            log(f"[run]    {name}" + (f" - {stage.description}" if stage.description else "")
                                + (f"  (beside {', '.join(running.values())})" if running else ""))
                            running[pool.submit(_work, profile, worker_options, str(root), name, keys[name], force)] = name
                            pending.remove(name)
                            continue
                        pending.remove(name)
                        finished.add(name)
                        launched = True
                if not running:
                    if pending and failure is None:
                        stuck = ", ".join(pending[:3])
                        raise ReproError(f"scheduler: nothing can start ({stuck} ...): a dependency is not in the graph")
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    try:
                        rec = future.result()
                    except BaseException as exc:  # the first failure stops new launches; running ones finish
                        failure = failure or stage_error(name, root, exc)
                        log(f"[failed] {name}")
                        continue
                    finished.add(name)
                    records.append(rec)
                    log(f"[done]   {name} in {rec['wall_seconds']:.1f}s, peak RSS {rec['peak_rss_mb']:.0f} MB "
                        f"({len(finished)}/{len(order)} stages)")
        summary = {"jobs": jobs, "max_ram_gb": max_ram_gb, "wall_seconds": round(time.perf_counter() - start, 1),
                   "stage_seconds": round(sum(r["wall_seconds"] for r in records), 1),
                   "peak_rss_all_processes_mb": round(mem.peak / 2**20, 1), "stages_run": [r["stage"] for r in records],
                   "failed": str(failure) if failure else None}
        write_json(root / "stages" / "_schedule.json", summary)
        if failure is not None:
            raise failure
        log(f"[jobs]   {len(records)} stages in {summary['wall_seconds']:.0f}s wall ({summary['stage_seconds']:.0f}s of "
            f"stage time), peak RSS of all processes {summary['peak_rss_all_processes_mb'] / 1024:.2f} GB")
        return records
