"""`repro classify FILE.jsonl`: type counts, coherence counts per type (repro.classify's offline
rule), and accuracy/confusion when lines carry `expected`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from repro.classify import TYPES, classify_with_coherence, format_confusion, summarize
from repro.errors import InputError


def read_labelled(path: Path, field: str) -> tuple[list[str], list[str] | None]:
    """Texts of `field` per JSONL line, plus `expected` labels when every line has one."""
    texts: list[str] = []
    labels: list[str | None] = []
    try:
        raw_lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as UTF-8 text ({exc.__class__.__name__})") from exc
    for lineno, line in enumerate(raw_lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc
        if not isinstance(row, dict) or field not in row:
            raise InputError(f"{path}:{lineno}: missing field {field!r} (expected a JSON object with it)")
        if not isinstance(row[field], str):
            raise InputError(f"{path}:{lineno}: field {field!r} must be a string, got {type(row[field]).__name__}")
        label = row.get("expected")
        if label is not None and label not in TYPES:
            raise InputError(f"{path}:{lineno}: field 'expected' must be one of {', '.join(TYPES)}, got {label!r}")
        texts.append(row[field])
        labels.append(label)
    if not texts:
        raise InputError(f"{path}: no JSONL rows")
    has_labels = all(lab is not None for lab in labels)
    return texts, ([lab for lab in labels if lab is not None] if has_labels else None)


@click.command("classify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--field", default="response", show_default=True, help="JSON field holding the response text.")
@click.pass_context
def classify_cmd(ctx: click.Context, file: Path, field: str) -> None:
    """Classify each response in FILE.jsonl as CODE / REFUSAL / TEXT / MIXED."""
    try:
        texts, labels = read_labelled(file, field)
    except InputError as exc:  # standalone use prints like the repro group does
        click.echo(f"error: {exc}", err=True)
        ctx.exit(exc.exit_code)
    judged = [classify_with_coherence(t) for t in texts]
    predicted = [kind for kind, _ in judged]
    summary = summarize(predicted, labels)
    click.echo(f"{summary['n']} responses")
    for t in TYPES:
        incoherent = sum(1 for kind, c in judged if kind == t and not c.coherent)
        click.echo(f"  {t:<8} {summary['counts'][t]}  (incoherent {incoherent})")
    n_coherent = sum(1 for _, c in judged if c.coherent)
    click.echo(f"coherent {n_coherent}/{len(judged)} (offline rule: repro.classify, 'Coherence')")
    if labels is not None:
        click.echo(f"accuracy {summary['accuracy']:.4f} (MIXED counts as CODE, REFUSAL as TEXT)")
        click.echo(format_confusion(summary["confusion"]))
