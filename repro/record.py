"""Re-record a profile's own reference numbers (paper_tables/<profile>/) from a reviewed run.

The reference files are the templates: each entry keeps its quantity, path, kind and source; the
value is read from the run's results, and a numeric entry's tolerance comes from a seed sweep
(repro.sweep: 1.5 x the spread over the reference run and K seeds) when one is given. Claims are
kept as written. Only a profile's own directory is ever written: the findings' published numbers
(paper_tables/paper/) are never recorded from a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .compare import _read_reference_yaml, lookup
from .errors import InputError, ReproError
from .io import read_json, write_text

MIN_SPREAD_ROWS = 3   # the sweep must cover at least this many seeds, the reference run's own seed included


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def record_table(path: Path, results_dir: Path, spread: dict[str, dict], source: str) -> tuple[str, int]:
    doc, _ = _read_reference_yaml(path)
    results_file = results_dir / doc["results"]
    if not results_file.is_file():
        raise ReproError(f"{results_file}: missing (run the profile before recording its references)")
    results = read_json(results_file)
    changed = 0
    for entry in doc["entries"]:
        if entry.get("kind") == "claim" or "path" not in entry:
            continue
        try:
            value = lookup(results, entry["path"])
        except Exception:  # noqa: BLE001 - a path the run does not produce: say which
            raise ReproError(f"{path}: {entry['quantity']!r}: {entry['path']} not in {results_file.name}") from None
        if _num(value) and not isinstance(value, int):
            value = round(float(value), 6)
        entry["value"] = value
        entry["source"] = source
        if entry.get("kind") == "numeric":
            q = spread.get(entry["quantity"])
            if q and "suggested_tolerance" in q:
                entry["tolerance"] = {"abs": round(max(q["suggested_tolerance"], 1e-6), 6)}
                entry["note"] = (f"tolerance = 1.5 x (max - min) over the reference run and {len(q['values']) - 1} "
                                 f"seeds (min {q['min']:.4g}, max {q['max']:.4g}; make sweep)")
        changed += 1
    header = "".join(line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
                     if line.startswith("#"))
    write_text(path, header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110))
    return str(path), changed


def record_profile(profile: dict, root: Path, ref_root: Path, sweep_file: Path | None) -> list[tuple[str, int]]:
    from .findings import load_findings

    name = profile["name"]
    if name in load_findings().get("published_references", []):
        raise InputError(f"paper_tables/{name}/: holds the findings' published numbers; never recorded from a run")
    table_dir = Path(ref_root) / name
    if not table_dir.is_dir():
        raise InputError(f"{table_dir}: no reference directory for profile {name!r} (create its template files first)")
    spread: dict[str, dict] = {}
    if sweep_file is not None:
        doc = read_json(sweep_file)
        runs = list(doc.get("runs", []))
        if "reference" not in runs:
            raise InputError(f"{sweep_file}: no 'reference' run; a sweep of the run being recorded is expected")
        if len(runs) < MIN_SPREAD_ROWS:
            raise InputError(f"{sweep_file}: {len(runs)} seed(s), the reference run's included; tolerances need "
                             f">= {MIN_SPREAD_ROWS}")
        spread = {q["quantity"]: q for q in doc["quantities"]}
    source = f"reviewed {name} run (make reproduce-all PROFILE={name})"
    return [record_table(p, Path(root) / "results", spread, source) for p in sorted(table_dir.glob("*.yaml"))]
