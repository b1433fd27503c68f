"""The pipeline graph, in one place.

    data -> organism (mini: the package builds its own base model)
         -> train/<run>            one per finetune run of the findings (skipped for pre-finetuned models)
         -> behavior/<model>       greedy (+ sampled) answers to the evaluation prompts, classified
         -> activations/<model>    pooled residual-stream activations for each prompt set
         -> vectors/<trait>        6 methods x all layers, held-out metrics
         -> score/<trait>          test-prompt projections, base vs EM model
         -> dynamics               per-token projections while the EM model generates
         -> table/<T>              results/<T>.json + tables/<T>.md|csv|png
         -> compare, report

Models are named by label: a key of `models:` (a base model) or a run name (that run's finetuned
model). Which stages exist, and what they depend on, is decided here from the profile's values.
"""

from __future__ import annotations

import importlib
from functools import partial

from .config import em_run, recipe_for
from .runner import Stage

TABLES = ("models", "training", "behavior", "refusal", "failed", "extraction", "codemode", "dynamics")


def _call(target: str, ctx, **kwargs):
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)(ctx, **kwargs)


def _action(target: str, **kwargs):
    return partial(_call, target, **kwargs)


def base_models(profile: dict) -> list[str]:
    """Distinct base-model labels of all runs, in run order."""
    return list(dict.fromkeys(run["base"] for run in profile["runs"]))


def model_labels(profile: dict) -> list[str]:
    return base_models(profile) + [run["name"] for run in profile["runs"]]


def uses_organism(profile: dict) -> bool:
    return profile["data"].get("source") == "organism"


def model_deps(profile: dict, label: str, options: dict) -> tuple[str, ...]:
    """The stages that must exist before `label`'s weights can be loaded."""
    runs = {r["name"]: r for r in profile["runs"]}
    deps = ("organism",) if uses_organism(profile) else ()
    if label in runs and trains(profile, runs[label], options):
        deps += (f"train/{label}",)
    return deps


def trains(profile: dict, run: dict, options: dict) -> bool:
    """A run is trained unless it names a pre-finetuned model (em_model), or --em-model overrides the EM run."""
    if run.get("em_model"):
        return False
    if options.get("em_model") and run.get("role") == "em":
        return False
    return recipe_for(profile, run) is not None


def build_graph(profile: dict, options: dict | None = None) -> dict[str, Stage]:
    options = options or {}
    g: dict[str, Stage] = {}

    def add(stage: Stage) -> None:
        g[stage.name] = stage

    seed = profile["seed"]
    # downloads: which files are fetched depends on the datasets the runs name (organism: it does not)
    datasets = None if uses_organism(profile) else sorted({r["dataset"] for r in profile["runs"] if r.get("dataset")})
    add(Stage("data", _action("repro.stages.data:run"), fingerprint={"data": profile["data"], "seed": seed,
              "organism_sizes": profile.get("organism", {}).get("sizes"), "datasets": datasets},
              description="fetch / generate datasets and prompt sets, validate, record digests"))
    if uses_organism(profile):
        add(Stage("organism", _action("repro.stages.organism:run"), deps=("data",),
                  fingerprint={"organism": profile["organism"], "seed": seed}, needs_model=True,
                  description="build the mini base model: tokenizer + Qwen2 pretrained on the chat corpus"))

    for run in profile["runs"]:
        if trains(profile, run, options):
            add(Stage(f"train/{run['name']}", _action("repro.stages.train:run", run_name=run["name"]),
                      deps=("data",) + model_deps(profile, run["base"], options),
                      fingerprint={"run": run, "recipe": recipe_for(profile, run),
                                   "base": profile["models"][run["base"]]}, needs_model=True, resumable=True,
                      description=f"finetune {run['base']} with {recipe_for(profile, run)['backend']}"))

    behavior_cfg = {"behavior": profile["behavior"], "samples": options.get("samples", profile["behavior"].get("samples", 0)),
                    "seed": seed}
    for label in model_labels(profile):
        add(Stage(f"behavior/{label}", _action("repro.stages.behavior:run", label=label),
                  deps=("data",) + model_deps(profile, label, options),
                  fingerprint={**behavior_cfg, "model": _model_fingerprint(profile, label, options)}, needs_model=True,
                  description=f"generate + classify answers of {label}"))

    em = em_run(profile)
    vector_model = em["base"]
    act_cfg = {"activations": profile["activations"], "seed": seed}
    for label, role in ((vector_model, "source"), (em["name"], "scored")):
        add(Stage(f"activations/{label}", _action("repro.stages.activations:run", label=label, role=role),
                  deps=("data",) + model_deps(profile, label, options),
                  fingerprint={**act_cfg, "role": role, "traits": profile["vectors"]["traits"],
                               "model": _model_fingerprint(profile, label, options)}, needs_model=True,
                  description=f"activations of {label} ({'extraction sets + test prompts' if role == 'source' else 'test prompts'})"))

    for trait in profile["vectors"]["traits"]:
        add(Stage(f"vectors/{trait}", _action("repro.stages.vectors:run", trait=trait),
                  deps=(f"activations/{vector_model}",), fingerprint={"vectors": profile["vectors"], "trait": trait},
                  description=f"{trait} vectors: {len(profile['vectors']['methods'])} methods x all layers"))
        add(Stage(f"score/{trait}", _action("repro.stages.score:run", trait=trait),
                  deps=(f"vectors/{trait}", f"activations/{vector_model}", f"activations/{em['name']}"),
                  fingerprint={"vectors": profile["vectors"], "trait": trait},
                  description=f"project test prompts on the {trait} vector, base vs EM"))

    add(Stage("dynamics", _action("repro.stages.dynamics:run"),
              deps=tuple(f"vectors/{t}" for t in profile["vectors"]["traits"]) + model_deps(profile, em["name"], options),
              fingerprint={"vectors": profile["vectors"], "behavior": profile["behavior"],
                           "model": _model_fingerprint(profile, em["name"], options)}, needs_model=True,
              description="per-token projections during the EM model's greedy answers"))

    behavior_all = tuple(f"behavior/{label}" for label in model_labels(profile))
    train_all = tuple(f"train/{r['name']}" for r in profile["runs"] if f"train/{r['name']}" in g)
    table_deps = {
        "models": behavior_all,
        "training": train_all,
        "behavior": behavior_all,
        "refusal": ("score/refusal",),
        "failed": behavior_all,
        "extraction": tuple(f"vectors/{t}" for t in profile["vectors"]["traits"]),
        "codemode": tuple(f"score/{t}" for t in ("code_mode", "refusal") if t in profile["vectors"]["traits"]),
        "dynamics": ("dynamics",),
    }
    if uses_organism(profile):
        table_deps["organism"] = ("organism",)
    for table, deps in table_deps.items():
        add(Stage(f"table/{table}", _action(f"repro.tables.{table}:run"), deps=deps, cached=False,
                  description=f"render table {table}"))
    return g


def _model_fingerprint(profile: dict, label: str, options: dict):
    runs = {r["name"]: r for r in profile["runs"]}
    if label in runs:
        run = runs[label]
        override = options.get("em_model") if run.get("role") == "em" else None
        return {"run": run, "override": override}
    return profile["models"][label]


def table_targets(profile: dict, graph: dict[str, Stage]) -> list[str]:
    return [name for name in graph if name.startswith("table/")]
