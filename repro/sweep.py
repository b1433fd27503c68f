"""Seed sweep: the profile's whole pipeline for K seeds, each findings verdict as k/K seeds and the
spread of every number the profile records.

Each seed runs as `--seed N` does (repro.seeds.with_seed: the profile seed and every recipe seed,
its own run directory runs/<profile>/seed-<N>). The reference run is the profile as written
(runs/<profile>). A recorded number's tolerance should cover what a seed change does to it:
`suggested_tolerance` = 1.5 x (max - min) over the reference run and the K seeds (absolute; at
least the smallest step the quantity can take, e.g. 1/n for a rate over n answers, when known).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from .io import write_json, write_text

SPREAD_FACTOR = 1.5


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def aggregate(reference: dict, seeds: dict[int, dict]) -> dict:
    """reference / seeds[N]: {"findings": [verdict dicts], "rows": [regression rows]} of one run."""
    runs = {"reference": reference, **{f"seed-{k}": v for k, v in seeds.items()}}
    findings: dict[str, dict] = {}
    for name, run in runs.items():
        for f in run["findings"]:
            entry = findings.setdefault(f["id"], {"id": f["id"], "claim": f.get("claim", ""), "verdicts": {}})
            entry["verdicts"][name] = f["verdict"]
    for entry in findings.values():
        seed_verdicts = [v for k, v in entry["verdicts"].items() if k != "reference"]
        entry["reproduced_seeds"] = sum(v == "REPRODUCED" for v in seed_verdicts)
        entry["seeds"] = len(seed_verdicts)
    quantities: dict[str, dict] = {}
    for name, run in runs.items():
        for row in run["rows"]:
            q = quantities.setdefault(row["quantity"], {"quantity": row["quantity"], "table": row.get("table"),
                                                         "kind": row.get("kind"), "values": {}, "verdicts": {}})
            q["values"][name] = row.get("reproduced")
            q["verdicts"][name] = row.get("verdict")
    for q in quantities.values():
        nums = [v for v in (_num(x) for x in q["values"].values()) if v is not None]
        q["n"] = len(nums)
        if len(nums) >= 2:
            q.update(min=min(nums), max=max(nums), mean=statistics.fmean(nums), sd=statistics.stdev(nums),
                     suggested_tolerance=SPREAD_FACTOR * (max(nums) - min(nums)))
    return {"runs": list(runs), "findings": list(findings.values()), "quantities": list(quantities.values()),
            "rule": f"suggested_tolerance = {SPREAD_FACTOR} x (max - min) over the reference run and every seed"}


def _f(x: Any) -> str:
    v = _num(x)
    if v is None:
        return "—" if x is None else str(x)
    return f"{v:.4g}"


def render(doc: dict, profile_name: str) -> str:
    seeds = [r for r in doc["runs"] if r != "reference"]
    lines = [f"# Seed sweep: profile `{profile_name}` ({len(seeds)} seeds + the reference run)", "",
             "## Findings verdicts per seed", "",
             "| finding | reference | " + " | ".join(seeds) + " | reproduced |",
             "|---|---|" + "---|" * len(seeds) + "---|"]
    for f in doc["findings"]:
        v = f["verdicts"]
        lines.append(f"| {f['id']} | {v.get('reference', '—')} | " + " | ".join(v.get(s, "—") for s in seeds)
                     + f" | {f['reproduced_seeds']}/{f['seeds']} seeds |")
    lines += ["", "## Spread of every recorded number", "", doc["rule"], "",
              "| quantity | reference | " + " | ".join(seeds) + " | min | max | sd | suggested tolerance |",
              "|---|---|" + "---|" * len(seeds) + "---|---|---|---|"]
    for q in doc["quantities"]:
        vals = q["values"]
        lines.append(f"| {q['quantity']} | {_f(vals.get('reference'))} | " + " | ".join(_f(vals.get(s)) for s in seeds)
                     + f" | {_f(q.get('min'))} | {_f(q.get('max'))} | {_f(q.get('sd'))} | {_f(q.get('suggested_tolerance'))} |")
    return "\n".join(lines) + "\n"


def write_sweep(doc: dict, out_dir: Path, profile_name: str) -> Path:
    write_json(out_dir / "sweep.json", doc)
    return write_text(out_dir / "sweep.md", render(doc, profile_name))
