"""Runs stages of the pipeline graph with caching, atomic stage directories and resource records.

A cached stage writes into a fresh temp directory; only when it finishes is that directory renamed
onto runs/<profile>/<stage>, and a record (config key, wall time, peak RSS) is written under
runs/<profile>/stages/. A rerun skips a stage whose record key matches; --force redoes it.
A render stage (tables, compare, report) is cheap and always re-run; it writes files atomically.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

from . import __version__
from .config import config_hash
from .errors import ReproError
from .io import read_json, write_json


@dataclass
class StageContext:
    profile: dict
    root: Path                    # runs/<profile>
    out: Path                     # where this stage writes (temp dir for cached stages; run root for render stages)
    options: dict = field(default_factory=dict)

    def dep(self, name: str) -> Path:
        """The finished directory of another (cached) stage."""
        return self.root / name

    @property
    def progress(self) -> bool:
        return bool(self.options.get("progress", True))


@dataclass(frozen=True)
class Stage:
    name: str                                  # also its directory under runs/<profile>/
    action: Callable[[StageContext], Any]
    deps: tuple[str, ...] = ()
    fingerprint: Any = None                    # the config fragment that determines the output
    cached: bool = True                        # False: render stage, always re-run
    needs_model: bool = False                  # loads model weights (GPU check for GPU profiles)
    resumable: bool = False                    # keep a killed attempt's temp dir (checkpoints) for the next one
    description: str = ""


class PeakRSS:
    """Peak resident memory of this process (and children) while the block runs, sampled every 0.1 s."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _sample(self) -> None:
        proc = psutil.Process()
        while True:
            try:
                rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
            except psutil.Error:
                rss = 0
            self.peak = max(self.peak, rss)
            if self._stop.wait(self.interval):
                return

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def record_path(root: Path, stage_name: str) -> Path:
    return root / "stages" / (stage_name.replace("/", "__") + ".json")


def stage_keys(graph: dict[str, Stage]) -> dict[str, str]:
    """Key of a stage = hash(its fingerprint, its deps' keys): a config change invalidates downstream."""
    keys: dict[str, str] = {}

    def key(name: str) -> str:
        if name not in keys:
            st = graph[name]
            keys[name] = config_hash({"stage": name, "fp": st.fingerprint, "deps": [key(d) for d in st.deps]})
        return keys[name]

    for name in graph:
        key(name)
    return keys


def closure(graph: dict[str, Stage], targets: list[str]) -> list[str]:
    """Targets and everything they depend on, in dependency order."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ReproError(f"pipeline: dependency cycle through {name}")
        if name in seen:
            return
        if name not in graph:
            raise ReproError(f"pipeline: unknown stage {name!r} (known: {', '.join(graph)})")
        for dep in graph[name].deps:
            visit(dep, path + (name,))
        seen.add(name)
        order.append(name)

    for target in targets:
        visit(target, ())
    return order


HASH_LIMIT = 64 * 2**20  # files up to this size are hashed; larger ones (weights) are checked by size


def artifact_manifest(stage_dir: Path) -> dict[str, list]:
    """{relative path: [size, sha256 or None]} of a finished stage directory."""
    from .io import sha256_file

    out = {}
    for path in sorted(p for p in stage_dir.rglob("*") if p.is_file()):
        size = path.stat().st_size
        out[str(path.relative_to(stage_dir))] = [size, sha256_file(path) if size <= HASH_LIMIT else None]
    return out


def is_fresh(root: Path, stage: Stage, key: str) -> bool:
    """Cached and intact: same config key, and every artifact as it was written (size, sha256)."""
    rec = record_path(root, stage.name)
    if not stage.cached or not rec.exists() or not (root / stage.name).is_dir():
        return False
    try:
        record = read_json(rec)
    except (ValueError, OSError):
        return False  # a corrupted record means: redo the stage
    if record.get("key") != key:
        return False
    expected = record.get("artifacts")
    return expected is not None and artifact_manifest(root / stage.name) == expected


def run_stage(stage: Stage, ctx_args: dict, root: Path, key: str) -> dict:
    final = root / stage.name
    if stage.cached:
        tmp = final.parent / f".{final.name}.tmp"
        key_file = tmp / ".stage-key"
        # A resumable stage (training) picks up its own checkpoints after a kill, but only those
        # written under the same config key; anything else in the temp dir is stale.
        if not (stage.resumable and key_file.exists() and key_file.read_text() == key):
            shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, exist_ok=True)
        key_file.write_text(key)
        out = tmp
    else:  # render stages write results/ and tables/ files (each atomically) under the run root
        out = root
        out.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(root=root, out=out, **ctx_args)
    start = time.perf_counter()
    try:
        with PeakRSS() as mem:
            stage.action(ctx)
    except BaseException:
        if stage.cached and not stage.resumable:
            shutil.rmtree(out, ignore_errors=True)
        raise
    wall = time.perf_counter() - start
    if stage.cached:
        old = final.parent / f".{final.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        (out / ".stage-key").unlink(missing_ok=True)
        out.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    record = {"stage": stage.name, "key": key, "wall_seconds": round(wall, 3),
              "artifacts": artifact_manifest(final) if stage.cached else None,
              "peak_rss_mb": round(mem.peak / 2**20, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "repro_version": __version__}
    write_json(record_path(root, stage.name), record)
    return record


def run_pipeline(graph: dict[str, Stage], targets: list[str], *, profile: dict, root: Path,
                 options: dict | None = None, force: bool = False,
                 log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> list[dict]:
    options = options or {}
    order = closure(graph, targets)
    keys = stage_keys(graph)
    todo = [n for n in order if force or not is_fresh(root, graph[n], keys[n])]
    if profile.get("requires_gpu") and any(graph[n].needs_model for n in todo):
        import torch

        if not torch.cuda.is_available():
            raise ReproError(f"profile {profile['name']}: needs a CUDA GPU for "
                             f"{next(n for n in todo if graph[n].needs_model)} and none is visible "
                             "(run the GPU Docker image, or PROFILE=mini on CPU)")
    if any(graph[n].cached for n in todo):  # pin dispatch + threads, record them in runtime.json (repro/runtime.py)
        from .runtime import enter_runtime

        enter_runtime(profile, root, [n for n in todo if graph[n].cached], log=log)
    records = []
    for name in order:
        stage = graph[name]
        if name not in todo:
            log(f"[cached] {name}")
            continue
        log(f"[run]    {name}" + (f" - {stage.description}" if stage.description else ""))
        try:
            rec = run_stage(stage, {"profile": profile, "options": options}, root, keys[name])
        except ReproError:
            raise
        except Exception as exc:  # an unexpected failure: keep the traceback in a log, one line on screen
            log_path = root / "logs" / (name.replace("/", "__") + ".traceback.txt")
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text(traceback.format_exc())
            raise ReproError(f"stage {name} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                             f"(traceback in {log_path})") from exc
        log(f"[done]   {name} in {rec['wall_seconds']:.1f}s, peak RSS {rec['peak_rss_mb']:.0f} MB")
        records.append(rec)
    return records
