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

import yaml

from repro import io
from repro.errors import InputError, ReproError

PACKAGE_PARENT = Path(__file__).resolve().parents[1]
ROLES = ("system", "user", "assistant")
LOCK_NAME = "manifest.lock.json"
# Longest JSONL line accepted: EM rows are ~1 KB; the cap bounds memory on a file with no newlines.
MAX_LINE_BYTES = 64 * 2**20


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
        try:
            content.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone \udXXX escape: no tokenizer or writer accepts it
            return f"{where}.content: unpaired surrogate {content[exc.start]!r} at character {exc.start} (not encodable as UTF-8)"
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


class _NonStandardConstant(ValueError):
    """NaN / Infinity: Python's json accepts them, JSON (RFC 8259) and other readers do not."""


def _reject_constant(name: str):
    raise _NonStandardConstant(f"{name} is not valid JSON")


def _parse_line(line: str) -> tuple[Any, str | None, bool]:
    """json.loads of one line: (obj, problem or None, whether the text itself is malformed JSON),
    covering every way the parser can fail (a traceback is never the answer to a bad line)."""
    try:
        return json.loads(line, parse_constant=_reject_constant), None, False
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc.msg} at column {exc.colno})", True
    except _NonStandardConstant as exc:
        return None, f"invalid JSON ({exc})", False
    except RecursionError:
        return None, "invalid JSON (nested too deeply to parse)", False
    except ValueError as exc:  # e.g. an integer longer than Python's digit limit
        return None, f"invalid JSON ({str(exc).split(':')[0]})", False
    except MemoryError:
        return None, "line too large to parse in memory", False


def iter_chat_rows(path: str | os.PathLike, display: str | None = None):
    """Yield (line_number, row) for a valid file; raise InputError 'PATH:LINE: problem' at the first bad line.

    Reads line by line (memory bounded by MAX_LINE_BYTES, whatever the file's size)."""
    path = Path(path)
    name = display or str(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise InputError(f"{name}: file not found") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from None
    with handle:
        yield from _chat_rows(handle, name)


def _chat_rows(handle, name: str):
    blank_at = None  # first blank line not yet followed by data (an error unless the file is empty)
    rows = 0
    lineno = 0
    while True:
        try:
            raw = handle.readline(MAX_LINE_BYTES + 1)
        except OSError as exc:
            raise InputError(f"{name}:{lineno + 1}: cannot read ({exc.strerror or exc})") from None
        if not raw:
            break
        lineno += 1
        if len(raw) > MAX_LINE_BYTES:
            raise InputError(f"{name}:{lineno}: line longer than {MAX_LINE_BYTES} bytes (expected one JSON object per line)")
        last = not raw.endswith(b"\n")
        try:
            line = raw.decode("utf-8").rstrip("\n").rstrip("\r")
        except UnicodeDecodeError:
            raise InputError(f"{name}:{lineno}: not valid UTF-8") from None
        if not line.strip():
            blank_at = blank_at or lineno
            continue
        if blank_at:
            raise InputError(f"{name}:{blank_at}: blank line (expected one JSON object per line)")
        obj, problem, malformed = _parse_line(line)
        if problem:
            if last and malformed:
                raise InputError(f"{name}:{lineno}: truncated last line (no trailing newline and not valid JSON)")
            raise InputError(f"{name}:{lineno}: {problem}")
        problem = _check_row(obj)
        if problem:
            raise InputError(f"{name}:{lineno}: {problem}")
        rows += 1
        yield lineno, obj
    if not rows:
        raise InputError(f"{name}:1: empty file (expected one JSON object per line)")
    if blank_at:
        raise InputError(f"{name}:{blank_at}: blank line (expected one JSON object per line)")


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
    try:
        manifest = io.read_yaml(p)
    except UnicodeDecodeError:
        raise InputError(f"{p}: not valid UTF-8 (expected a YAML manifest)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        raise InputError(f"{where}: invalid YAML ({getattr(exc, 'problem', None) or 'cannot parse'})") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None
    check_manifest(manifest, str(p))
    return manifest


def check_manifest(manifest: Any, where: str) -> None:
    """One-line InputError for a manifest that fetch could misuse: entries must be mappings, URLs
    https, `dest` a bare file name (it is joined to the download directory), digests 64 hex."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise InputError(f"{where}: expected a mapping with a 'files' section")
    for key, entry in manifest["files"].items():
        at = f"{where}: files.{key}"
        if not isinstance(entry, dict):
            raise InputError(f"{at}: expected a mapping with url, dest and sha256, got {type(entry).__name__}")
        for field in ("url", "dest", "sha256"):
            if field not in entry:
                raise InputError(f"{at}: missing field '{field}'")
        if not isinstance(entry["url"], str) or not entry["url"].startswith("https://"):
            raise InputError(f"{at}.url: expected an https:// URL, got {entry['url']!r}")
        dest = entry["dest"]
        if (not isinstance(dest, str) or not dest or dest in (".", "..") or "/" in dest or "\\" in dest
                or "\0" in dest):
            raise InputError(f"{at}.dest: expected a plain file name (no directories, no '..'), got {dest!r}")
        if entry["sha256"] is not None and not _is_sha256(entry["sha256"]):
            raise InputError(f"{at}.sha256: expected 64 lowercase hex digits or null, got {entry['sha256']!r}")
        for field in ("bytes", "rows"):
            value = entry.get(field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise InputError(f"{at}.{field}: expected a non-negative integer or null, got {value!r}")


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


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


_NETWORK_ERRORS = (OSError, http.client.HTTPException, urllib.error.URLError)


def _download(url: str, tmp: Path, opener: Opener, timeout: float) -> None:
    """Stream url into tmp. Network failures -> one-line ReproError; local write failures stay
    OSError for the caller (so a full disk is not reported as 'offline')."""
    def offline(exc: BaseException) -> ReproError:
        reason = getattr(exc, "reason", None) or exc
        return ReproError(f"fetch: cannot download {url} ({reason}); network unreachable or offline? no file written")

    try:
        resp = opener(url, timeout=timeout)
    except _NETWORK_ERRORS as exc:
        raise offline(exc) from None
    with resp, open(tmp, "wb") as out:
        while True:
            try:
                block = resp.read(1 << 20)
            except _NETWORK_ERRORS as exc:
                raise offline(exc) from None
            if not block:
                break
            out.write(block)


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
    try:
        if dest.exists() and expected and not force and io.sha256_file(dest) == expected:
            return {**lock["files"][key], "status": "cached"} if key in lock.get("files", {}) else \
                _record(entry, dest, expected, basis, "cached")
        return _fetch_to(entry, dest, expected, basis, opener, timeout)
    except OSError as exc:  # local: unreadable cached copy, unwritable or full download directory
        raise ReproError(f"fetch: {dest}: {exc.strerror or exc}; no file written") from None


def _fetch_to(entry: dict, dest: Path, expected: str | None, basis: str, opener: Opener, timeout: float) -> dict:
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


def _read_lock(path: Path) -> dict:
    """The download lock, checked: a damaged lock must not become a traceback or a trusted digest."""
    fix = "delete it to record the digests again on the next fetch"
    try:
        lock = io.read_json(path)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError):
        raise InputError(f"{path}: not valid JSON ({fix})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(lock, dict) or not isinstance(lock.setdefault("files", {}), dict):
        raise InputError(f"{path}: expected a JSON object with a 'files' mapping ({fix})")
    for key, rec in lock["files"].items():
        if not isinstance(rec, dict) or not _is_sha256(rec.get("sha256")):
            raise InputError(f"{path}: files.{key}.sha256: expected 64 lowercase hex digits ({fix})")
    return lock


def fetch_data(manifest: dict, data_dir: str | os.PathLike, keys: list[str] | None = None,
               opener: Opener | None = None, force: bool = False, timeout: float = 60.0) -> dict:
    """Fetch manifest files into data_dir; record digests in data_dir/manifest.lock.json (trust on first use)."""
    data_dir = Path(data_dir)
    check_manifest(manifest, "manifest")
    if data_dir.exists() and not data_dir.is_dir():
        raise InputError(f"{data_dir}: exists and is not a directory (expected the download directory)")
    for parent in data_dir.parents:
        if parent.exists() and not parent.is_dir():
            raise InputError(f"{data_dir}: {parent} is not a directory (expected a download directory path)")
    lock_path = data_dir / LOCK_NAME
    lock = _read_lock(lock_path) if lock_path.exists() else {"files": {}}
    lock["source"] = manifest.get("source", {})
    for key in keys or list(manifest["files"]):
        if key not in manifest["files"]:
            raise InputError(f"data/manifest.yaml: files.{key}: no such entry (have {', '.join(manifest['files'])})")
        lock["files"][key] = fetch_file(key, manifest["files"][key], data_dir, lock, opener=opener,
                                       timeout=timeout, force=force)
        try:
            io.write_json(lock_path, lock)  # after each file, so a later failure keeps earlier records
        except OSError as exc:
            raise ReproError(f"fetch: cannot write {lock_path} ({exc.strerror or exc})") from None
    return lock


