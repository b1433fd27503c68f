"""Profiles are data: YAML files under repro/profiles, optionally extending another profile."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

PACKAGE_DIR = Path(__file__).resolve().parent
PROFILES_DIR = PACKAGE_DIR / "profiles"
# Data, reference tables and model configs live beside the package in the repository checkout
# (the Makefile installs the package in editable mode, so this holds for every entry point).
REPO_ROOT = PACKAGE_DIR.parent
RUNS_ROOT = REPO_ROOT / "runs"          # default parent of run directories (runs/<profile>)


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def _read_profile_file(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise InputError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of profile settings at top level")
    return data


def deep_merge(base: dict, override: dict) -> dict:
    """Override wins; mappings merge recursively; lists and scalars are replaced whole."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resolve_path(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.exists():
            raise InputError(f"{candidate}: profile file not found")
        return candidate
    path = PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise InputError(f"profile {name_or_path!r}: unknown (available: {', '.join(available_profiles())})")
    return path


class ProfileError(InputError):
    """A profile that fails its schema or graph checks: every problem, one line each."""

    def __init__(self, path, problems: list[str]):
        self.path, self.problems = path, list(problems)
        more = f" (+{len(problems) - 1} more: repro plan lists them all)" if len(problems) > 1 else ""
        super().__init__(f"{path}: {problems[0]}{more}")


def _merged(name_or_path: str, _seen: tuple = ()) -> tuple[dict, Path]:
    path = _resolve_path(name_or_path)
    if path in _seen:
        raise InputError(f"{path}: 'extends' forms a cycle")
    data = _read_profile_file(path)
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise InputError(f"{path}: extends: expected a profile name, got {parent!r}")
        data = deep_merge(_merged(parent, _seen + (path,))[0], data)
    return data, path


def profile_problems(name_or_path: str) -> tuple[Path, list[str], dict | None]:
    """(file, every schema + graph problem, validated profile dict or None)."""
    from pydantic import ValidationError

    from .schema import Profile, format_errors, graph_errors

    data, path = _merged(name_or_path)
    data.pop("profile_file", None)
    try:
        model = Profile.model_validate(data)
    except ValidationError as exc:
        return path, format_errors(exc, data), None
    problems = graph_errors(model, REPO_ROOT)
    model.profile_file = str(path)
    return path, problems, model.model_dump(mode="python", exclude_none=True)


def load_profile(name_or_path: str) -> dict:
    """Load and validate a profile by name (repro/profiles/NAME.yaml) or path; `extends: other`
    merges onto `other`. Returns the validated profile as a plain dict with every default filled."""
    path, problems, profile = profile_problems(name_or_path)
    if problems:
        raise ProfileError(path, problems)
    return profile


def run_dir(profile: dict, out: str | Path | None = None) -> Path:
    return Path(out) if out else RUNS_ROOT / profile["name"]


def repo_path(rel: str | Path) -> Path:
    """A path from the profile, relative to the repository root unless absolute."""
    rel = Path(rel)
    return rel if rel.is_absolute() else REPO_ROOT / rel


def config_hash(obj: Any) -> str:
    """Short, stable digest of a JSON-able config fragment (cache keys)."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def get_run(profile: dict, name: str) -> dict:
    for run in profile["runs"]:
        if run["name"] == name:
            return run
    raise InputError(f"run {name!r}: not in profile {profile['name']} (runs: {', '.join(r['name'] for r in profile['runs'])})")


def em_run(profile: dict) -> dict:
    """The run the trait-vector tables score (role: em)."""
    runs = [r for r in profile["runs"] if r.get("role") == "em"]
    if len(runs) != 1:
        raise InputError(f"{profile.get('profile_file', profile['name'])}: expected exactly one run with role 'em', found {len(runs)}")
    return runs[0]


def model_source(spec: dict) -> str:
    """How a model entry names its weights, for tables and plans: the hub id / path, or the GGUF file."""
    if spec.get("gguf"):
        g = spec["gguf"]
        return f"{g['distribution']}=={g['version']}:{g['file']}"
    return str(spec.get("path"))


def given_model(run: dict, options: dict | None) -> str | None:
    """The already finetuned model a run evaluates instead of training, if any: `--em-model`
    (the EM run only) wins over the run's own `em_model`. The one place this override is decided."""
    override = (options or {}).get("em_model") if run.get("role") == "em" else None
    return override or run.get("em_model")


def recipe_for(profile: dict, run: dict) -> dict | None:
    return profile.get("recipes", {}).get(run["recipe"]) if "recipe" in run else None
