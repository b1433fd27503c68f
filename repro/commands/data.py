"""`repro data validate PATH` and `repro data fetch`: thin wrappers around repro.data."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from repro.errors import ReproError

DOWNLOADS = "downloads"  # shared with repro.stages.data (its download cache)


def fail(exc: ReproError) -> None:
    """One line on stderr, the error's exit code (InputError: 2)."""
    click.echo(str(exc), err=True)
    sys.exit(exc.exit_code)


def profile_and_root(profile_name: str | None, out: str | None) -> tuple[dict, Path]:
    """The profile (own --profile, else the group's, else 'mini') and its run directory."""
    from repro.config import load_profile, run_dir

    settings = click.get_current_context().obj  # the `repro` group's Settings, if run under it
    name = profile_name or getattr(settings, "profile_name", None) or "mini"
    out = out or getattr(settings, "out", None)
    profile = load_profile(name)
    return profile, Path(run_dir(profile, out))


def profile_options(f):
    f = click.option("--out", default=None, type=click.Path(file_okay=False), help="Run directory (default runs/<profile>).")(f)
    f = click.option("--profile", default=None, help="Profile name or YAML path (default: the group's, else mini).")(f)
    return f


@click.group("data")
def data_group():
    """Validate and fetch the EM finetuning data (pinned URLs, sha256, manifest)."""


@data_group.command("validate")
@click.argument("path", type=click.Path(dir_okay=False))
def validate_cmd(path):
    """Check PATH is EM chat-format JSONL ({"messages": [user, assistant]} per line).

    Exit 0 and print the row count when valid; otherwise exit 2 and print `PATH:LINE: problem`."""
    from repro.data import validate_chat_file

    try:
        rows = validate_chat_file(path)
    except ReproError as exc:
        fail(exc)
    click.echo(f"{path}: OK, {rows} rows")


@data_group.command("fetch")
@profile_options
@click.option("--only", multiple=True, help="Manifest key(s) to fetch (default: all).")
@click.option("--force", is_flag=True, help="Download again even when a verified copy exists.")
@click.option("--timeout", default=60.0, show_default=True, help="Network timeout in seconds.")
def fetch_cmd(profile, out, only, force, timeout):
    """Download the paper's data (pinned commit, sha256-verified) into <run dir>/downloads/.

    That is the download cache the `data` stage reads (it copies the files and the lock into
    <run dir>/data/), so fetching once lets the pipeline run offline afterwards. Digests not known
    in data/manifest.yaml are recorded in downloads/manifest.lock.json on the first fetch (trust on
    first use) and verified on later fetches. Offline: one error line, no partial file."""
    from repro import data

    try:
        prof, root = profile_and_root(profile, out)
        manifest = data.load_manifest(prof.get("data", {}).get("manifest", "data/manifest.yaml"))
        lock = data.fetch_data(manifest, root / DOWNLOADS, keys=list(only) or None, force=force, timeout=timeout)
    except ReproError as exc:
        fail(exc)
    for key, rec in lock["files"].items():
        if only and key not in only:
            continue
        rows = f", {rec['rows']} rows" if "rows" in rec else ""
        click.echo(f"{key}: {rec['status']} {root / DOWNLOADS / rec['path']} sha256 {rec['sha256']} "
                   f"({rec['bytes']} bytes{rows}; verified against {rec['verified_against']})")
