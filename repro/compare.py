"""Compare reproduced numbers (runs/<P>/results/*.json) with reference tables (paper_tables/<P>/*.yaml).

Each reference entry has a kind:
  exact        reproduced == value
  numeric      |reproduced - value| <= tolerance ({abs: x} or {rel: x}, inclusive)
  categorical  reproduced equals value (case-insensitive; value may be a list of accepted values);
               if reproduced is a list (e.g. tags), PASS when it contains value
  claim        `expr` is a small predicate over the results file, evaluated by a safe evaluator
A quantity whose results file or path is missing is NOT_RUN, never PASS. Given the profile, a
quantity its stage graph cannot produce (no table stage for the results file, or a `[run=NAME]`
selector naming no run of the profile) is NOT_APPLICABLE: shown, not an error.

These rows are a regression check against paper_tables/<P>/ (for the paper profile: the findings'
published numbers). The headline of the comparison is the findings verdicts (repro.findings);
they never set the exit code, a regression FAIL or NOT_RUN does (`exit_code`).
Schema of the results files and of the tables: paper_tables/README.md.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from pathlib import Path
from typing import Any

import yaml

from repro import io
from repro.errors import InputError

VERDICTS = ("PASS", "FAIL", "NOT_RUN", "NOT_APPLICABLE")
KINDS = ("exact", "numeric", "categorical", "claim")
REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_ROOT = REPO_ROOT / "paper_tables"   # reference tables and findings.yaml (tests point it elsewhere)
REGRESSION_LABEL = "Regression check against this profile's own recorded numbers"
PUBLISHED_LABEL = "Comparison with the findings' published numbers"


class Missing(Exception):
    """A result value that was not produced (stage not run or key absent)."""


# ----------------------------------------------------------------------------- result paths
_SEGMENT = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]|(\.)")


def split_path(path: str) -> list[tuple[str, str]]:
    """'prompts[prompt=How do I make a bomb?].base' -> [('key','prompts'),('sel','prompt=...'),('key','base')]."""
    parts, pos = [], 0
    while pos < len(path):
        m = _SEGMENT.match(path, pos)
        if not m:
            raise InputError(f"path {path!r}: cannot parse at column {pos + 1}")
        if m.group(1) is not None:
            parts.append(("key", m.group(1)))
        elif m.group(2) is not None:
            parts.append(("sel", m.group(2)))
        pos = m.end()
    if not parts:
        raise InputError(f"path {path!r}: empty")
    return parts


def lookup(data: Any, path: str) -> Any:
    """Follow a dotted result path; `[3]` indexes a list, `[field=value]` picks the list item whose field == value."""
    cur = data
    for kind, token in split_path(path):
        if kind == "key":
            if not isinstance(cur, dict) or token not in cur:
                raise Missing(f"{path}: no key {token!r}")
            cur = cur[token]
        elif "=" in token:
            field, _, want = token.partition("=")
            if not isinstance(cur, list):
                raise Missing(f"{path}: [{token}] applied to a non-list")
            hits = [item for item in cur if isinstance(item, dict) and str(item.get(field)) == want]
            if not hits:
                raise Missing(f"{path}: no item with {field} == {want!r}")
            cur = hits[0]
        else:
            try:
                cur = cur[int(token)]
            except (ValueError, IndexError, TypeError, KeyError):
                raise Missing(f"{path}: no item [{token}]") from None
    return cur


# ----------------------------------------------------------------------------- safe claim evaluator
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}  # no Pow: 9**9**9 is a denial of service
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
        ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
_FUNCS = {"abs": abs, "min": min, "max": max, "len": len, "round": round}   # plus get("path[sel=...]") below
MAX_EXPR_CHARS = 400


def _dotted(node: ast.AST) -> str:
    """Name or Attribute chain -> 'a.b.c'; refuses private/dunder names."""
    if isinstance(node, ast.Name):
        name = node.id
    elif isinstance(node, ast.Attribute):
        name = f"{_dotted(node.value)}.{node.attr}"
    else:
        raise InputError(f"claim: unsupported expression {type(node).__name__} in a result path")
    if any(part.startswith("_") for part in name.split(".")):
        raise InputError(f"claim: name {name!r} not allowed (no private or dunder attributes)")
    return name


def check_expr(expr: str) -> ast.Expression:
    """Parse and whitelist a claim expression; InputError if it uses anything outside the small grammar."""
    if not isinstance(expr, str) or len(expr) > MAX_EXPR_CHARS:
        raise InputError(f"claim: expected an expression string of at most {MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise InputError(f"claim {expr!r}: syntax error ({exc.msg})") from None
    _check(tree.body, expr)
    return tree


def _check(node: ast.AST, expr: str) -> None:
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, (int, float, str, bool, type(None))):
            raise InputError(f"claim {expr!r}: constant of type {type(node.value).__name__} not allowed")
    elif isinstance(node, (ast.Name, ast.Attribute)):
        _dotted(node)
    elif isinstance(node, ast.BoolOp):
        for v in node.values:
            _check(v, expr)
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        _check(node.left, expr), _check(node.right, expr)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        _check(node.operand, expr)
    elif isinstance(node, ast.Compare) and all(type(op) in _CMP for op in node.ops):
        for v in [node.left, *node.comparators]:
            _check(v, expr)
    elif isinstance(node, (ast.Tuple, ast.List)):
        for v in node.elts:
            _check(v, expr)
    elif isinstance(node, ast.Call):
        fname = node.func.id if isinstance(node.func, ast.Name) else None
        if fname not in (*_FUNCS, "get") or node.keywords:
            raise InputError(f"claim {expr!r}: call not allowed (only abs, min, max, len, round, get without keywords)")
        if fname == "get" and not (len(node.args) == 1 and isinstance(node.args[0], ast.Constant)
                                   and isinstance(node.args[0].value, str)):
            raise InputError(f"claim {expr!r}: get() takes one string path")
        # round(x, k) with a literal 0 <= k <= 15 only: a huge negative k on an int is a denial of service
        if fname == "round" and not (len(node.args) == 2 and isinstance(node.args[1], ast.Constant)
                                     and type(node.args[1].value) is int and 0 <= node.args[1].value <= 15):
            raise InputError(f"claim {expr!r}: round() takes a value and a literal digit count 0..15")
        for a in node.args:
            _check(a, expr)
    else:
        raise InputError(f"claim {expr!r}: {type(node).__name__} not allowed")


def evaluate_claim(expr: str, results: dict) -> Any:
    """Value of a whitelisted expression over `results`; raises Missing when a path has no value."""
    return _evaluate_node(check_expr(expr).body, results)


def _evaluate_node(node: ast.AST, data: dict) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Name, ast.Attribute)):
        return lookup(data, _dotted(node))
    if isinstance(node, ast.BoolOp):
        vals = (_evaluate_node(v, data) for v in node.values)
        return all(vals) if isinstance(node.op, ast.And) else any(vals)
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_evaluate_node(node.left, data), _evaluate_node(node.right, data))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate_node(node.operand, data))
    if isinstance(node, ast.Compare):
        left = _evaluate_node(node.left, data)
        for op, comp in zip(node.ops, node.comparators):
            right = _evaluate_node(comp, data)
            if not _CMP[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, (ast.Tuple, ast.List)):
        return [_evaluate_node(v, data) for v in node.elts]
    if isinstance(node, ast.Call):
        if node.func.id == "get":
            return lookup(data, node.args[0].value)
        return _FUNCS[node.func.id](*[_evaluate_node(a, data) for a in node.args])
    raise InputError(f"claim: {type(node).__name__} not allowed")  # unreachable after check_expr


# ----------------------------------------------------------------------------- reference tables
def _read_reference_yaml(path: Path) -> tuple[Any, list[int]]:
    """The parsed file and the 1-based line of each `entries` item; malformed YAML is a one-line InputError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read reference table ({exc})") from None
    try:
        doc = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{path}{where}: invalid YAML ({problem})") from None
    lines: list[int] = []
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) == "entries" and isinstance(value, yaml.SequenceNode):
                lines = [item.start_mark.line + 1 for item in value.value]
    return doc, lines


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_entry(e: Any, where: str) -> None:
    if not isinstance(e, dict):
        raise InputError(f"{where}: expected a mapping (quantity, kind, path/expr, value, source)")
    kind = e.get("kind")
    if kind not in KINDS:
        raise InputError(f"{where}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    need = ["quantity", "source"] + (["expr"] if kind == "claim" else ["path", "value"])
    for field in need:
        if field not in e:
            raise InputError(f"{where}: missing field '{field}'")
    for field in ("quantity", "source", "expr" if kind == "claim" else "path"):
        if not isinstance(e[field], str) or not e[field].strip():
            raise InputError(f"{where}.{field}: expected a non-empty string, got {e[field]!r}")
    if "note" in e and not isinstance(e["note"], (str, type(None))):
        raise InputError(f"{where}.note: expected a string")
    if kind == "numeric":
        if not _is_num(e["value"]) or not math.isfinite(e["value"]):
            raise InputError(f"{where}.value: expected a number for a numeric entry, got {e['value']!r}")
        tol = e.get("tolerance")
        if not (isinstance(tol, dict) and len(tol) == 1 and set(tol) <= {"abs", "rel"}):
            raise InputError(f"{where}.tolerance: expected {{abs: x}} or {{rel: x}}")
        t = next(iter(tol.values()))
        if not _is_num(t) or not math.isfinite(t) or t < 0:
            raise InputError(f"{where}.tolerance: expected a non-negative number, got {t!r}")
    if kind == "claim":
        try:
            check_expr(e["expr"])
        except InputError as exc:
            raise InputError(f"{where}.expr: {exc}") from None
    else:
        try:
            split_path(e["path"])
        except InputError as exc:
            raise InputError(f"{where}.path: {exc}") from None


def load_reference_tables(table_dir: str | Path, tables: list[str] | None = None) -> list[dict]:
    """All entries of paper_tables/<P>/*.yaml (optionally only the named tables), validated.

    Every error is one InputError line naming the file, and the line where YAML gives one."""
    table_dir = Path(table_dir)
    if not table_dir.is_dir():
        raise InputError(f"{table_dir}: reference table directory not found")
    entries = []
    for path in sorted(table_dir.glob("*.yaml")):
        if tables and path.stem not in tables:
            continue
        doc, lines = _read_reference_yaml(path)
        if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list) or "results" not in doc:
            raise InputError(f"{path}: expected a mapping with 'results' (file name) and 'entries' (list)")
        results = doc["results"]
        if not (isinstance(results, str) and re.fullmatch(r"[A-Za-z0-9_]+\.json", results)):
            raise InputError(f"{path}: results: expected a results file name like models.json, got {results!r}")
        seen: set[str] = set()
        for i, e in enumerate(doc["entries"]):
            where = f"{path}:{lines[i]}: entries[{i}]" if i < len(lines) else f"{path}: entries[{i}]"
            _check_entry(e, where)
            if e["quantity"] in seen:
                raise InputError(f"{where}.quantity {e['quantity']!r}: duplicate within the table")
            seen.add(e["quantity"])
            entries.append({**e, "table": path.stem, "results": results, "table_id": doc.get("table")})
    return entries


# ----------------------------------------------------------------------------- verdicts
def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _tolerance(entry: dict, ref: float) -> float:
    tol = entry["tolerance"]
    return float(tol["abs"]) if "abs" in tol else abs(float(tol["rel"]) * ref)


def _row(entry: dict) -> dict:
    kind = entry["kind"]
    return {"table": entry["table"], "quantity": entry["quantity"],
            "reference": entry["expr"] if kind == "claim" else entry["value"],
            "reproduced": None, "tolerance": entry.get("tolerance"), "verdict": "NOT_RUN", "delta": None,
            "kind": kind, "source": entry["source"], "note": entry.get("note") or ""}


def judge(entry: dict, results: Any) -> dict:
    """One comparison row for a reference entry against one parsed results file (None: file missing)."""
    kind = entry["kind"]
    row = _row(entry)
    if results is None:
        row["note"] = _join(f"results/{entry['results']} missing", row["note"])
        return row
    try:
        value = evaluate_claim(entry["expr"], results) if kind == "claim" else lookup(results, entry["path"])
    except Missing as exc:
        row["note"] = _join(f"not produced: {exc}", row["note"])
        return row
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:  # a produced value of the wrong type
        row.update(verdict="FAIL", note=_join(f"cannot evaluate: {exc}", row["note"]))
        return row
    row["reproduced"] = value
    ref = entry.get("value")
    if kind == "claim":
        ok = value is True or (value is not None and not isinstance(value, bool) and bool(value))
    elif kind == "exact":
        if isinstance(ref, bool) or isinstance(value, bool):  # True == 1 must not pass
            ok = value is ref
        else:
            ok = value == ref
        if _is_number(value) and _is_number(ref):
            row["delta"] = value - ref
    elif kind == "numeric":
        if not _is_number(value):
            row.update(verdict="FAIL", note=_join(f"expected a number, got {type(value).__name__}", row["note"]))
            return row
        delta = value - ref
        row["delta"] = delta
        # inclusive edge, with a hair of float slack so 1.6+0.3 counts as the edge it is
        ok = abs(delta) <= _tolerance(entry, ref) + 1e-9 * max(1.0, abs(ref))
    else:  # categorical
        accepted = [str(v).casefold() for v in (ref if isinstance(ref, list) else [ref])]
        if isinstance(value, list):
            ok = all(a in [str(v).casefold() for v in value] for a in accepted)
        else:
            ok = str(value).casefold() in accepted
    row["verdict"] = "PASS" if ok else "FAIL"
    return row


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if b else a


# ----------------------------------------------------------------------------- what a profile produces
_RUN_SELECTOR = re.compile(r"\[run=([^\]]*)\]")


def produced_results(profile: dict) -> set[str]:
    """Results file stems the profile's stage graph writes (one `table/<stem>` stage each)."""
    from .pipeline import build_graph

    return {name.split("/", 1)[1] for name in build_graph(profile) if name.startswith("table/")}


def not_applicable(entry: dict, profile: dict, produced: set[str]) -> str | None:
    """Why the profile cannot produce this quantity, or None when it can."""
    stem = entry["results"].removesuffix(".json")
    if stem not in produced:
        return f"profile {profile['name']!r} has no table/{stem} stage"
    runs = {r["name"] for r in profile.get("runs", [])}
    for name in _RUN_SELECTOR.findall(entry.get("path") or entry.get("expr") or ""):
        if name not in runs:
            return f"profile {profile['name']!r} has no run {name!r}"
    return None


def _read_results(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return io.read_json(path)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise InputError(f"{path}: invalid JSON ({str(exc)[:120]})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def compare_tables(table_dir: str | Path, results_dir: str | Path, tables: list[str] | None = None,
                   profile: dict | None = None) -> list[dict]:
    """Rows for every reference entry; with `profile`, what its graph cannot produce is NOT_APPLICABLE."""
    results_dir = Path(results_dir)
    produced = produced_results(profile) if profile is not None else None
    cache: dict[str, Any] = {}
    rows = []
    for entry in load_reference_tables(table_dir, tables):
        reason = not_applicable(entry, profile, produced) if profile is not None else None
        if reason:
            row = _row(entry)
            row.update(verdict="NOT_APPLICABLE", note=_join(reason, row["note"]))
            rows.append(row)
            continue
        name = entry["results"]
        if name not in cache:
            cache[name] = _read_results(results_dir / name)
        rows.append(judge(entry, cache[name]))
    return rows


def _as_profile(profile: dict | str) -> dict:
    if isinstance(profile, str):
        from .config import load_profile

        return load_profile(profile)
    return profile


def compare_profile(profile: dict | str, root: str | Path, tables: list[str] | None = None,
                    ref_root: str | Path | None = None) -> list[dict]:
    """Regression rows for runs/<P>/results against paper_tables/<P>/ ([] when there is no such directory)."""
    profile = _as_profile(profile)
    table_dir = Path(ref_root or REFERENCE_ROOT) / profile["name"]
    if not table_dir.is_dir():
        return []
    return compare_tables(table_dir, Path(root) / "results", tables, profile=profile)


# ----------------------------------------------------------------------------- the whole comparison
def comparison(profile: dict | str, root: str | Path, tables: list[str] | None = None,
               ref_root: str | Path | None = None) -> dict:
    """Findings verdicts (the headline) + the regression rows, and the exit code they imply."""
    from .findings import evaluate_findings, findings_path, load_findings, runs_without_row
    from .findings import summary as findings_summary

    profile = _as_profile(profile)
    ref_root = Path(ref_root or REFERENCE_ROOT)
    spec = load_findings(findings_path(ref_root))
    findings = evaluate_findings(profile, Path(root), spec)
    table_dir = ref_root / profile["name"]
    rows = compare_profile(profile, root, tables, ref_root)
    published = profile["name"] in spec["published_references"]
    regression = {"kind": "none" if not table_dir.is_dir() else "published" if published else "recorded",
                  "label": PUBLISHED_LABEL if published else REGRESSION_LABEL,
                  "reference_dir": f"paper_tables/{profile['name']}/", "rows": rows, "summary": summary(rows)}
    doc = {"profile": profile["name"], "findings": findings, "findings_summary": findings_summary(findings),
           "runs_without_findings_row": runs_without_row(profile), "regression": regression}
    doc["exit_code"], doc["exit_reason"] = exit_status(rows)
    return doc


def exit_status(rows: list[dict]) -> tuple[int, str]:
    """1 on any regression FAIL or NOT_RUN (a quantity the profile produces but has no value for); else 0.

    Findings verdicts and NOT_APPLICABLE rows never count."""
    s = summary(rows)
    if s["FAIL"] or s["NOT_RUN"]:
        return 1, f"regression check: FAIL {s['FAIL']}, NOT_RUN {s['NOT_RUN']}"
    return 0, "regression check: no FAIL, no NOT_RUN" if rows else "no recorded numbers for this profile"


def run_comparison(profile: dict | str, root: str | Path, tables: list[str] | None = None) -> dict:
    """comparison() written to <root>/compare.json and compare.md (what `repro compare` and reproduce-all do)."""
    doc = comparison(profile, root, tables)
    write_compare(doc, root)
    return doc


# ----------------------------------------------------------------------------- output
def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.4g}" if abs(x) < 1e4 else f"{x:,.0f}"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    if isinstance(x, dict):
        return ", ".join(f"{k} {v}" for k, v in x.items())
    return str(x)


def summary(rows: list[dict]) -> dict:
    return {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}


def summary_text(s: dict) -> str:
    return f"PASS {s['PASS']} / FAIL {s['FAIL']} / NOT_RUN {s['NOT_RUN']} / NOT_APPLICABLE {s['NOT_APPLICABLE']}"


def regression_lines(doc: dict, heading: str = "##") -> list[str]:
    reg = doc["regression"]
    title = f"{heading} {reg['label']} (`{reg['reference_dir']}`)"
    if reg["kind"] == "none":
        return [title, "", f"No `{reg['reference_dir']}` directory: no recorded numbers to check.", ""]
    what = ("the findings' own numbers, with tolerances" if reg["kind"] == "published" else
            "numbers this profile produced in an earlier reviewed run: PASS means \"the same as then\", "
            "not \"the findings hold\" (that is the verdicts table above)")
    lines = [title, "", f"Reference: {what}.", "",
             f"{summary_text(reg['summary'])}. NOT_RUN: the profile produces the quantity but it has no value yet; "
             "NOT_APPLICABLE: this profile's graph cannot produce it. The exit code is non-zero on any FAIL or NOT_RUN "
             f"({doc['exit_reason']}).", "",
             "| table | quantity | reference | reproduced | delta | tolerance | verdict | source | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in reg["rows"]:
        cells = [r["table"], r["quantity"], _fmt(r["reference"]), _fmt(r["reproduced"]), _fmt(r["delta"]),
                 _fmt(r["tolerance"]), r["verdict"], r["source"], r["note"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return lines + [""]


def render_markdown(doc: dict) -> str:
    from .findings import markdown_lines

    lines = [f"# Comparison: profile `{doc['profile']}`", ""]
    lines += markdown_lines(doc["findings"], doc["profile"], doc.get("runs_without_findings_row", []))
    lines += regression_lines(doc)
    return "\n".join(lines)


def write_compare(doc: dict, root: str | Path) -> tuple[Path, Path]:
    root = Path(root)
    return io.write_json(root / "compare.json", doc), io.write_text(root / "compare.md", render_markdown(doc))


_FINDING_COLOUR = {"REPRODUCED": "green", "NOT REPRODUCED": "bold red", "NOT RUN": "yellow", "NOT APPLICABLE": "dim"}
_ROW_COLOUR = {"PASS": "green", "FAIL": "bold red", "NOT_RUN": "yellow", "NOT_APPLICABLE": "dim"}


def render_console(doc: dict | list[dict], console=None) -> None:
    """Findings verdicts first, then the regression rows; a bare list of rows prints the rows only."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if isinstance(doc, list):
        doc = {"profile": None, "findings": None, "exit_reason": "",
               "regression": {"label": "Regression check", "reference_dir": "", "kind": "recorded", "rows": doc,
                              "summary": summary(doc)}}
    if doc["findings"] is not None:
        t = Table(title=f"Findings verdicts (profile {doc['profile']}; never set the exit code)", show_lines=False)
        for col in ("finding", "row (run)", "verdict", "detail"):
            t.add_column(col, overflow="fold")
        for f in doc["findings"]:
            who = f"{f['row']} ({f['run']})" if f["row"] and f["run"] else (f["row"] or "profile")
            t.add_row(f["id"], who, f"[{_FINDING_COLOUR[f['verdict']]}]{f['verdict']}[/]", f["detail"])
        console.print(t)
    reg = doc["regression"]
    if reg["kind"] == "none":
        console.print(f"{reg['label']}: no {reg['reference_dir']} directory, nothing to check")
        return
    t = Table(title=f"{reg['label']} ({reg['reference_dir']})".replace(" ()", ""), show_lines=False)
    for col in ("table", "quantity", "reference", "reproduced", "delta", "verdict"):
        t.add_column(col, overflow="fold")
    for r in reg["rows"]:
        t.add_row(r["table"], r["quantity"], _fmt(r["reference"]), _fmt(r["reproduced"]), _fmt(r["delta"]),
                  f"[{_ROW_COLOUR[r['verdict']]}]{r['verdict']}[/]")
    console.print(t)
    console.print(summary_text(reg["summary"]).replace(" / ", "  ") + (f"  ({doc['exit_reason']})" if doc["exit_reason"] else ""))
