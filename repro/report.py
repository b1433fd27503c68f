"""`repro report`: one self-contained folder runs/<profile>/report/ with REPORT.md, every table,
every plot, the comparison, the environment and wall time / peak memory per stage."""

from __future__ import annotations

import importlib.metadata as md
import platform
import shutil
import subprocess
import time
from pathlib import Path

from .compare import REFERENCE_ROOT, REPO_ROOT, _fmt, compare_tables, comparison, regression_lines, summary_text
from .findings import markdown_lines as findings_lines
from .io import read_json, write_text
from .runtime import report_lines as runtime_lines

TABLE_ORDER = [("organism", "Mini organism: base-model sanity checks"), ("models", "T1 Models tested"),
               ("training", "T2 Training"), ("behavior", "T3 EM behaviour"), ("refusal", "T4 Refusal vector"),
               ("failed", "T5 Failed attempts"), ("extraction", "T6 Extraction grid"),
               ("codemode", "T7 Code-mode vector (beyond the findings)"),
               ("dynamics", "T8 Token-level dynamics (beyond the findings)")]
VERSIONED = ("torch", "transformers", "peft", "accelerate", "datasets", "tokenizers", "safetensors", "numpy",
             "scikit-learn", "unsloth", "unsloth_zoo", "trl", "bitsandbytes", "vllm")


def _git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha or "unknown") + (" (uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"


def environment_section(profile: dict, root: Path) -> list[str]:
    import torch

    device = (f"GPU: {torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
              else f"CPU only ({torch.get_num_threads()} torch threads)")
    lines = ["## Environment", "", f"- git commit: `{_git_commit()}`", f"- python {platform.python_version()} on {platform.platform()}",
             f"- device: {device}", f"- profile seed: {profile['seed']}; recipe seeds: "
             + ", ".join(f"{k} {v.get('seed')}" for k, v in profile.get("recipes", {}).items()),
             f"- vector seed: {profile['vectors'].get('seed')}", "", "| package | version |", "|---|---|"]
    for pkg in VERSIONED:
        try:
            lines.append(f"| {pkg} | {md.version(pkg)} |")
        except md.PackageNotFoundError:
            lines.append(f"| {pkg} | not installed |")
    digests = root / "data" / "digests.json"
    if digests.exists():
        lines += ["", "Data digests (sha256):", ""] + [f"- `{name}`: `{d}`" for name, d in read_json(digests).items()]
    return lines + [""]


def stages_section(root: Path) -> list[str]:
    from .runner import read_record

    found = (read_record(root, p.stem.replace("__", "/")) for p in (root / "stages").glob("*.json"))
    records = sorted((r for r in found if r and {"stage", "wall_seconds", "peak_rss_mb", "finished"} <= set(r)),
                     key=lambda r: str(r["finished"]))
    if not records:
        return ["## Stages", "", "No stage has run yet.", ""]
    lines = ["## Stages: wall time and peak memory", "", "| stage | wall (s) | peak RSS (MB) | finished |", "|---|---:|---:|---|"]
    for r in records:
        lines.append(f"| {r['stage']} | {r['wall_seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r['finished']} |")
    total = sum(r["wall_seconds"] for r in records)
    lines += [f"| **total (last run of each stage)** | {total:.1f} | {max(r['peak_rss_mb'] for r in records):.0f} | |", ""]
    return lines


def tables_section(root: Path, out: Path) -> list[str]:
    lines = []
    for name, title in TABLE_ORDER:
        md_path = root / "tables" / f"{name}.md"
        if not md_path.exists():
            continue
        body = md_path.read_text().strip().splitlines()
        if body and body[0].startswith("# "):  # the table's own title: the section heading replaces it
            body = body[1:]
        body = ["#" + ln if ln.startswith("#") else ln for ln in body]  # table sub-headings nest under the section
        lines += [f"## {title}", "", "\n".join(body).strip(), ""]
        for png in sorted((root / "tables").glob(f"{name}*.png")):
            shutil.copy2(png, out / png.name)
            lines += [f"![{png.stem}]({png.name})", ""]
    return lines


def paper_side_by_side(profile: dict, root: Path) -> list[str]:
    """For a non-paper profile: the paper's reference beside this profile's number at the same result path."""
    if profile["name"] == "paper":
        return []
    rows = compare_tables(REFERENCE_ROOT / "paper", root / "results")
    lines = ["## The paper's numbers beside this profile's", "",
             f"Profile `{profile['name']}` runs a different model: these columns are **different model, not comparable**;",
             "they show which quantities the mini organism reproduces in kind, not in value.", "",
             "Claims show the paper's predicate and whether it holds for this profile's numbers.", "",
             "| table | quantity | paper | this profile | |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['table']} | {r['quantity']} | {_fmt(r['reference'])} | {_fmt(r['reproduced'])} | different model, not comparable |")
    return lines + [""]


def headline(doc: dict) -> list[str]:
    """The report's opening: the findings verdicts, then one line on the regression check."""
    lines = findings_lines(doc["findings"], doc["profile"], doc.get("runs_without_findings_row", []))
    reg = doc["regression"]
    if reg["kind"] == "none":
        lines += [f"{reg['label']}: no `{reg['reference_dir']}` directory, nothing to check.", ""]
    else:
        lines += [f"{reg['label']} (`{reg['reference_dir']}`): **{summary_text(reg['summary'])}** "
                  f"({doc['exit_reason']}; rows at the end of this report).", ""]
    return lines


def build_report(profile: dict, root: Path) -> Path:
    root = Path(root)
    out = root / "report"
    out.mkdir(parents=True, exist_ok=True)
    doc = comparison(profile, root)  # fresh from results/, so the headline matches the tables below
    lines = [f"# em-repro report: profile `{profile['name']}`", "",
             f"{profile.get('description', '')}", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')}.", ""]
    lines += headline(doc)
    lines += tables_section(root, out)
    lines += regression_lines(doc)
    lines += paper_side_by_side(profile, root)
    lines += stages_section(root)
    lines += runtime_lines(root)
    lines += environment_section(profile, root)
    return write_text(out / "REPORT.md", "\n".join(lines))
