"""What makes an artifact, as digests: the stage's code and the input files it reads.

A stage's cache key (runner.stage_keys) hashes its config fragment, these digests and its
upstream stages' keys; the runner also records the upstream artifacts' digests and redoes a stage
whose inputs changed. Code digest = the source of the stage's module plus every `repro` module it
imports, directly or through others (found statically with `ast`, imports inside functions
included), so editing the classifier redoes behaviour and everything after it, while editing the
report leaves every trained model cached.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = "repro"
PACKAGE_DIR = Path(__file__).resolve().parent


def _module_file(name: str) -> Path | None:
    rel = Path(*name.split(".")[1:]) if name != PACKAGE else Path()
    for candidate in (PACKAGE_DIR / rel.with_suffix(".py") if rel.parts else None, PACKAGE_DIR / rel / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _imports(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != PACKAGE:
                continue
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)   # `from .x import submodule`
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "CODE_DEPS" for t in node.targets):
            # modules imported dynamically (importlib) are declared: CODE_DEPS = ("repro.x", ...)
            found.update(ast.literal_eval(node.value))
    return {m for m in found if _module_file(m) is not None}


@lru_cache(maxsize=None)
def module_closure(name: str) -> tuple[str, ...]:
    """`name` and every repro module it imports, transitively (parents' __init__ included)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        path = _module_file(mod)
        if path is None:
            continue
        seen.add(mod)
        parts = mod.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(_imports(mod, path) - seen)
    return tuple(sorted(seen))


def _data_deps(path: Path) -> tuple[str, ...]:
    """Package data a module reads, declared as DATA_DEPS = ("assets/...",) (paths under repro/)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "DATA_DEPS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    return ()


@lru_cache(maxsize=None)
def code_digest(modules: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for mod in sorted({m for name in modules for m in module_closure(name)}):
        path = _module_file(mod)
        h.update(mod.encode() + b"\0" + path.read_bytes() + b"\0")
        for rel in _data_deps(path):
            h.update(rel.encode() + b"\0" + (PACKAGE_DIR / rel).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def files_digest(paths) -> str:
    """Digest of files (and of every file under directories), by relative name and content."""
    h = hashlib.sha256()
    for root in sorted(Path(p) for p in paths):
        files = sorted(q for q in root.rglob("*") if q.is_file()) if root.is_dir() else [root]
        for f in files:
            h.update(str(f.name if f == root else f.relative_to(root)).encode() + b"\0")
            h.update(f.read_bytes() if f.exists() else b"<missing>")
            h.update(b"\0")
    return h.hexdigest()[:16]
