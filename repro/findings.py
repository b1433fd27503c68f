"""Findings verdicts: the findings' scale-free claims (paper_tables/findings.yaml), evaluated on any profile.

Each claim is data: which results files it reads, which findings row it is about (the profile's
`findings_rows` maps a findings row to the run standing for it), its thresholds, the numbers shown
beside it and a predicate in the safe grammar of repro.compare. A verdict is one of

    REPRODUCED / NOT REPRODUCED   the predicate holds / does not hold on the profile's numbers
    NOT RUN                       a results file, a value or a precondition is missing
    NOT APPLICABLE                no run of the profile stands for the row, or `applies_if` is false

Verdicts are scientific outcomes: nothing here decides an exit code. The regression check against
a profile's own recorded numbers is repro.compare's business.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import yaml

from . import compare as _compare
from .compare import Missing, check_expr, evaluate_claim
from .errors import InputError

REPRODUCED, NOT_REPRODUCED, NOT_RUN, NOT_APPLICABLE = "REPRODUCED", "NOT REPRODUCED", "NOT RUN", "NOT APPLICABLE"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_RUN, NOT_APPLICABLE)
FINDINGS_FILE = "findings.yaml"
ROWS_KEY = "findings_rows"  # profile key: {findings row: run name}, outside every stage's cache fingerprint
_RESERVED = ("profile", "params", "subject", "row")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_CLAIM_KEYS = {"id", "claim", "source", "rows", "applies_if", "results", "params", "pick", "requires", "numbers",
               "expr", "detail"}


def findings_path(ref_root: str | Path | None = None) -> Path:
    return Path(ref_root or _compare.REFERENCE_ROOT) / FINDINGS_FILE  # read at call time: tests repoint it


# ----------------------------------------------------------------------------- loading
def load_findings(path: str | Path | None = None) -> dict:
    """paper_tables/findings.yaml, validated: {published_references, rows, claims}."""
    path = Path(path) if path else findings_path()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the findings claims ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise InputError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), dict) or not isinstance(doc.get("claims"), list):
        raise InputError(f"{path}: expected a mapping with 'rows' (row id: title) and 'claims' (list)")
    published = doc.get("published_references", [])
    if not (isinstance(published, list) and all(isinstance(p, str) for p in published)):
        raise InputError(f"{path}: published_references: expected a list of paper_tables/ directory names")
    rows = doc["rows"]
    for row, title in rows.items():
        if not (isinstance(row, str) and _NAME.match(row)) or not isinstance(title, str):
            raise InputError(f"{path}: rows.{row}: expected a lower_snake_case id and a title string")
    claims, seen = [], set()
    for i, c in enumerate(doc["claims"]):
        claim = _check_claim(c, f"{path}: claims[{i}]", rows)
        if claim["id"] in seen:
            raise InputError(f"{path}: claims[{i}].id {claim['id']!r}: duplicate")
        seen.add(claim["id"])
        claims.append(claim)
    return {"published_references": published, "rows": rows, "claims": claims, "file": str(path)}


def _check_claim(c: Any, where: str, rows: dict) -> dict:
    if not isinstance(c, dict):
        raise InputError(f"{where}: expected a mapping")
    unknown = sorted(set(c) - _CLAIM_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)} (expected {', '.join(sorted(_CLAIM_KEYS))})")
    for key in ("id", "claim", "source", "expr", "detail"):
        if not isinstance(c.get(key), str) or not c[key].strip():
            raise InputError(f"{where}.{key}: expected a non-empty string")
    where = f"{where} ({c['id']})"
    claim = {"id": c["id"], "claim": c["claim"], "source": c["source"], "expr": c["expr"], "detail": c["detail"],
             "rows": c.get("rows"), "applies_if": c.get("applies_if"), "results": c.get("results"),
             "params": c.get("params", {}), "pick": c.get("pick", {}), "requires": c.get("requires", []),
             "numbers": c.get("numbers", {})}
    if claim["rows"] is not None:
        if not (isinstance(claim["rows"], list) and claim["rows"]):
            raise InputError(f"{where}.rows: expected a non-empty list of findings rows")
        for r in claim["rows"]:
            if r not in rows:
                raise InputError(f"{where}.rows: {r!r} is not a findings row (rows: {', '.join(rows)})")
    results = claim["results"]
    if not (isinstance(results, list) and results and all(isinstance(r, str) and _NAME.match(r) for r in results)):
        raise InputError(f"{where}.results: expected a non-empty list of results file stems (e.g. models)")
    for key in ("params", "pick", "numbers"):
        if not isinstance(claim[key], dict):
            raise InputError(f"{where}.{key}: expected a mapping")
    for name, value in claim["params"].items():
        if not (isinstance(value, (int, float)) and not isinstance(value, bool)):
            raise InputError(f"{where}.params.{name}: expected a number, got {value!r}")
    names = set(_RESERVED) | set(results)
    for name, spec in claim["pick"].items():
        if name in names or not _NAME.match(str(name)):
            raise InputError(f"{where}.pick.{name}: expected a new lower_snake_case name (not {', '.join(sorted(names))})")
        if not (isinstance(spec, dict) and set(spec) == {"from", "where"} and isinstance(spec["where"], dict)
                and spec["where"]):
            raise InputError(f"{where}.pick.{name}: expected {{from: list path, where: {{field: expression}}}}")
        _expr(spec["from"], f"{where}.pick.{name}.from")
        for field, e in spec["where"].items():
            _expr(e, f"{where}.pick.{name}.where.{field}")
        names.add(name)
    if not isinstance(claim["requires"], list):
        raise InputError(f"{where}.requires: expected a list of {{expr, otherwise}}")
    for j, req in enumerate(claim["requires"]):
        if not (isinstance(req, dict) and set(req) == {"expr", "otherwise"} and isinstance(req["otherwise"], str)):
            raise InputError(f"{where}.requires[{j}]: expected {{expr: predicate, otherwise: text}}")
        _expr(req["expr"], f"{where}.requires[{j}].expr")
    for name, e in claim["numbers"].items():
        _expr(e, f"{where}.numbers.{name}")
    if claim["applies_if"] is not None:
        _expr(claim["applies_if"], f"{where}.applies_if")
    _expr(claim["expr"], f"{where}.expr")
    overlap = set(claim["numbers"]) & set(claim["params"])
    if overlap:
        raise InputError(f"{where}: {', '.join(sorted(overlap))}: both a number and a param (detail fields must be unambiguous)")
    fields = set(claim["numbers"]) | set(claim["params"])
    try:
        parsed = list(string.Formatter().parse(claim["detail"]))
    except ValueError as exc:
        raise InputError(f"{where}.detail: bad format string ({exc})") from None
    for _, field, _, conv in parsed:
        if field is not None and (field not in fields or conv):
            raise InputError(f"{where}.detail: field {{{field}}} is not a number or param of the claim")
    return claim


def _expr(e: Any, where: str) -> None:
    try:
        check_expr(e)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


# ----------------------------------------------------------------------------- rows of a profile
def profile_rows(profile: dict, spec: dict) -> dict[str, str]:
    """{findings row: run name} from the profile's `findings_rows` mapping, checked against its runs."""
    where = profile.get("profile_file", profile.get("name", "profile"))
    mapping = profile.get(ROWS_KEY) or {}
    if not isinstance(mapping, dict):
        raise InputError(f"{where}: {ROWS_KEY}: expected a mapping of findings row -> run name")
    runs = [r["name"] for r in profile.get("runs", [])]
    seen: dict[str, str] = {}
    for row, run in mapping.items():
        if row not in spec["rows"]:
            raise InputError(f"{where}: {ROWS_KEY}.{row}: not a findings row (expected one of {', '.join(spec['rows'])})")
        if run not in runs:
            raise InputError(f"{where}: {ROWS_KEY}.{row}: {run!r} is not a run of the profile (runs: {', '.join(runs)})")
        if run in seen:
            raise InputError(f"{where}: {ROWS_KEY}.{row}: run {run!r} already stands for {seen[run]!r} (one row per run)")
        seen[run] = row
    return dict(mapping)


def runs_without_row(profile: dict) -> list[str]:
    """Runs standing for no findings row (sensitivity runs, e.g. a recipe at another learning rate)."""
    mapped = set((profile.get(ROWS_KEY) or {}).values()) if isinstance(profile.get(ROWS_KEY), dict) else set()
    return [r["name"] for r in profile.get("runs", []) if r["name"] not in mapped]


# ----------------------------------------------------------------------------- evaluation
def evaluate_findings(profile: dict, root: Path, spec: dict | None = None) -> list[dict]:
    """One verdict per claim (per findings row for row claims), from root/results/*.json.

    Each item: id, claim, row, run, verdict, numbers, detail, source, params.
    """
    spec = spec or load_findings()
    root = Path(root)
    mapping = profile_rows(profile, spec)
    cache: dict[str, Any] = {}
    out = []
    for claim in spec["claims"]:
        for row in claim["rows"] or [None]:
            out.append(_evaluate(claim, row, mapping.get(row) if row else None, profile, root, cache, spec))
    return out


def _read(root: Path, stem: str, cache: dict) -> Any:
    if stem not in cache:
        path = root / "results" / f"{stem}.json"
        if not path.is_file():
            cache[stem] = Missing(f"results/{stem}.json missing")
        else:
            try:
                cache[stem] = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, RecursionError) as exc:
                raise InputError(f"{path}: invalid JSON ({str(exc)[:120]})") from None
    return cache[stem]


def _evaluate(claim: dict, row: str | None, run: str | None, profile: dict, root: Path, cache: dict,
              spec: dict) -> dict:
    item = {"id": f"{claim['id']}:{row}" if row and len(claim["rows"]) > 1 else claim["id"],
            "claim": claim["claim"], "row": row, "row_title": spec["rows"].get(row) if row else None,
            "run": run, "verdict": NOT_RUN, "numbers": {}, "detail": "", "source": claim["source"],
            "params": dict(claim["params"])}
    if row and run is None:
        item.update(verdict=NOT_APPLICABLE,
                    detail=f"no run of profile {profile.get('name')!r} stands for this row ({ROWS_KEY})")
        return item
    if claim["applies_if"] is not None:
        try:
            applies = evaluate_claim(claim["applies_if"], {"profile": profile})
        except (Missing, TypeError, ValueError):
            applies = False
        if not applies:
            item.update(verdict=NOT_APPLICABLE, detail=f"profile {profile.get('name')!r}: {claim['applies_if']} is false")
            return item
    ctx: dict[str, Any] = {"profile": profile, "params": claim["params"], "subject": run, "row": row}
    for stem in claim["results"]:
        data = _read(root, stem, cache)
        if isinstance(data, Missing):
            item["detail"] = f"{data} (run `repro table {stem}`)"
            return item
        ctx[stem] = data
    try:
        for name, pick in claim["pick"].items():
            ctx[name] = _pick(ctx, pick)
    except Missing as exc:
        item["detail"] = f"not produced: {exc}"
        return item
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        item["detail"] = f"cannot evaluate: {exc}"
        return item
    item["numbers"] = {name: _number(e, ctx) for name, e in claim["numbers"].items()}
    try:
        for req in claim["requires"]:
            if not evaluate_claim(req["expr"], ctx):
                item["detail"] = req["otherwise"]
                return item
        holds = evaluate_claim(claim["expr"], ctx)
    except Missing as exc:
        item["detail"] = f"not produced: {exc}"
        return item
    except (TypeError, ValueError, ZeroDivisionError) as exc:  # a produced value of the wrong type
        item["detail"] = f"cannot evaluate: {exc}"
        return item
    item["verdict"] = REPRODUCED if holds is True or (not isinstance(holds, bool) and bool(holds)) else NOT_REPRODUCED
    item["detail"] = render_detail(claim["detail"], {**claim["params"], **item["numbers"]})
    return item


def _pick(ctx: dict, pick: dict) -> dict:
    items = evaluate_claim(pick["from"], ctx)
    want = {field: evaluate_claim(e, ctx) for field, e in pick["where"].items()}
    if not isinstance(items, list):
        raise Missing(f"{pick['from']}: not a list")
    for it in items:
        if isinstance(it, dict) and all(field in it and it[field] == v for field, v in want.items()):
            return it
    cond = ", ".join(f"{f} == {v!r}" for f, v in want.items())
    raise Missing(f"no item of {pick['from']} with {cond}")


def _number(expr: str, ctx: dict) -> Any:
    try:
        return evaluate_claim(expr, ctx)
    except (Missing, TypeError, ValueError, ZeroDivisionError):
        return None


def render_detail(template: str, values: dict) -> str:
    """str.format over plain names, with '-' for a value that is absent or does not fit its format."""
    out = []
    for literal, field, spec, _ in string.Formatter().parse(template):
        out.append(literal)
        if field is None:
            continue
        value = values.get(field)
        try:
            out.append("-" if value is None else format(value, spec or ""))
        except (TypeError, ValueError):
            out.append(str(value))
    return "".join(out)


# ----------------------------------------------------------------------------- output
def summary(items: list[dict]) -> dict:
    return {v: sum(i["verdict"] == v for i in items) for v in VERDICTS}


def _fmt_number(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def numbers_text(numbers: dict) -> str:
    return ", ".join(f"{k} {_fmt_number(v)}" for k, v in numbers.items())


def markdown_lines(items: list[dict], profile_name: str, unmapped_runs: list[str] = (), heading: str = "##") -> list[str]:
    """The findings verdicts table: the headline of compare.md and REPORT.md."""
    s = summary(items)
    lines = [f"{heading} Findings verdicts (profile `{profile_name}`)", "",
             "Each scale-free claim of the findings (paper_tables/findings.yaml), evaluated on this profile's "
             "results. A verdict is a scientific outcome; it never sets the exit code.", "",
             " / ".join(f"{v} {s[v]}" for v in VERDICTS), "",
             "| finding | findings row (run) | verdict | detail | numbers |", "|---|---|---|---|---|"]
    for i in items:
        who = f"{i['row']} ({i['run']})" if i["row"] and i["run"] else (i["row"] or "profile")
        cells = [i["claim"], who, f"**{i['verdict']}**", i["detail"], numbers_text(i["numbers"])]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    if unmapped_runs:
        lines += ["", "Runs standing for no findings row (sensitivity runs, in the tables only): "
                  + ", ".join(f"`{r}`" for r in unmapped_runs) + "."]
    return lines + [""]
