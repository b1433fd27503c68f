"""`repro compare`: findings verdicts (the headline), then the regression check of results against
paper_tables/<profile>/. Exit 1 on a regression FAIL or NOT_RUN; findings verdicts never set it."""

from __future__ import annotations

import sys

import click

from repro.commands.data import fail, profile_and_root, profile_options
from repro.errors import ReproError


@click.command("compare")
@profile_options
@click.option("--table", "tables", multiple=True, help="Only these reference tables (file stems, e.g. refusal).")
def compare_cmd(profile, out, tables):
    """Evaluate the findings' claims (paper_tables/findings.yaml) on <run dir>/results/*.json, then
    check the results against paper_tables/<profile>/*.yaml; write compare.json and compare.md in
    the run directory. A quantity the profile produces but has no value for is NOT_RUN (exit 1, as
    a FAIL); one its stage graph cannot produce is NOT_APPLICABLE (shown, not an error)."""
    from repro.compare import render_console, run_comparison

    try:
        prof, root = profile_and_root(profile, out)
        doc = run_comparison(prof, root, tables=list(tables) or None)
    except ReproError as exc:
        fail(exc)
    render_console(doc)
    click.echo(f"wrote {root / 'compare.json'} and {root / 'compare.md'}")
    if doc["exit_code"]:
        click.echo(f"exit {doc['exit_code']}: {doc['exit_reason']}", err=True)
        sys.exit(doc["exit_code"])
