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


@lru_cache(maxsize=None)
def _scan_cached(path: Path, mtime_ns: int, size: int) -> tuple[tuple, tuple[str, ...], tuple[str, ...]]:
    """One parse of a module file: its import statements (level, module, names), CODE_DEPS, DATA_DEPS.

    Cached by path, mtime and size: every stage's closure walks the same ~80 modules, and parsing
    them again per stage and per digest cost seconds per pipeline run; an edited file is parsed anew."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imports: list[tuple[int, str, tuple[str, ...]]] = []
    code_deps: list[str] = []
    data_deps: tuple[str, ...] | None = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.extend((0, a.name, ()) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imports.append((node.level, node.module or "", tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Assign):
            names = {t.id for t in node.targets if isinstance(t, ast.Name)}
            if "CODE_DEPS" in names:
                # modules imported dynamically (importlib) are declared: CODE_DEPS = ("repro.x", ...)
                code_deps.extend(ast.literal_eval(node.value))
            if "DATA_DEPS" in names and data_deps is None:
                data_deps = tuple(ast.literal_eval(node.value))
    return tuple(imports), tuple(code_deps), data_deps or ()


def _scan(path: Path) -> tuple[tuple, tuple[str, ...], tuple[str, ...]]:
    st = path.stat()
    return _scan_cached(path, st.st_mtime_ns, st.st_size)


def _imports(name: str, path: Path) -> set[str]:
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rsplit(".", 1)[0]
    raw, code_deps, _ = _scan(path)
    found: set[str] = set(code_deps)
    for level, module, names in raw:
        if not level and not names:  # `import repro.x`
            if module.split(".")[0] == PACKAGE:
                found.add(module)
            continue
        if level:
            base = package.split(".")
            base = base[: len(base) - level + 1]
            mod = ".".join(base + ([module] if module else []))
        else:
            mod = module
        if mod.split(".")[0] != PACKAGE:
            continue
        found.add(mod)
        found.update(f"{mod}.{a}" for a in names)   # `from .x import submodule`
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
    return _scan(path)[2]


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
