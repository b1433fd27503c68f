"""`repro dose`: the dose-response sweep of the EM finetune (repro/dose.py), a command of its own
(not part of reproduce-all: it trains one EM run per learning rate)."""

from __future__ import annotations

import click

from repro.cli import profile_options, seed_option


def _group_settings(ctx: click.Context, profile_opt, out_opt, force_opt, seed_opt):
    from repro.cli import _settings

    return _settings(ctx, profile_opt, out_opt, force_opt, seed_opt)


@click.command("dose")
@profile_options
@click.option("--lrs", required=True, help="Comma-separated learning rates, e.g. 2e-4,5e-4,1e-3 (one EM run each).")
@click.option("--steps", required=True, help="Comma-separated optimizer steps to evaluate, e.g. 10,20,30 "
                                            "(checkpoints of one run per rate, trained to the last).")
@click.option("--samples", type=int, default=None, help="Sampled answers per EM question (default: behavior.samples).")
@seed_option
@click.pass_context
def dose_cmd(ctx, profile_opt, out_opt, force_opt, lrs, steps, samples, seed_opt):
    """Train the profile's EM run at each learning rate with checkpoints at the given steps; for each
    checkpoint rate coherent code in sampled answers to the non-code EM questions and the refusal
    projection's shift as a share of the base gap. Writes <run dir>/dose/dose.md|csv|json|png."""
    from repro.cli import _options
    from repro.dose import DOSE_DIR, add_dose_stages, parse_lrs, parse_steps
    from repro.pipeline import build_graph
    from repro.runner import run_pipeline

    s = _group_settings(ctx, profile_opt, out_opt, force_opt, seed_opt)
    lr_list, step_list = parse_lrs(lrs), parse_steps(steps)
    options = {"progress": not s.quiet, **_options(samples, None)}
    profile = s.profile()
    root = s.root(profile)
    graph = build_graph(profile, options)
    target = add_dose_stages(graph, profile, lr_list, step_list, options)
    from repro.cli import check_disk

    check_disk(profile, root)
    run_pipeline(graph, [target], profile=profile, root=root, options=options, force=s.force)
    click.echo((root / DOSE_DIR / "dose.md").read_text())
