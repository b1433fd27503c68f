"""`repro compare`: reproduced results vs paper_tables/<profile>/; exit 0 only if nothing FAILs."""

from __future__ import annotations

import sys

import click

from repro.commands.data import fail, profile_and_root, profile_options
from repro.errors import ReproError


@click.command("compare")
@profile_options
@click.option("--table", "tables", multiple=True, help="Only these tables (file stems, e.g. refusal).")
def compare_cmd(profile, out, tables):
    """Compare <run dir>/results/*.json with paper_tables/<profile>/*.yaml; write compare.json and
    compare.md in the run directory. Quantities without a reproduced value are NOT_RUN."""
    from repro.compare import compare_profile, render_console, write_compare
    from repro.compare import REPO_ROOT

    try:
        prof, root = profile_and_root(profile, out)
        if not (REPO_ROOT / "paper_tables" / prof["name"]).is_dir():
            raise ReproError(f"paper_tables/{prof['name']}: no reference tables for profile {prof['name']!r}")
        rows = compare_profile(prof["name"], root, tables=list(tables) or None)
        json_path, md_path = write_compare(rows, root)
    except ReproError as exc:
        fail(exc)
    render_console(rows)
    click.echo(f"wrote {json_path} and {md_path}")
    if any(r["verdict"] == "FAIL" for r in rows):
        sys.exit(1)
