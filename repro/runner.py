"""Runs stages of the pipeline graph with caching, atomic stage directories and resource records.

A cached stage writes into a fresh temp directory; only when it finishes is that directory renamed
onto runs/<profile>/<stage>, and a record (config key, wall time, peak RSS) is written under
runs/<profile>/stages/. A rerun skips a stage whose record key matches; --force redoes it.
A render stage (tables, compare, report) is cheap and always re-run; it writes files atomically.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
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
from .lock import run_dir_lock


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
    code: tuple[str, ...] = ()                 # modules whose source (and repro imports) the key covers
    inputs: tuple[str, ...] = ()               # files / directories whose content the key covers


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
    """Key of a stage = hash(its config fragment, its code, its input files, its deps' keys): a change
    of any of them redoes the stage and everything downstream."""
    from .cachekey import code_digest, files_digest

    keys: dict[str, str] = {}

    def key(name: str) -> str:
        if name not in keys:
            st = graph[name]
            keys[name] = config_hash({"stage": name, "fp": st.fingerprint, "deps": [key(d) for d in st.deps],
                                      "code": code_digest(st.code) if st.code else None,
                                      "inputs": files_digest(st.inputs) if st.inputs else None})
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


HASH_LIMIT = 64 * 2**20  # files up to this size are re-hashed on every freshness check
HEADER_BYTES = 1 << 20   # larger files (weights): size, mtime and a digest of their head (the safetensors header)


def _head_digest(path: Path) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read(HEADER_BYTES)).hexdigest()


def artifact_manifest(stage_dir: Path, full: bool = True) -> dict[str, list]:
    """{relative path: [size, sha256, head sha256 or None, mtime_ns or None]} of a stage directory.

    Every file's full sha256 is streamed once, when the stage finishes (full=True). A freshness check
    re-hashes small files; a large one (weights) is checked by size, mtime and the digest of its
    first MB (which holds a safetensors file's header: names, dtypes, shapes, offsets)."""
    from .io import sha256_file

    out = {}
    for path in sorted(p for p in stage_dir.rglob("*") if p.is_file()):
        st = path.stat()
        big = st.st_size > HASH_LIMIT
        digest = sha256_file(path) if (full or not big) else None
        out[str(path.relative_to(stage_dir))] = [st.st_size, digest, _head_digest(path) if big else None,
                                                 st.st_mtime_ns if big else None]
    return out


def _same_artifacts(recorded: dict, current: dict) -> bool:
    if not isinstance(recorded, dict) or set(recorded) != set(current):
        return False
    for name, now in current.items():
        then = recorded[name]
        if not isinstance(then, list) or len(then) != 4:
            return False
        size, digest, head, mtime = then
        if now[0] != size or (now[2] is None and now[1] != digest) or (now[2] is not None and (now[2], now[3]) != (head, mtime)):
            return False
    return True


def read_record(root: Path, name: str) -> dict | None:
    """A stage's record, or None when it is missing or not a record (corrupt, `[]`, `null`)."""
    try:
        record = read_json(record_path(root, name))
    except (ValueError, OSError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def artifacts_digest(record: dict | None) -> str | None:
    return config_hash(record.get("artifacts")) if record else None


def is_fresh(root: Path, stage: Stage, key: str) -> bool:
    """Cached and intact: same key, every artifact as it was written, and its upstream artifacts
    the ones it was made from."""
    if not stage.cached or not (root / stage.name).is_dir():
        return False
    record = read_record(root, stage.name)
    if record is None or record.get("key") != key or not isinstance(record.get("artifacts"), dict):
        return False
    upstream = record.get("upstream") or {}
    if any(artifacts_digest(read_record(root, dep)) != upstream.get(dep) for dep in stage.deps if dep in upstream):
        return False
    return _same_artifacts(record["artifacts"], artifact_manifest(root / stage.name, full=False))


def inside(root: Path, path: Path) -> Path:
    """`path`, refusing anything that is not strictly inside the run directory `root`."""
    r, p = Path(root).resolve(), Path(path).resolve()
    if p == r or r not in p.parents:
        raise ReproError(f"runner: refusing to write, rename or delete {path}: outside the run directory {root}")
    return Path(path)


def _remove(root: Path, path: Path) -> None:
    if path.exists() or path.is_symlink():
        inside(root, path)
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def run_stage(stage: Stage, ctx_args: dict, root: Path, key: str, force: bool = False) -> dict:
    final = inside(root, root / stage.name)
    if stage.cached:
        final.parent.mkdir(parents=True, exist_ok=True)
        if stage.resumable:
            # One partial directory per config key: a killed training attempt resumes from its own
            # checkpoints; --force (or another key) starts afresh. The run-directory lock makes
            # this attempt the only writer.
            tmp = inside(root, final.parent / f".{final.name}.partial-{key}")
            for stale in final.parent.glob(f".{final.name}.partial-*"):
                if stale != tmp or force:
                    _remove(root, stale)
            tmp.mkdir(exist_ok=True)
        else:
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
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
            _remove(root, out)
        raise
    wall = time.perf_counter() - start
    record = {"stage": stage.name, "key": key, "wall_seconds": round(wall, 3),
              "peak_rss_mb": round(mem.peak / 2**20, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "repro_version": __version__,
              "upstream": {dep: artifacts_digest(read_record(root, dep)) for dep in stage.deps}}
    if stage.cached:
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        _remove(root, old)
        if final.exists():
            final.rename(old)
        out.rename(final)
        _remove(root, old)
        record["artifacts"] = artifact_manifest(final)
    write_json(record_path(root, stage.name), record)
    return record


def run_pipeline(graph: dict[str, Stage], targets: list[str], *, profile: dict, root: Path,
                 options: dict | None = None, force: bool = False,
                 log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> list[dict]:
    options = options or {}
    order = closure(graph, targets)
    keys = stage_keys(graph)
    planned = [n for n in order if force or not is_fresh(root, graph[n], keys[n])]
    if profile.get("requires_gpu") and any(graph[n].needs_model for n in planned):
        import torch

        if not torch.cuda.is_available():  # refused before anything is written, the lock included
            raise ReproError(f"profile {profile['name']}: needs a CUDA GPU for "
                             f"{next(n for n in planned if graph[n].needs_model)} and none is visible "
                             "(run the GPU Docker image, or PROFILE=mini on CPU)")
    with run_dir_lock(root):
        if any(graph[n].cached for n in planned):  # pin dispatch + threads, record them in runtime.json (repro/runtime.py)
            from .runtime import enter_runtime

            enter_runtime(profile, root, [n for n in planned if graph[n].cached], log=log)
        records = []
        for name in order:
            stage = graph[name]
            # decided now, not up front: a redone upstream stage may have changed this one's inputs
            if not force and is_fresh(root, stage, keys[name]):
                log(f"[cached] {name}")
                continue
            log(f"[run]    {name}" + (f" - {stage.description}" if stage.description else ""))
            try:
                rec = run_stage(stage, {"profile": profile, "options": options}, root, keys[name], force=force)
            except ReproError:
                raise
            except Exception as exc:
                raise stage_error(name, root, exc) from exc
            log(f"[done]   {name} in {rec['wall_seconds']:.1f}s, peak RSS {rec['peak_rss_mb']:.0f} MB")
            records.append(rec)
        return records


def stage_error(name: str, root: Path, exc: BaseException) -> ReproError:
    """A stage's failure as one line: a ReproError as it is; an unexpected exception by type and first
    line, its traceback kept in <root>/logs/."""
    if isinstance(exc, ReproError):
        return exc
    first = str(exc).splitlines()[0] if str(exc) else ""
    return ReproError(f"stage {name} failed: {type(exc).__name__}: {first} ({_save_traceback(root, name, exc)})")


def _save_traceback(root: Path, name: str, exc: BaseException) -> str:
    log_path = root / "logs" / (name.replace("/", "__") + ".traceback.txt")
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("".join(traceback.format_exception(exc)))
    except OSError as exc:  # the run directory itself may be the problem
        return f"traceback not saved: {log_path.parent} not writable ({exc.strerror or exc})"
    return f"traceback in {log_path}"
