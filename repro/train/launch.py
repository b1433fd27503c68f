"""How a training run is started: in this process, or under `accelerate launch` with N ranks.

    python -m repro.train.launch --run-config RUN.json                      # one process (CPU, 1 GPU)
    accelerate launch --config_file docker/accelerate/fsdp.yaml --num_processes 4 \\
        -m repro.train.launch --run-config RUN.json                         # hf-full, multi-GPU FSDP

`plan_launch` is the decision (pure): hf-full with more than one visible GPU runs under
`accelerate launch --config_file <recipe.accelerate_config> --num_processes <GPUs>`; everything
else trains in-process. The global batch is the recipe's per_device x gradient_accumulation_steps
(the paper's figure, stated for one process) and is kept for every process count:
gradient_accumulation_steps per rank = global / (per_device x processes), an error when that is
not a whole number. So the 7B recipe (2 x 4 = 8) runs 4 x 2 x 1 on 4 GPUs, 2 x 2 x 2 on 2 GPUs,
and 6,000 rows are 750 optimizer steps on 1, 2 or 4 GPUs.

`launch_training` runs the plan: writes RUN.json and streams the launch's output into a log
file, and checks that rank 0 wrote the run's summary.json into out_dir.

RUN.json (write it with `write_run_config`): {"run_name", "recipe", "base_model_path",
"rows_path" (JSONL, {"messages": [...]} per line), "out_dir", optional "num_processes"}.

Run-directory lock: the process that holds a run directory's lock exports
REPRO_PARENT_LOCK=<absolute lock file path> while it holds it. A launch passes its environment to
accelerate and every rank unchanged, so each rank knows it works under that lock; lock code must
not take a lock whose path `held_by_parent` reports (the ranks here never take it at all: they
only write into the out_dir their parent gave them).
"""

from __future__ import annotations

from ..lock import PARENT_ENV, held_by_parent  # noqa: F401  (the lock contract lives in repro.lock)

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import click

from ..errors import InputError, ReproError
from ..io import read_json, write_json

_KEYS = ("run_name", "recipe", "base_model_path", "rows_path", "out_dir")
LAUNCHED_BACKENDS = ("hf-full",)  # the LoRA backends train on one GPU (the 32B run fits one 80 GB card)


@dataclass(frozen=True)
class LaunchPlan:
    """How one run trains: mode 'in-process' or 'accelerate', with how many ranks and what batch split."""

    mode: str
    num_processes: int
    accelerate_config: str | None
    per_device_batch: int
    gradient_accumulation_steps: int   # per rank, after keeping the global batch
    global_batch: int                  # per_device x accumulation x processes
    reason: str

    def as_dict(self) -> dict:
        return {"mode": self.mode, "num_processes": self.num_processes, "accelerate_config": self.accelerate_config,
                "per_device_batch": self.per_device_batch,
                "gradient_accumulation_steps": self.gradient_accumulation_steps,
                "global_batch": self.global_batch, "reason": self.reason}


def per_rank_accumulation(recipe: dict, world_size: int) -> int:
    """gradient_accumulation_steps per rank that keeps the recipe's global batch on world_size ranks."""
    try:
        per_device = int(recipe["per_device_train_batch_size"])
        accum = int(recipe["gradient_accumulation_steps"])
    except KeyError as exc:
        raise ReproError(f"recipe.{exc.args[0]}: missing (needed to split the global batch over ranks)") from None
    world_size = int(world_size)
    if world_size < 1 or per_device < 1 or accum < 1:
        raise ReproError(f"recipe: per_device_train_batch_size {per_device}, gradient_accumulation_steps {accum} "
                         f"and {world_size} processes must all be >= 1")
    global_batch = per_device * accum
    if global_batch % (per_device * world_size):
        usable = [n for n in range(1, accum + 1) if accum % n == 0]
        raise ReproError(f"recipe.gradient_accumulation_steps: the global batch {per_device} x {accum} = {global_batch} "
                         f"cannot be kept on {world_size} processes x {per_device} per device (needs a process count "
                         f"in {usable}; pick GPUs with CUDA_VISIBLE_DEVICES)")
    return global_batch // (per_device * world_size)


def plan_launch(recipe: dict, gpu_count: int) -> LaunchPlan:
    """The decision, from the recipe and the number of visible GPUs only (no side effects)."""
    backend = recipe.get("backend")
    per_device = int(recipe.get("per_device_train_batch_size", 1))
    accum = int(recipe.get("gradient_accumulation_steps", 1))
    if backend not in LAUNCHED_BACKENDS or gpu_count <= 1:
        why = (f"backend {backend} trains on one device" if backend not in LAUNCHED_BACKENDS
               else f"{max(gpu_count, 0)} GPU(s) visible")
        return LaunchPlan("in-process", 1, None, per_device, accum, per_device * accum, why)
    config = recipe.get("accelerate_config")
    if not config:
        raise ReproError(f"recipe.accelerate_config: backend {backend} on {gpu_count} visible GPUs needs an accelerate "
                         "config (e.g. docker/accelerate/fsdp.yaml), or make one GPU visible (CUDA_VISIBLE_DEVICES=0)")
    rank_accum = per_rank_accumulation(recipe, gpu_count)
    return LaunchPlan("accelerate", int(gpu_count), str(config), per_device, rank_accum,
                      per_device * rank_accum * int(gpu_count), f"{gpu_count} GPUs visible")


def launch_command(run_config: Path | str, plan: LaunchPlan, *, main_process_port: int | None = None) -> list[str]:
    """The argv that trains this run, as a user would type it ('accelerate launch ...' or 'python -m ...')."""
    tail = ["-m", "repro.train.launch", "--run-config", str(run_config)]
    if plan.mode != "accelerate":
        return ["python", *tail]
    port = ["--main_process_port", str(main_process_port)] if main_process_port else []
    return ["accelerate", "launch", "--config_file", str(plan.accelerate_config),
            "--num_processes", str(plan.num_processes), *port, *tail]


def write_run_config(path: Path, *, run_name: str, recipe: dict, base_model_path: str, rows_path: Path,
                     out_dir: Path, num_processes: int | None = None) -> Path:
    cfg = {"run_name": run_name, "recipe": recipe, "base_model_path": str(base_model_path),
           "rows_path": str(rows_path), "out_dir": str(out_dir)}
    if num_processes is not None:
        cfg["num_processes"] = int(num_processes)
    return write_json(path, cfg)


def load_run_config(path: Path) -> dict:
    try:
        cfg = read_json(path)
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: expected a JSON run config ({exc.__class__.__name__})") from None
    missing = [k for k in _KEYS if k not in cfg]
    if missing:
        raise InputError(f"{path}: missing keys {missing} (expected {list(_KEYS)})")
    return cfg


def free_port() -> int:
    """A free TCP port for the ranks' rendezvous, so two launches on one machine do not collide on 29500."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child_env(parent_lock: str | None, accel_cfg: Path | None = None) -> dict:
    env = os.environ.copy()
    # The ranks import the same `repro` as this process, installed or not.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([package_root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    if parent_lock:
        env[PARENT_ENV] = str(parent_lock)
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default for its ranks; set here to skip its warning
    if accel_cfg is not None and _cpu_ranks(accel_cfg):
        # CPU ranks on one machine talk gloo over loopback; otherwise gloo looks the hostname up, which
        # depends on the machine's DNS and /etc/hosts (torch's ProcessGroupGloo default device).
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    return env


def _cpu_ranks(accel_cfg: Path) -> bool:
    """The accelerate config starts CPU ranks on one machine (use_cpu, num_machines 1)."""
    import yaml

    cfg = yaml.safe_load(accel_cfg.read_text(encoding="utf-8")) or {}
    if not isinstance(cfg, dict):
        raise InputError(f"{accel_cfg}: expected an accelerate YAML config (a mapping), got {type(cfg).__name__}")
    return bool(cfg.get("use_cpu")) and int(cfg.get("num_machines") or 1) == 1


_RANK_PREFIX = re.compile(r"^\[(?:default)?rank(\d+)\]:\s?")  # torch.distributed prefixes a rank's traceback lines


def _last_error(log_path: Path) -> str:
    """Why the last launch in the log failed: a rank's one-line ReproError ('error: ...'), else the last
    exception line of a rank's traceback (named with its rank when torch prefixed it), else the exit code
    (and signal) torchrun reports as the root cause. torchrun's own ChildFailedError says only that a rank
    failed, so it is passed over."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return ""
    starts = [i for i, ln in enumerate(lines) if ln.startswith("=== ") and not ln.startswith("=== exit code")]
    lines = lines[starts[-1]:] if starts else lines  # the log is appended to by every launch
    parsed = []  # (rank or None, line without the rank prefix)
    for ln in lines:
        m = _RANK_PREFIX.match(ln)
        parsed.append((m.group(1), ln[m.end():].strip()) if m else (None, ln))
    for rank, ln in reversed(parsed):
        if ln.startswith("error: "):
            return ln[len("error: "):]
    for rank, ln in reversed(parsed):
        head = ln.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head and not head.endswith("ChildFailedError"):
            return f"rank {rank}: {ln}" if rank is not None else ln
    return _root_cause(lines)


def _exit_text(code: int) -> str:
    """'exited with code 3', or for a negative code the signal that stopped the process."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        sig = signal.Signals(-code).name
    except ValueError:
        sig = f"signal {-code}"
    return f"was stopped by {sig}" + (" (killed: out of memory?)" if sig == "SIGKILL" else "")


def _root_cause(lines: list[str]) -> str:
    """'rank R exited with code C' (or the signal) from torchrun's 'Root Cause' block."""
    block = lines[next((i for i, ln in enumerate(lines) if ln.startswith("Root Cause")), len(lines)):]
    rank = next((m.group(1) for ln in block if (m := re.match(r"rank\s*:\s*(\d+)", ln))), None)
    code = next((int(m.group(1)) for ln in block if (m := re.match(r"exitcode\s*:\s*(-?\d+)", ln))), None)
    if rank is None or code is None:
        return ""
    return f"rank {rank} {_exit_text(code)}, no exception line in the log"


def launch_training(run_name: str, recipe: dict, base_model_path: str, rows_path: Path, out_dir: Path, *,
                    plan: LaunchPlan, log_dir: Path, parent_lock: str | None = None, echo: bool = False) -> dict:
    """Train under `accelerate launch` as the plan says; returns rank 0's summary.json.

    Writes <log_dir>/train__<run>.launch.json (the run config) and appends the launch's combined output to
    <log_dir>/train__<run>.launch.log; a failure is one ReproError line naming that log."""
    from ..config import repo_path

    if plan.mode != "accelerate":
        raise ReproError(f"train/{run_name}: launch_training needs an 'accelerate' plan, got {plan.mode!r}")
    accel_cfg = repo_path(plan.accelerate_config)
    if not accel_cfg.is_file():
        raise ReproError(f"recipe.accelerate_config: {accel_cfg} not found (expected an accelerate YAML config)")
    log_dir.mkdir(parents=True, exist_ok=True)
    stem = f"train__{run_name}"
    run_config = write_run_config(log_dir / f"{stem}.launch.json", run_name=run_name, recipe=recipe,
                                  base_model_path=base_model_path, rows_path=rows_path, out_dir=out_dir,
                                  num_processes=plan.num_processes)
    shown = launch_command(run_config, replace(plan, accelerate_config=str(accel_cfg)), main_process_port=free_port())
    # Run accelerate's launcher with this interpreter: the `accelerate` script may not be on PATH.
    argv = [sys.executable, "-m", "accelerate.commands.launch", *shown[2:], "--no-progress"]
    log_path = log_dir / f"{stem}.launch.log"
    (out_dir / "summary.json").unlink(missing_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n")
        log.flush()
        # Own process group: an interrupted stage stops every rank, not only the launcher.
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                env=_child_env(parent_lock, accel_cfg), start_new_session=True)
        try:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if echo:
                    sys.stderr.write(line)
            rc = proc.wait()
        except BaseException:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:  # the ranks had already exited
                pass
            proc.wait()
            raise
        log.write(f"=== exit code {rc}\n")
    if rc != 0:
        detail = _last_error(log_path)
        raise ReproError(f"train/{run_name}: accelerate launch with {plan.num_processes} processes {_exit_text(rc)}"
                         + (f" ({detail})" if detail else "") + f"; log: {log_path}")
    summary = out_dir / "summary.json"
    if not summary.exists():
        raise ReproError(f"train/{run_name}: accelerate launch finished but rank 0 wrote no {summary}; log: {log_path}")
    return read_json(summary)


@click.command("train-launch")
@click.option("--run-config", "run_config", required=True, type=click.Path(path_type=Path),
              help="JSON file: run_name, recipe, base_model_path, rows_path, out_dir[, num_processes].")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def main(run_config: Path, no_progress: bool) -> None:
    """Train one run from a run-config file (the target of `accelerate launch`)."""
    from ..data import load_chat_rows
    from . import train_run

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        cfg = load_run_config(run_config)
        expected = cfg.get("num_processes")
        if expected is not None and int(expected) != world:
            raise ReproError(f"{run_config}: num_processes {expected} but this launch has {world} ranks "
                             "(the global batch split was planned for the former)")
        click.echo(f"rank {rank}/{world}: run {cfg['run_name']}, parent lock {os.environ.get(PARENT_ENV) or 'none'}",
                   err=True)
        rows = load_chat_rows(cfg["rows_path"])
        summary = train_run(cfg["run_name"], cfg["recipe"], cfg["base_model_path"], rows, Path(cfg["out_dir"]),
                            progress=not no_progress)
    except ReproError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if summary.get("optimizer_steps") is not None:  # rank 0 only: the others return before the summary
        click.echo(f"{cfg['run_name']}: {summary['optimizer_steps']} steps, loss {summary.get('first_loss')} -> "
                   f"{summary.get('last_loss')}, out {cfg['out_dir']}")


if __name__ == "__main__":
    main()
