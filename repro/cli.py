"""The `repro` command line: thin wrappers around the pipeline graph and the stage cores."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .errors import ReproError

DEFAULT_PROFILE = os.environ.get("REPRO_PROFILE", "mini")


class Settings:
    def __init__(self, profile: str, out: str | None, force: bool, quiet: bool, jobs: int = 1,
                 max_ram_gb: float | None = None):
        self.profile_name, self.out, self.force, self.quiet = profile, out, force, quiet
        self.jobs, self.max_ram_gb = jobs, max_ram_gb
        self.seed: int | None = None
        self._loaded: tuple | None = None

    def profile(self) -> dict:
        """The command's profile (with a --seed override), its CPU runtime pin applied.

        Every command loads its profile before it imports torch, so pinning here is in time: the
        variables are read when torch first runs (repro/runtime.py)."""
        if self._loaded is None or self._loaded[0] != (self.profile_name, self.seed):
            from .config import load_profile
            from .runtime import apply_runtime
            from .seeds import with_seed

            profile = load_profile(self.profile_name)
            if self.seed is not None:
                profile = with_seed(profile, self.seed)
            apply_runtime(profile)
            self._loaded = ((self.profile_name, self.seed), profile)
        return self._loaded[1]

    def root(self, profile: dict):
        from .config import run_dir
        from .seeds import seed_run_dir

        if self.seed is not None and not self.out:
            return seed_run_dir(profile, self.seed)
        return run_dir(profile, self.out)


pass_settings = click.make_pass_decorator(Settings)


def profile_options(f):
    """--profile/--out/--force on every command, so they work before or after the subcommand name."""
    f = click.option("--profile", "profile_opt", default=None, help="Profile name (repro/profiles/NAME.yaml) or YAML path.")(f)
    f = click.option("--out", "out_opt", default=None, type=click.Path(file_okay=False), help="Run directory (default runs/<profile>).")(f)
    f = click.option("--force", "force_opt", is_flag=True, default=None, help="Redo cached stages.")(f)
    return f


def seed_option(f):
    return click.option("--seed", "seed_opt", type=int, default=None,
                        help="Replace the profile's seed and every recipe's seed for this invocation "
                             "(own cache keys; default --out runs/<profile>/seed-N).")(f)


def _settings(ctx: click.Context, profile_opt, out_opt, force_opt, seed_opt=None) -> Settings:
    """The `repro` group's Settings with this command's overrides. Read from the root context's obj,
    not by class: under `python -m repro.cli` this module is __main__, and a command module that
    imports repro.cli would see another Settings class."""
    s = ctx.find_root().obj
    if s is None or not hasattr(s, "profile"):
        raise click.UsageError("run it as a subcommand of `repro`")
    if seed_opt is not None:
        s.seed = seed_opt
    if profile_opt:
        s.profile_name = profile_opt
    if out_opt:
        s.out = out_opt
    if force_opt:
        s.force = True
    return s


class ReproGroup(click.Group):
    """Prints ReproError as one line with its exit code instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ReproError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:  # unwritable run directory, --out under a file, disk full: one line, not a traceback
            where = f" {exc.filename}" if exc.filename else ""
            click.echo(f"error:{where}: {exc.strerror or exc} (check --out and free space)", err=True)
            sys.exit(1)


@click.group(cls=ReproGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--profile", default=DEFAULT_PROFILE, show_default=True, help="Profile name (repro/profiles/NAME.yaml) or path to a profile YAML.")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Run directory (default: runs/<profile>).")
@click.option("--force", is_flag=True, help="Redo stages even when a cached result with the same config exists.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, envvar="REPRO_JOBS",
              show_default=True, show_envvar=True,
              help="Independent stages run side by side, one process each (CPU profiles; same numbers as -j 1).")
@click.option("--max-ram-gb", type=click.FloatRange(min=0.5), default=None, envvar="REPRO_MAX_RAM_GB",
              help="With --jobs > 1: start a stage beside others only if their estimated RAM stays within this.")
@click.version_option(package_name="em-repro")
@click.pass_context
def cli(ctx, profile, out, force, quiet, jobs, max_ram_gb):
    """Reproduce the Emergent Misalignment trait-vector findings (every table), and compare
    each reproduced number with the reference numbers in paper_tables/<profile>/."""
    ctx.obj = Settings(profile, out, force, quiet, jobs, max_ram_gb)


def _run_targets(s: Settings, targets: list[str], options: dict | None = None) -> None:
    from .pipeline import build_graph
    from .schedule import run_parallel

    profile = s.profile()
    options = {"progress": not s.quiet, **(options or {})}
    graph = build_graph(profile, options)
    check_disk(profile, s.root(profile))
    run_parallel(graph, targets, profile=profile, root=s.root(profile), jobs=s.jobs, max_ram_gb=s.max_ram_gb,
                 options=options, force=s.force)


def check_disk(profile: dict, root) -> None:
    """Refuse to start a profile that cannot fit on this disk (profile resources.disk_gb)."""
    from .commands.plan import free_disk_gb

    need = float((profile.get("resources") or {}).get("disk_gb") or 0)
    free = free_disk_gb(root)
    if free < need:
        raise ReproError(f"disk: {free:.1f} GB free under {root}, profile {profile['name']} needs ~{need:g} GB "
                         "(resources.disk_gb); free space or pass --out on a larger disk")


@cli.command("run")
@click.argument("stages", nargs=-1)
@profile_options
@click.option("--samples", type=int, default=None, help="Sampled answers per prompt (temperature 1) on top of greedy.")
@click.option("--em-model", default=None, help="HF id or path of an already finetuned EM model: skip EM training.")
@seed_option
@click.pass_context
def run_cmd(ctx, stages, profile_opt, out_opt, force_opt, samples, em_model, seed_opt):
    """Run pipeline STAGES (e.g. `train/em_mini`, `vectors/refusal`) and what they depend on.
    Without STAGES: every table (the whole pipeline)."""
    s = _settings(ctx, profile_opt, out_opt, force_opt, seed_opt)
    from .pipeline import build_graph, table_targets

    options = _options(samples, em_model)
    targets = list(stages) or table_targets(s.profile(), build_graph(s.profile(), options))
    _run_targets(s, targets, options)


def _options(samples, em_model) -> dict:
    opts = {}
    if samples is not None:
        if samples < 0:
            raise ReproError(f"--samples: expected a non-negative integer, got {samples}")
        opts["samples"] = samples
    if em_model:
        opts["em_model"] = em_model
    return opts


@cli.command("table")
@click.argument("name")
@profile_options
@click.option("--samples", type=int, default=None, help="Sampled answers per prompt (behaviour tables).")
@click.option("--em-model", default=None, help="HF id or path of an already finetuned EM model: skip EM training.")
@seed_option
@click.pass_context
def table_cmd(ctx, name, profile_opt, out_opt, force_opt, samples, em_model, seed_opt):
    """Reproduce one table (models, training, behavior, refusal, failed, extraction, codemode,
    dynamics), print it and its comparison lines."""
    s = _settings(ctx, profile_opt, out_opt, force_opt, seed_opt)
    from .pipeline import TABLES

    if name not in TABLES + ("organism",):
        raise ReproError(f"table {name!r}: unknown (expected one of {', '.join(TABLES)})")
    _run_targets(s, [f"table/{name}"], _options(samples, em_model))
    profile = s.profile()
    root = s.root(profile)
    md = root / "tables" / f"{name}.md"
    if md.exists():
        click.echo(md.read_text())
    from .compare import compare_profile, render_console

    rows = compare_profile(profile, root, tables=[name])
    if rows:
        render_console(rows)


@cli.command("reproduce-all")
@profile_options
@click.option("--samples", type=int, default=None, help="Sampled answers per prompt on top of greedy.")
@click.option("--em-model", default=None, help="HF id or path of an already finetuned EM model: skip EM training.")
@seed_option
@click.pass_context
def reproduce_all(ctx, profile_opt, out_opt, force_opt, samples, em_model, seed_opt):
    """Every stage, every table, the comparison and the report. Exit 1 on a regression FAIL or NOT_RUN."""
    s = _settings(ctx, profile_opt, out_opt, force_opt, seed_opt)
    from .compare import render_console, run_comparison
    from .pipeline import build_graph, table_targets
    from .report import build_report

    options = _options(samples, em_model)
    profile = s.profile()
    _run_targets(s, table_targets(profile, build_graph(profile, {"progress": True, **options})), options)
    root = s.root(profile)
    doc = run_comparison(profile, root)
    report = build_report(profile, root)
    render_console(doc)
    click.echo(f"report: {report}")
    if doc["exit_code"]:
        click.echo(f"exit {doc['exit_code']}: {doc['exit_reason']}", err=True)
        sys.exit(doc["exit_code"])


@cli.command("sweep")
@profile_options
@click.option("--seeds", default="1,2,3", show_default=True,
              help="Comma-separated seeds; each runs the whole pipeline as `--seed N` into runs/<profile>/seed-N.")
@click.option("--samples", type=int, default=None, help="Sampled answers per prompt (default: the profile's).")
@click.pass_context
def sweep_cmd(ctx, profile_opt, out_opt, force_opt, seeds, samples):
    """Robust to seeds, not just repeatable: run the profile as written (the reference run) and for
    each of K seeds, then report every findings verdict as k/K seeds and the spread of every
    recorded number (runs/<profile>/sweep/sweep.md|json). Mini tolerances are set from this spread."""
    s = _settings(ctx, profile_opt, out_opt, force_opt)
    from .compare import compare_profile
    from .findings import evaluate_findings
    from .pipeline import build_graph, table_targets
    from .seeds import seed_run_dir
    from .sweep import aggregate, write_sweep

    try:
        seed_list = [int(x) for x in seeds.split(",") if x.strip()]
    except ValueError:
        raise ReproError(f"--seeds: expected comma-separated integers, got {seeds!r}") from None
    if len(seed_list) < 2 or len(set(seed_list)) != len(seed_list):
        raise ReproError(f"--seeds: expected at least two distinct seeds, got {seeds!r}")
    options = _options(samples, None)
    base_out = s.out

    def one(seed):
        from .config import run_dir

        s.seed, s.out = seed, None
        profile = s.profile()
        if seed is None:
            root = run_dir(profile, base_out)
        else:
            root = Path(base_out) / f"seed-{seed}" if base_out else seed_run_dir(profile, seed)
        s.out = str(root)
        click.echo(f"== {'reference run' if seed is None else f'seed {seed}'}: {root}", err=True)
        _run_targets(s, table_targets(profile, build_graph(profile, options)), options)
        return {"findings": evaluate_findings(profile, root), "rows": compare_profile(profile, root)}

    reference = one(None)
    per_seed = {seed: one(seed) for seed in seed_list}
    s.seed, s.out = None, base_out
    profile = s.profile()
    doc = aggregate(reference, per_seed)
    path = write_sweep(doc, s.root(profile) / "sweep", profile["name"])
    click.echo(path.read_text())
    click.echo(f"sweep: {path}")


@cli.command("record")
@profile_options
@click.option("--sweep", "sweep_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="sweep.json of `repro sweep` (>= 3 seeds): numeric tolerances from its spread.")
@click.pass_context
def record_cmd(ctx, profile_opt, out_opt, force_opt, sweep_file):
    """Re-record the profile's own reference numbers (paper_tables/<profile>/*.yaml) from the run in
    --out (default runs/<profile>): values from its results, tolerances from the seed sweep. Run it
    once, from a reviewed run, when the profile's inputs have settled; never for paper/."""
    s = _settings(ctx, profile_opt, out_opt, force_opt)
    from .compare import REFERENCE_ROOT
    from .record import record_profile

    profile = s.profile()
    for path, n in record_profile(profile, s.root(profile), Path(REFERENCE_ROOT),
                                  Path(sweep_file) if sweep_file else None):
        click.echo(f"{path}: {n} value(s) recorded")


@cli.command("graph")
@profile_options
@click.pass_context
def graph_cmd(ctx, profile_opt, out_opt, force_opt):
    """Show the stage graph for the profile and which stages are cached."""
    s = _settings(ctx, profile_opt, out_opt, force_opt)
    from .pipeline import build_graph
    from .runner import is_fresh, stage_keys

    profile = s.profile()
    graph = build_graph(profile)
    keys = stage_keys(graph)
    root = s.root(profile)
    for name, st in graph.items():
        state = "cached" if is_fresh(root, st, keys[name]) else ("render" if not st.cached else "to run")
        deps = ", ".join(st.deps) or "-"
        click.echo(f"{name:32s} {state:8s} <- {deps}")


@cli.group("mini")
def mini_group():
    """The embedded mini model organism."""


@mini_group.command("build")
@profile_options
@click.pass_context
def mini_build(ctx, profile_opt, out_opt, force_opt):
    """Build (or reuse) the mini base model: data, tokenizer, pretraining, instruct checks."""
    s = _settings(ctx, profile_opt, out_opt, force_opt)
    from .pipeline import build_graph

    if "organism" not in build_graph(s.profile()):
        raise ReproError(f"profile {s.profile_name}: has no organism stage (data.source is not 'organism')")
    _run_targets(s, ["organism"])


@cli.command("report")
@profile_options
@click.pass_context
def report_cmd(ctx, profile_opt, out_opt, force_opt):
    """Write runs/<profile>/report/REPORT.md from what has been run (no stage is run)."""
    s = _settings(ctx, profile_opt, out_opt, force_opt)
    from .compare import run_comparison
    from .report import build_report

    profile = s.profile()
    root = s.root(profile)
    run_comparison(profile, root)
    click.echo(str(build_report(profile, root)))


@cli.command("env")
@profile_options
@click.pass_context
def env_cmd(ctx, profile_opt, out_opt, force_opt):
    """Check the environment: GPU, package versions, data, weights reachable, disk."""
    s = _settings(ctx, profile_opt, out_opt, force_opt)
    from .envcheck import check_environment, render_checks

    profile = s.profile()
    checks = check_environment(profile, s.root(profile))
    render_checks(checks)
    if any(c["status"] == "FAIL" for c in checks):
        sys.exit(1)


def _register_optional_commands() -> None:
    from .commands import classify, compare, data, dose, plan

    cli.add_command(plan.plan_cmd, "plan")
    cli.add_command(data.data_group, "data")
    cli.add_command(compare.compare_cmd, "compare")
    cli.add_command(classify.classify_cmd, "classify")
    cli.add_command(dose.dose_cmd, "dose")


def main() -> None:
    _register_optional_commands()
    cli(prog_name="repro")


if __name__ == "__main__":
    main()
