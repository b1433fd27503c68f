"""One writer per run directory: a file lock (the `filelock` package) held for a whole command.

The holder writes its PID beside the lock, so a second writer is told who holds it. A process the
holder starts for the same run (an `accelerate launch` rank) inherits REPRO_PARENT_LOCK=<lock
path> and works under its parent's lock instead of waiting for it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from .errors import ReproError

LOCK_NAME = ".repro.lock"
PARENT_ENV = "REPRO_PARENT_LOCK"
_held: dict[str, int] = {}  # lock path -> depth, so nested commands in one process re-enter


def lock_path(root: Path) -> Path:
    return Path(root) / LOCK_NAME


def _holder(path: Path) -> str:
    try:
        pid = path.with_suffix(".pid").read_text().strip()
    except OSError:
        return "another process"
    return f"process {pid}" if pid else "another process"


@contextlib.contextmanager
def run_dir_lock(root: Path) -> Iterator[Path]:
    root = Path(root)
    path = lock_path(root)
    key = str(path.resolve()) if path.parent.exists() else str(path.absolute())
    if held_by_parent(path) or key in _held:
        _held[key] = _held.get(key, 0) + 1
        try:
            yield path
        finally:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), timeout=0)
        lock.acquire()
    except Timeout:
        raise ReproError(f"{root}: run directory in use by {_holder(path)} (lock {path}); wait for it to finish, "
                         "or pass --out for a separate run directory") from None
    except OSError as exc:
        raise ReproError(f"{root}: run directory is not writable ({exc.strerror or exc}); pass --out DIR") from None
    key = str(path.resolve())
    previous = os.environ.get(PARENT_ENV)
    try:
        path.with_suffix(".pid").write_text(str(os.getpid()))
        _held[key] = 1
        os.environ[PARENT_ENV] = key  # inherited by the processes this one starts (launch ranks)
        yield path
    except OSError as exc:
        if exc.filename and Path(exc.filename).parent == root:
            raise ReproError(f"{root}: run directory is not writable ({exc.strerror or exc}); pass --out DIR") from None
        raise
    finally:
        _held.pop(key, None)
        if previous is None:
            os.environ.pop(PARENT_ENV, None)
        else:
            os.environ[PARENT_ENV] = previous
        with contextlib.suppress(OSError):
            path.with_suffix(".pid").unlink()
        lock.release()


def held_by_parent(path: Path | str, env: dict | None = None) -> bool:
    """True when REPRO_PARENT_LOCK names this lock file: a parent process holds it for us."""
    named = (os.environ if env is None else env).get(PARENT_ENV)
    return bool(named) and Path(named).resolve() == Path(path).resolve()
