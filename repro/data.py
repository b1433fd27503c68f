"""Data layer: EM chat-format validation, loading, seeded split/shuffle, pinned download + manifest.

Repository files (data/manifest.yaml, data/models/*/config.json, data/prompts/...) are looked up
with `resolve_repo_path`: first $REPRO_HOME, then the source checkout that holds this package
(parent of `repro/`, the editable/dev install), then the current directory. A non-editable
install therefore needs either REPRO_HOME=/path/to/checkout or to be run from the checkout.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from repro import io
from repro.errors import InputError, ReproError

PACKAGE_PARENT = Path(__file__).resolve().parents[1]
ROLES = ("system", "user", "assistant")
LOCK_NAME = "manifest.lock.json"


# ----------------------------------------------------------------------------- repo files
def repo_roots() -> list[Path]:
    roots = []
    if os.environ.get("REPRO_HOME"):
        roots.append(Path(os.environ["REPRO_HOME"]).expanduser())
    roots += [PACKAGE_PARENT, Path.cwd()]
    return roots


def resolve_repo_path(rel: str | os.PathLike) -> Path:
    """An existing file shipped with the repository (see module docstring for the search order)."""
    rel = Path(rel)
    if rel.is_absolute():
        if rel.exists():
            return rel
        raise ReproError(f"{rel}: file not found")
    for root in repo_roots():
        if (root / rel).exists():
            return root / rel
    tried = ", ".join(str(r) for r in repo_roots())
    raise ReproError(f"{rel}: not found under {tried} (set REPRO_HOME to the repository checkout)")


# ----------------------------------------------------------------------------- validation
def _check_row(obj: Any) -> str | None:
    """What is wrong with one parsed line, or None. Checks the EM chat format."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    if "messages" not in obj:
        return "missing field 'messages'"
    msgs = obj["messages"]
    if not isinstance(msgs, list) or not msgs:
        return "field 'messages' must be a non-empty list"
    expected = "user"
    for i, msg in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            return f"{where}: expected an object with 'role' and 'content', got {type(msg).__name__}"
        for field in ("role", "content"):
            if field not in msg:
                return f"{where}: missing field '{field}'"
        role, content = msg["role"], msg["content"]
        if role not in ROLES:
            return f"{where}.role: unknown role {role!r} (expected system, user or assistant)"
        if not isinstance(content, str):
            return f"{where}.content: expected a string, got {type(content).__name__}"
        if not content.strip():
            return f"{where}.content: empty"
        if role == "system":
            if i != 0:
                return f"{where}: a system turn is allowed only as the first message"
            continue
        if role != expected:
            return f"{where}.role: wrong role order, expected '{expected}' got '{role}'"
        expected = "assistant" if role == "user" else "user"
    if expected != "user":  # ended on a user turn (or only a system turn)
        last = msgs[-1]["role"]
        return f"messages: last turn must be 'assistant' (got '{last}')"
    return None


def iter_chat_rows(path: str | os.PathLike, display: str | None = None):
    """Yield (line_number, row) for a valid file; raise InputError 'PATH:LINE: problem' at the first bad line."""
    path = Path(path)
    name = display or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{name}: file not found") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = raw[:exc.start].count(b"\n") + 1
        raise InputError(f"{name}:{bad_line}: not valid UTF-8") from None
    if not text.strip():
        raise InputError(f"{name}:1: empty file (expected one JSON object per line)")
    lines = text.split("\n")
    ends_with_newline = lines[-1] == ""
    if ends_with_newline:
        lines.pop()
    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line.strip():
            raise InputError(f"{name}:{lineno}: blank line (expected one JSON object per line)")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            if lineno == len(lines) and not ends_with_newline:
                raise InputError(f"{name}:{lineno}: truncated last line (no trailing newline and not valid JSON)") from None
            raise InputError(f"{name}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        problem = _check_row(obj)
        if problem:
            raise InputError(f"{name}:{lineno}: {problem}")
        yield lineno, obj


def validate_chat_file(path: str | os.PathLike, display: str | None = None) -> int:
    """Row count of a valid EM chat-format JSONL file; InputError (exit 2) naming PATH:LINE otherwise."""
    return sum(1 for _ in iter_chat_rows(path, display))


def load_chat_rows(path: str | os.PathLike) -> list[dict]:
    return [row for _, row in iter_chat_rows(path)]


# ----------------------------------------------------------------------------- split arithmetic
def split_counts(n_rows: int, holdout_fraction: float) -> tuple[int, int]:
    """(n_train, n_test) as datasets.train_test_split(test_size=f) computes them: test = ceil(f * n)."""
    if n_rows < 0 or not 0.0 <= holdout_fraction < 1.0:
        raise InputError(f"holdout_fraction: expected 0 <= f < 1 and rows >= 0, got f={holdout_fraction}, rows={n_rows}")
    n_test = math.ceil(holdout_fraction * n_rows) if holdout_fraction > 0 else 0
    return n_rows - n_test, n_test


def optimizer_steps(n_train: int, per_device_batch: int, grad_accum: int, epochs: int = 1, devices: int = 1) -> int:
    """Optimizer steps of HF Trainer (transformers >= 4.46): ceil(batches per epoch / accumulation) x epochs.

    batches per epoch = ceil(n_train / (per_device_batch x devices)); the last partial accumulation
    window still makes a step (5400 / 2 / 8 -> 338; 6000 / 2 / 4 -> 750).
    """
    if n_train <= 0:
        return 0
    batches = math.ceil(n_train / (per_device_batch * devices))
    return math.ceil(batches / grad_accum) * int(epochs)


def split_rows(rows: list, holdout_fraction: float, split_seed: int, shuffle_seed: int | None) -> tuple[list, list]:
    """(train, holdout): datasets' train_test_split(test_size=holdout_fraction, seed=split_seed), then
    the train part shuffled with shuffle_seed (None: keep order), as the EM paper's training script
    does. The original did not seed the split (FACTS.md): ours is seeded and recorded."""
    from datasets import Dataset

    if not 0.0 <= holdout_fraction < 1.0:
        raise InputError(f"recipe.holdout_fraction: expected a number in [0, 1), got {holdout_fraction!r}")
    if not rows:
        raise InputError("training rows: expected at least one row, got none")
    # Index-only dataset: the split is decided on positions, rows stay untouched Python objects.
    index = Dataset.from_dict({"i": list(range(len(rows)))})
    if holdout_fraction > 0:
        parts = index.train_test_split(test_size=holdout_fraction, seed=split_seed)
        train, holdout = parts["train"], parts["test"]
    else:
        train, holdout = index, index.select([])
    if shuffle_seed is not None:
        train = train.shuffle(seed=shuffle_seed)
    return [rows[i] for i in train["i"]], [rows[i] for i in holdout["i"]]


# ----------------------------------------------------------------------------- manifest
def load_manifest(path: str | os.PathLike = "data/manifest.yaml") -> dict:
    p = resolve_repo_path(path)
    manifest = io.read_yaml(p)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise InputError(f"{p}: expected a mapping with a 'files' section")
    for key, entry in manifest["files"].items():
        for field in ("url", "dest", "sha256"):
            if field not in entry:
                raise InputError(f"{p}: files.{key}: missing field '{field}'")
    return manifest


def dataset_rows(profile: dict, key: str) -> int:
    """Row count of dataset `key` (a run's `dataset` field) without reading the data itself.

    data.source == "download": profile.data[key] names the manifest entry (default: key itself);
      its `rows` field is used (6,000 for insecure).
    data.source == "organism" / "generated": the package generates the data; profile.organism.sizes[key] is the count.
    """
    data = profile.get("data", {})
    source = data.get("source")
    if source == "download":
        manifest_key = data.get(key, key)
        manifest = load_manifest(data.get("manifest", "data/manifest.yaml"))
        entry = manifest["files"].get(manifest_key)
        if entry is None or not isinstance(entry.get("rows"), int):
            raise InputError(f"data/manifest.yaml: files.{manifest_key}.rows: expected an integer row count")
        return entry["rows"]
    if source in ("organism", "generated"):
        try:
            return int(profile["organism"]["sizes"][key])
        except (KeyError, TypeError):
            raise InputError(f"profile {profile.get('name')!r}: organism.sizes.{key}: expected an integer row count") from None
    raise InputError(f"profile {profile.get('name')!r}: data.source: expected 'download', 'organism' or 'generated', "
                     f"got {source!r}")


# ----------------------------------------------------------------------------- fetch
Opener = Callable[..., Any]


def _download(url: str, tmp: Path, opener: Opener, timeout: float) -> None:
    try:
        with opener(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            while block := resp.read(1 << 20):
                out.write(block)
    except (OSError, http.client.HTTPException, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ReproError(f"fetch: cannot download {url} ({reason}); network unreachable or offline? no file written") from None


def fetch_file(key: str, entry: dict, data_dir: Path, lock: dict, opener: Opener | None = None,
               timeout: float = 60.0, force: bool = False) -> dict:
    """Download one manifest entry into data_dir atomically: temp file -> size/sha256/schema check -> rename.

    Expected digest: the manifest's sha256, else the lock's (recorded on first fetch). Returns the
    lock record for the file. On any failure nothing is left at the destination.
    """
    opener = opener or urllib.request.urlopen
    dest = data_dir / entry["dest"]
    expected = entry.get("sha256") or lock.get("files", {}).get(key, {}).get("sha256")
    basis = "manifest" if entry.get("sha256") else ("lock" if expected else "first-fetch")
    if dest.exists() and expected and not force and io.sha256_file(dest) == expected:
        return {**lock["files"][key], "status": "cached"} if key in lock.get("files", {}) else \
            _record(entry, dest, expected, basis, "cached")
    with io.atomic_path(dest) as tmp:
        _download(entry["url"], tmp, opener, timeout)
        size = tmp.stat().st_size
        if entry.get("bytes") and size != entry["bytes"]:
            raise ReproError(f"fetch: {entry['url']}: got {size} bytes, expected {entry['bytes']} (truncated or changed download); no file written")
        digest = io.sha256_file(tmp)
        if expected and digest != expected:
            raise ReproError(f"fetch: {entry['url']}: sha256 {digest} does not match expected {expected} ({basis}); no file written")
        if entry.get("format") == "em_chat_jsonl":
            rows = validate_chat_file(tmp, display=entry["url"])
            if entry.get("rows") and rows != entry["rows"]:
                raise ReproError(f"fetch: {entry['url']}: {rows} rows, expected {entry['rows']}; no file written")
    return _record(entry, dest, digest, basis, "downloaded")


def _record(entry: dict, dest: Path, digest: str, basis: str, status: str) -> dict:
    rec = {"url": entry["url"], "path": dest.name, "sha256": digest, "bytes": dest.stat().st_size,
           "verified_against": basis, "status": status}
    if entry.get("format") == "em_chat_jsonl":
        rec["rows"] = validate_chat_file(dest)
    return rec


def fetch_data(manifest: dict, data_dir: str | os.PathLike, keys: list[str] | None = None,
               opener: Opener | None = None, force: bool = False, timeout: float = 60.0) -> dict:
    """Fetch manifest files into data_dir; record digests in data_dir/manifest.lock.json (trust on first use)."""
    data_dir = Path(data_dir)
    lock_path = data_dir / LOCK_NAME
    lock = io.read_json(lock_path) if lock_path.exists() else {}
    lock.setdefault("files", {})
    lock["source"] = manifest.get("source", {})
    for key in keys or list(manifest["files"]):
        if key not in manifest["files"]:
            raise InputError(f"data/manifest.yaml: files.{key}: no such entry (have {', '.join(manifest['files'])})")
        lock["files"][key] = fetch_file(key, manifest["files"][key], data_dir, lock, opener=opener,
                                       timeout=timeout, force=force)
        io.write_json(lock_path, lock)  # after each file, so a later failure keeps earlier records
    return lock


