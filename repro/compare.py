"""Compare reproduced numbers (runs/<P>/results/*.json) with reference tables (paper_tables/<P>/*.yaml).

Each reference entry has a kind:
  exact        reproduced == value
  numeric      |reproduced - value| <= tolerance ({abs: x} or {rel: x}, inclusive)
  categorical  reproduced equals value (case-insensitive; value may be a list of accepted values);
               if reproduced is a list (e.g. tags), PASS when it contains value
  claim        `expr` is a small predicate over the results file, evaluated by a safe evaluator
A quantity whose results file or path is missing is NOT_RUN, never PASS.
Schema of the results files and of the tables: paper_tables/README.md.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from pathlib import Path
from typing import Any

from repro import io
from repro.errors import InputError

VERDICTS = ("PASS", "FAIL", "NOT_RUN")
KINDS = ("exact", "numeric", "categorical", "claim")
REPO_ROOT = Path(__file__).resolve().parents[1]


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
_FUNCS = {"abs": abs, "min": min, "max": max, "len": len}   # plus get("path[sel=...]") handled below
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
            raise InputError(f"claim {expr!r}: call not allowed (only abs, min, max, len, get without keywords)")
        if fname == "get" and not (len(node.args) == 1 and isinstance(node.args[0], ast.Constant)
                                   and isinstance(node.args[0].value, str)):
            raise InputError(f"claim {expr!r}: get() takes one string path")
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
def load_reference_tables(table_dir: str | Path, tables: list[str] | None = None) -> list[dict]:
    """All entries of paper_tables/<P>/*.yaml (optionally only the named tables), validated."""
    table_dir = Path(table_dir)
    if not table_dir.is_dir():
        raise InputError(f"{table_dir}: reference table directory not found")
    entries = []
    for path in sorted(table_dir.glob("*.yaml")):
        if tables and path.stem not in tables:
            continue
        doc = io.read_yaml(path)
        if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list) or "results" not in doc:
            raise InputError(f"{path}: expected a mapping with 'results' (file name) and 'entries' (list)")
        for i, e in enumerate(doc["entries"]):
            where = f"{path}: entries[{i}]"
            kind = e.get("kind")
            if kind not in KINDS:
                raise InputError(f"{where}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
            need = ["quantity", "source"] + (["expr"] if kind == "claim" else ["path", "value"])
            for field in need:
                if field not in e:
                    raise InputError(f"{where}: missing field '{field}'")
            if kind == "numeric":
                tol = e.get("tolerance")
                if not (isinstance(tol, dict) and len(tol) == 1 and set(tol) <= {"abs", "rel"}):
                    raise InputError(f"{where}.tolerance: expected {{abs: x}} or {{rel: x}}")
            if kind == "claim":
                try:
                    check_expr(e["expr"])
                except InputError as exc:
                    raise InputError(f"{where}.expr: {exc}") from None
            else:
                split_path(e["path"])
            entries.append({**e, "table": path.stem, "results": doc["results"], "table_id": doc.get("table")})
    return entries


# ----------------------------------------------------------------------------- verdicts
def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _tolerance(entry: dict, ref: float) -> float:
    tol = entry["tolerance"]
    return float(tol["abs"]) if "abs" in tol else abs(float(tol["rel"]) * ref)


def judge(entry: dict, results: dict | None) -> dict:
    """One comparison row for a reference entry against one parsed results file (None: file missing)."""
    kind = entry["kind"]
    row = {"table": entry["table"], "quantity": entry["quantity"],
           "reference": entry["expr"] if kind == "claim" else entry["value"],
           "reproduced": None, "tolerance": entry.get("tolerance"), "verdict": "NOT_RUN", "delta": None,
           "kind": kind, "source": entry["source"], "note": entry.get("note", "")}
    if results is None:
        row["note"] = _join(f"results/{entry['results']} missing", row["note"])
        return row
    try:
        value = evaluate_claim(entry["expr"], results) if kind == "claim" else lookup(results, entry["path"])
    except Missing as exc:
        row["note"] = _join(f"not produced: {exc}", row["note"])
        return row
    except (TypeError, ValueError, ZeroDivisionError) as exc:  # a produced value of the wrong type
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


def compare_tables(table_dir: str | Path, results_dir: str | Path, tables: list[str] | None = None) -> list[dict]:
    results_dir = Path(results_dir)
    cache: dict[str, dict | None] = {}
    rows = []
    for entry in load_reference_tables(table_dir, tables):
        name = entry["results"]
        if name not in cache:
            path = results_dir / name
            if not path.exists():
                cache[name] = None
            else:
                try:
                    cache[name] = io.read_json(path)
                except ValueError as exc:
                    raise InputError(f"{path}: invalid JSON ({exc})") from None
        rows.append(judge(entry, cache[name]))
    return rows


def compare_profile(profile_name: str, root: str | Path, tables: list[str] | None = None,
                    ref_root: str | Path | None = None) -> list[dict]:
    """Rows for runs/<P>/results against paper_tables/<P>/ ([] when the profile has no reference tables)."""
    table_dir = Path(ref_root or REPO_ROOT / "paper_tables") / profile_name
    if not table_dir.is_dir():
        return []
    return compare_tables(table_dir, Path(root) / "results", tables)


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


def render_markdown(rows: list[dict]) -> str:
    s = summary(rows)
    lines = ["# Comparison with reference numbers", "",
             f"PASS {s['PASS']} / FAIL {s['FAIL']} / NOT_RUN {s['NOT_RUN']} (NOT_RUN: no reproduced value yet)", "",
             "| table | quantity | reference | reproduced | delta | tolerance | verdict | source | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["table"], r["quantity"], _fmt(r["reference"]), _fmt(r["reproduced"]), _fmt(r["delta"]),
                 _fmt(r["tolerance"]), r["verdict"], r["source"], r["note"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_compare(rows: list[dict], root: str | Path) -> tuple[Path, Path]:
    root = Path(root)
    return io.write_json(root / "compare.json", rows), io.write_text(root / "compare.md", render_markdown(rows))


def render_console(rows: list[dict], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    colour = {"PASS": "green", "FAIL": "bold red", "NOT_RUN": "yellow"}
    t = Table(title="Reproduced vs reference", show_lines=False)
    for col in ("table", "quantity", "reference", "reproduced", "delta", "verdict"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["table"], r["quantity"], _fmt(r["reference"]), _fmt(r["reproduced"]), _fmt(r["delta"]),
                  f"[{colour[r['verdict']]}]{r['verdict']}[/]")
    console.print(t)
    s = summary(rows)
    console.print(f"PASS {s['PASS']}  FAIL {s['FAIL']}  NOT_RUN {s['NOT_RUN']}")
