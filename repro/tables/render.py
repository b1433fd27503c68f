"""Shared helpers of the table builders: markdown tables, atomic CSV, a bar chart (matplotlib Agg)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

from ..io import atomic_path


def cell(value: Any) -> str:
    """One markdown cell: None as an em dash, floats to 3 decimals, pipes and newlines escaped."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value) if value else "—"
    return " ".join(str(value).split()).replace("|", "\\|")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def table_lines(headers: list[str], rows: list[list]) -> list[str]:
    return markdown_table(headers, rows).rstrip("\n").split("\n")


def fmt(x, signed: bool = False, pct: bool = False, digits: int = 2) -> str:
    """A number for a Markdown cell; None -> an em dash."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if pct:
        return f"{100 * x:+.1f}%" if signed else f"{100 * x:.1f}%"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def fmt_rate(k: int, n: int) -> str:
    return f"{k}/{n} ({k / n:.2f})" if n else "0/0"


def fmt_ci(ci: Sequence[float] | None) -> str:
    return "—" if not ci else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "—"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def write_csv(path: str | Path, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """Plain CSV (lists joined with ';', None as empty), written atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow(["" if v is None else ";".join(map(str, v)) if isinstance(v, (list, tuple)) else v for v in row])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return Path(path)


def bar_chart(path: str | Path, categories: Sequence[str], series: dict[str, Sequence[float]], *,
              intervals: dict[str, Sequence[Sequence[float] | None]] | None = None, title: str = "",
              ylabel: str = "", ylim: tuple[float, float] | None = (0.0, 1.2)) -> Path:
    """Grouped bars (one group per category, one bar per series), optional [lo, hi] error bars per bar.

    Written through a buffer and an atomic rename, so a failed plot leaves no partial PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(categories))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6.4, 1.3 * len(categories)), 3.8), dpi=120)
    for i, (name, values) in enumerate(series.items()):
        values = np.asarray(values, dtype=float)
        yerr = None
        if intervals and intervals.get(name) is not None:
            bounds = intervals[name]
            lo = [v - b[0] if b else 0.0 for v, b in zip(values, bounds)]
            hi = [b[1] - v if b else 0.0 for v, b in zip(values, bounds)]
            yerr = np.clip(np.array([lo, hi]), 0.0, None)
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name, yerr=yerr, capsize=3)
    ax.set_xticks(x)
    ax.set_xticklabels(categories, rotation=20, ha="right")
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", ncol=max(1, len(series)), frameon=False)  # headroom above 1.0 keeps it off the bars
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG atomically (render in memory, then temp file + rename) and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return Path(path)
