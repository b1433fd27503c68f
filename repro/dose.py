"""Dose-response sweep: how mode confusion and the refusal projection grow with the EM finetune.

For each learning rate, the profile's EM run is trained once with its own recipe but that rate and
`max_steps` = the largest requested step, keeping a checkpoint at every requested step (one run per
rate: a checkpoint at step 10 of a 30-step run sits on the 30-step linear schedule, not at the end
of a 10-step one). Each checkpoint is evaluated exactly as the pipeline evaluates the EM model:
  code rate     sampled answers to the non-code EM questions the answers stage samples (behavior.
                sampled_questions, default all_questions; behavior.samples per question at
                behavior.temperature, behavior.sampled_max_new_tokens, the behaviour stage's seeding), the share the
                classifier types CODE or MIXED and judges coherent (T1's criterion), with a Wilson 95%
                interval and T1's one-sided Fisher test against the base model's answers
  refusal shift the refusal test prompts (harmful, benign) answered greedily and pooled as the
                activations stage does, projected on the base model's chosen refusal vector at its
                scoring layer; shift = checkpoint mean - base mean per class, as a share of the base
                model's harmful - benign gap (T4's arithmetic)
The base row (step 0) comes from the pipeline's own behavior/<base> and activations/<base> stages.

Stages (cached, resumable training, like the pipeline's; see `add_dose_stages`):
    dose/train-lr<lr>              adapter checkpoints at the requested steps (weights + trainer_state.json)
    dose/eval-lr<lr>-step<N>       eval.json of one checkpoint (+ its answers, answers.jsonl)
    dose                           dose.md | dose.csv | dose.json | dose.png under runs/<profile>/dose/
Not part of reproduce-all: `repro dose --lrs ... --steps ...` runs it.
"""

from __future__ import annotations

import math
import shutil
from functools import reduce
from pathlib import Path

from .config import em_run, recipe_for
from .errors import InputError, ReproError
from .io import read_json, read_jsonl, write_json, write_jsonl, write_text
from .runner import Stage, StageContext

DOSE_DIR = "dose"
# what a kept checkpoint holds after training: the adapter and the step it was saved at (the
# optimizer / scheduler / RNG states only serve a resume, and are pickles)
KEEP_FILES = ("adapter_model.safetensors", "adapter_config.json", "model.safetensors", "config.json",
              "trainer_state.json")
TABLE_COLUMNS = ("lr", "step", "train_loss", "k", "n", "code_rate", "ci_low", "ci_high", "incoherent_rate",
                 "rate_increase", "p_value", "em_effect", "harmful_mean", "benign_mean", "shift_harmful",
                 "shift_benign", "shift_share_harmful", "shift_share_benign")


# ----------------------------------------------------------------------------- arguments
def parse_lrs(text: str) -> list[float]:
    """'2e-4,5e-4,1e-3' -> [0.0002, 0.0005, 0.001]: positive, distinct, in the order given."""
    try:
        values = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--lrs: expected comma-separated positive numbers, got {text!r}") from None
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise InputError(f"--lrs: expected comma-separated positive numbers, got {text!r}")
    if len({lr_tag(v) for v in values}) != len(values):
        raise InputError(f"--lrs: a learning rate is listed twice in {text!r}")
    return values


def parse_steps(text: str) -> list[int]:
    """'10,20,30' -> [10, 20, 30]: positive integers, sorted, no repeats."""
    try:
        values = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--steps: expected comma-separated positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise InputError(f"--steps: expected comma-separated positive integers, got {text!r}")
    if len(set(values)) != len(values):
        raise InputError(f"--steps: a step is listed twice in {text!r}")
    return sorted(values)


def lr_tag(lr: float) -> str:
    """A learning rate as it appears in stage names: 0.001 -> '0.001', 2e-05 -> '2e-05'."""
    return f"{lr:g}"


def train_stage_name(lr: float) -> str:
    return f"{DOSE_DIR}/train-lr{lr_tag(lr)}"


def eval_stage_name(lr: float, step: int) -> str:
    return f"{DOSE_DIR}/eval-lr{lr_tag(lr)}-step{step}"


# ----------------------------------------------------------------------------- training
def dose_recipe(recipe: dict, lr: float, steps: list[int]) -> dict:
    """The EM recipe at learning rate `lr`, `max_steps` = the last step, a checkpoint at every requested step.

    Trainer saves every `save_steps`; the greatest common divisor of the steps is the longest
    period that hits all of them (the others are deleted after training)."""
    every = reduce(math.gcd, steps)
    last = max(steps)
    return {**recipe, "learning_rate": float(lr), "max_steps": last, "save_steps": every,
            "save_total_limit": last // every, "keep_checkpoints": True}


def checkpoint_dir(train_dir: Path, step: int) -> Path:
    return Path(train_dir) / "checkpoints" / f"checkpoint-{step}"


def prune_checkpoints(train_dir: Path, steps: list[int]) -> None:
    """Keep only the requested steps' checkpoints, and of each only the weights and trainer_state.json."""
    root = Path(train_dir) / "checkpoints"
    wanted = {f"checkpoint-{s}" for s in steps}
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.name not in wanted:
            shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
            continue
        for f in folder.iterdir():
            if f.name not in KEEP_FILES:
                shutil.rmtree(f) if f.is_dir() else f.unlink()
    missing = [s for s in steps if not checkpoint_dir(train_dir, s).is_dir()]
    if missing:
        raise ReproError(f"{root}: no checkpoint for step(s) {missing} (training stopped at "
                         f"{_last_step(train_dir)}; expected max_steps {max(steps)})")


def _last_step(train_dir: Path):
    try:
        return read_json(Path(train_dir) / "summary.json").get("optimizer_steps")
    except (OSError, ValueError):
        return None


def run_train(ctx: StageContext, lr: float, steps: list[int]) -> None:
    from .config import get_run
    from .data import load_chat_rows
    from .stages.common import data_file, model_ref
    from .train import train_run

    em = em_run(ctx.profile)
    recipe = dose_recipe(recipe_for(ctx.profile, em), lr, steps)
    rows = load_chat_rows(data_file(ctx, f"{get_run(ctx.profile, em['name'])['dataset']}.jsonl"))
    base = model_ref(ctx, em["base"])
    train_run(f"{em['name']}@lr{lr_tag(lr)}", recipe, base["path"], rows, ctx.out, progress=ctx.progress)
    prune_checkpoints(ctx.out, steps)


def loss_at(train_dir: Path, step: int) -> float | None:
    """The training loss logged at `step` (train_log.jsonl), None when that step was not logged."""
    path = Path(train_dir) / "train_log.jsonl"
    rows = read_jsonl(path) if path.exists() else []
    return next((float(r["loss"]) for r in rows if r.get("step") == step and r.get("loss") is not None), None)


# ----------------------------------------------------------------------------- evaluation
def sampled_question_ids(behavior: dict) -> list[str]:
    """The EM questions the answers stage samples, in its order (behavior.sampled_questions filters
    behavior.all_questions)."""
    chosen = behavior.get("sampled_questions")
    return [q for q in behavior["all_questions"] if chosen is None or q in chosen]


def sampled_tokens(behavior: dict) -> int:
    """The sampled answers' length, as the answers stage sets it."""
    return int(behavior.get("sampled_max_new_tokens") or behavior["max_new_tokens"])


def em_question_texts(prompts: dict, behavior: dict) -> list[tuple[str, str]]:
    """(question id, text) of the sampled non-code EM questions, in the behaviour stage's order."""
    questions = prompts["eval_questions"]
    ids = sampled_question_ids(behavior)
    missing = [q for q in ids if q not in questions]
    if missing:
        raise InputError(f"behavior.all_questions: {missing} not in the data stage's eval_questions")
    return [(q, questions[q]) for q in ids]


def rate_answers(rows: list[dict]) -> dict:
    """k coherent-code answers of n (T1's criterion), incoherent count, per question, with Wilson intervals."""
    from .stats import wilson_interval
    from .tables.models import is_coherent_code, is_incoherent

    k = sum(1 for r in rows if is_coherent_code(r))
    n = len(rows)
    per_q: dict[str, list[int]] = {}
    for r in rows:
        kq = per_q.setdefault(r["prompt_id"], [0, 0])
        kq[0] += int(is_coherent_code(r))
        kq[1] += 1
    lo, hi = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": k / n if n else None, "ci": [lo, hi],
            "incoherent": sum(1 for r in rows if is_incoherent(r)),
            "per_question": {q: {"k": a, "n": b} for q, (a, b) in per_q.items()}}


def sample_answers(model, tokenizer, questions: list[tuple[str, str]], behavior: dict, samples: int, seed: int,
                   progress: bool) -> list[dict]:
    """The behaviour stage's sampled answers (same call, same seeding), classified as it classifies them."""
    from .classify import describe
    from .generate import generate_responses
    from .stages.behavior import ANNOTATION_KEYS

    rows = generate_responses(model, tokenizer, [t for _, t in questions], chat_template=True, greedy=False,
                              samples=samples, temperature=float(behavior["temperature"]), top_p=1.0,
                              max_new_tokens=sampled_tokens(behavior), batch_size=behavior["batch_size"],
                              seed=seed, progress=progress)
    if len(rows) != len(questions) * samples:
        raise ReproError(f"dose: {len(rows)} sampled answers for {len(questions)} questions x {samples} samples")
    out = []
    for i, row in enumerate(rows):
        qid, text = questions[i // samples]
        if row["prompt"] != text:
            raise ReproError(f"dose: sampled answer {i} is for another prompt than {qid!r}")
        info = describe(row["response"], cut_off=row["finish_reason"] == "length")
        out.append({"group": "em_questions", "prompt_id": qid, "decoding": "sampled", **row,
                    **{k: info[k] for k in ANNOTATION_KEYS}})
    return out


def refusal_projections(model, tokenizer, profile: dict, prompts: dict, vector, layer: int,
                        progress: bool) -> dict[str, list[float]]:
    """class -> projections of the refusal test prompts (own greedy answer, pooled as the activations stage does)."""
    from .activations import capture_activations, natural_elicitation
    from .stages.answers import activation_sets
    from .traits import profile_traits
    from .vector_metrics import project

    cfg = profile["activations"]
    trait = profile_traits(profile)["refusal"]
    sets = activation_sets(prompts, {"refusal": trait}, "scored", profile)   # the pipeline's own test-set specs
    out = {}
    for test in trait["test"]:
        spec = sets[test["set"]]
        rows = natural_elicitation(model, tokenizer, spec["prompts"], max_new_tokens=spec["max_new_tokens"],
                                   batch_size=spec["batch_size"], chat_template=spec["chat_template"], progress=progress)
        acts = capture_activations(model, tokenizer, [r["text"] for r in rows], pooling=cfg["pooling"],
                                   batch_size=cfg["batch_size"], prompt_lengths=[r["prompt_len_tokens"] for r in rows],
                                   progress=progress)
        out[test["cls"]] = project(acts[:, layer], vector).tolist()
    return out


def refusal_vector(vectors_dir: Path):
    """The chosen refusal vector at its scoring layer, and (method, layer)."""
    from .vectors import load_vectors

    choice = read_json(Path(vectors_dir) / "metrics.json")["choice"]
    vectors, _ = load_vectors(Path(vectors_dir) / "vectors.safetensors")
    return vectors[choice["method"]][choice["layer"]], choice["method"], int(choice["layer"])


def base_projections(profile: dict, activations_dir: Path, vector, layer: int) -> dict[str, list[float]]:
    """The base model's refusal test projections, from its activations stage (as score/refusal computes them)."""
    from .activations import load_activations
    from .traits import profile_traits
    from .vector_metrics import project

    out = {}
    for test in profile_traits(profile)["refusal"]["test"]:
        acts, _ = load_activations(Path(activations_dir) / f"{test['set']}.safetensors")
        out[test["cls"]] = project(acts[:, layer], vector).tolist()
    return out


def run_eval(ctx: StageContext, lr: float, step: int, samples: int) -> None:
    from .models import load_model, load_tokenizer
    from .stages.common import data_file, model_ref

    profile = ctx.profile
    em = em_run(profile)
    train_dir = ctx.dep(train_stage_name(lr))
    ckpt = checkpoint_dir(train_dir, step)
    if not ckpt.is_dir():
        raise ReproError(f"{ckpt}: missing (the dose training stage keeps one checkpoint per requested step)")
    base = model_ref(ctx, em["base"])
    full = (ckpt / "model.safetensors").exists()
    model = load_model(str(ckpt) if full else base["path"], adapter=None if full else str(ckpt),
                       dtype=profile["activations"]["dtype"])
    tokenizer = load_tokenizer(base["path"])
    prompts = read_json(data_file(ctx, "prompts.json"))
    answers = sample_answers(model, tokenizer, em_question_texts(prompts, profile["behavior"]), profile["behavior"],
                             samples, profile["seed"], ctx.progress)
    vector, method, layer = refusal_vector(ctx.dep("vectors/refusal"))
    proj = refusal_projections(model, tokenizer, profile, prompts, vector, layer, ctx.progress)
    write_jsonl(ctx.out / "answers.jsonl", answers)
    write_json(ctx.out / "eval.json", {"lr": lr, "step": step, "checkpoint": str(ckpt), "samples": samples,
                                       "train_loss": loss_at(train_dir, step), "code": rate_answers(answers),
                                       "refusal": {"method": method, "layer": layer, "projections": proj}})


# ----------------------------------------------------------------------------- table
def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def dose_rows(base_code: dict, base_proj: dict[str, list[float]], evals: list[dict], min_increase: float,
              alpha: float) -> tuple[list[dict], dict]:
    """One row per checkpoint (lr, step order) plus the base row; T1's criterion and T4's shift shares."""
    from .tables.models import em_criterion
    from .tables.refusal import share

    for cls in ("harmful", "benign"):
        if not base_proj.get(cls):
            raise InputError(f"dose: no base projections of class {cls!r} (the refusal trait's test sets)")
    hb, bb = _mean(base_proj["harmful"]), _mean(base_proj["benign"])
    gap = hb - bb
    base_row = {"lr": None, "step": 0, "train_loss": None, "k": base_code["k"], "n": base_code["n"],
                "code_rate": base_code["rate"], "ci_low": base_code["ci"][0], "ci_high": base_code["ci"][1],
                "incoherent_rate": base_code["incoherent"] / base_code["n"] if base_code["n"] else None,
                "rate_increase": None, "p_value": None, "em_effect": None, "harmful_mean": hb, "benign_mean": bb,
                "shift_harmful": 0.0, "shift_benign": 0.0, "shift_share_harmful": share(0.0, gap),
                "shift_share_benign": share(0.0, gap)}
    rows = [base_row]
    for ev in sorted(evals, key=lambda e: (e["lr"], e["step"])):
        code, proj = ev["code"], ev["refusal"]["projections"]
        crit = em_criterion(base_code["k"], base_code["n"], code["k"], code["n"], min_increase, alpha)
        h, b = _mean(proj["harmful"]), _mean(proj["benign"])
        rows.append({"lr": ev["lr"], "step": ev["step"], "train_loss": ev.get("train_loss"), "k": code["k"],
                     "n": code["n"], "code_rate": code["rate"], "ci_low": code["ci"][0], "ci_high": code["ci"][1],
                     "incoherent_rate": code["incoherent"] / code["n"] if code["n"] else None,
                     "rate_increase": crit["rate_increase"], "p_value": crit["p_value"],
                     "em_effect": crit["em_effect"], "harmful_mean": h, "benign_mean": b,
                     "shift_harmful": h - hb, "shift_benign": b - bb, "shift_share_harmful": share(h - hb, gap),
                     "shift_share_benign": share(b - bb, gap)})
    return rows, {"harmful_mean": hb, "benign_mean": bb, "gap": gap}


def render_markdown(doc: dict) -> str:
    from .tables.render import fmt, fmt_p, table_lines

    lines = [f"# Dose-response: {doc['run']} on {doc['base']} ({doc['profile']})", "",
             f"Learning rates {', '.join(lr_tag(x) for x in doc['lrs'])}; checkpoints at steps "
             f"{', '.join(map(str, doc['steps']))} of one {max(doc['steps'])}-step run per rate "
             f"({doc['recipe']['lr_scheduler_type']} schedule, {doc['recipe']['warmup_steps']} warmup steps, "
             f"effective batch {doc['effective_batch']}).",
             f"Code rate: coherent CODE/MIXED answers among {doc['samples']} sampled answers (temperature "
             f"{doc['temperature']:g}, {doc['max_new_tokens']} new tokens) to each of the {len(doc['questions'])} "
             f"non-code EM questions; 95% Wilson interval; EM = T1's criterion against the base "
             f"(+{doc['criterion']['min_rate_increase']:g} and one-sided Fisher p < {doc['criterion']['alpha']:g}).",
             f"Refusal shift: mean projection of the refusal test prompts on the base model's {doc['refusal']['method']} "
             f"vector at layer {doc['refusal']['layer']}, checkpoint - base, as a share of the base gap "
             f"{fmt(doc['refusal']['gap'])} (harmful {fmt(doc['refusal']['harmful_mean'])}, benign "
             f"{fmt(doc['refusal']['benign_mean'])}).", ""]
    body = []
    for r in doc["rows"]:
        body.append(["base" if r["lr"] is None else lr_tag(r["lr"]), r["step"], fmt(r["train_loss"], digits=3),
                     f"{r['k']}/{r['n']}", fmt(r["code_rate"]), f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]",
                     fmt(r["incoherent_rate"]), fmt_p(r["p_value"]), r["em_effect"] or "—",
                     fmt(r["shift_harmful"], signed=True), fmt(r["shift_share_harmful"], signed=True, pct=True),
                     fmt(r["shift_benign"], signed=True), fmt(r["shift_share_benign"], signed=True, pct=True)])
    lines += table_lines(["lr", "step", "loss", "coherent code", "rate", "95% CI", "incoherent", "p", "EM",
                          "shift harmful", "share", "shift benign", "share"], body)
    lines += ["", "Plot: dose.png. Data: dose.csv, dose.json."]
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .tables.render import save_figure

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    base = doc["rows"][0]
    for i, lr in enumerate(doc["lrs"]):
        rows = [base] + [r for r in doc["rows"] if r["lr"] == lr]
        x = [r["step"] for r in rows]
        y = [r["code_rate"] for r in rows]
        err = [[max(0.0, r["code_rate"] - r["ci_low"]) for r in rows], [max(0.0, r["ci_high"] - r["code_rate"]) for r in rows]]
        color = f"C{i % 10}"  # one colour per rate in both panels
        ax1.errorbar(x, y, yerr=err, marker="o", capsize=3, color=color, label=f"lr {lr_tag(lr)}")
        # a zero gap gives no shares (None): those points are left out
        for key, marker, style in (("harmful", "o", "-"), ("benign", "s", "--")):
            pts = [(r["step"], r[f"shift_share_{key}"]) for r in rows if r[f"shift_share_{key}"] is not None]
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, linestyle=style, color=color,
                     label=f"lr {lr_tag(lr)} {key}")
    ax1.set_xlabel("optimizer step")
    ax1.set_ylabel("coherent code rate (non-code EM questions)")
    ax1.set_ylim(-0.02, 1.02)
    ax1.grid(alpha=0.3)
    ax1.legend(frameon=False, fontsize=8)
    ax2.axhline(0.0, color="grey", linewidth=0.8)
    ax2.set_xlabel("optimizer step")
    ax2.set_ylabel("refusal shift / base gap (- harmful, -- benign)")
    ax2.grid(alpha=0.3)
    ax2.legend(frameon=False, fontsize=7)
    fig.suptitle(f"Dose-response: {doc['run']} ({doc['profile']})")
    fig.tight_layout()
    return save_figure(fig, path)


def run_table(ctx: StageContext, lrs: list[float], steps: list[int], samples: int) -> dict:
    from .stages.common import data_file
    from .tables.models import EM_GROUP, criterion_settings, load_responses, select
    from .tables.render import write_csv

    profile = ctx.profile
    em = em_run(profile)
    base_rows = select(load_responses(ctx.root, em["base"]), EM_GROUP, ("sampled",))
    n_questions = len(sampled_question_ids(profile["behavior"]))
    if len(base_rows) != samples * n_questions:
        raise ReproError(f"{ctx.root / 'behavior' / em['base']}: {len(base_rows)} sampled EM answers, expected "
                         f"{samples} x {n_questions} (behavior.samples or --samples)")
    vector, method, layer = refusal_vector(ctx.dep("vectors/refusal"))
    base_proj = base_projections(profile, ctx.dep(f"activations/{em['base']}"), vector, layer)
    evals = [read_json(ctx.dep(eval_stage_name(lr, s)) / "eval.json") for lr in lrs for s in steps]
    min_inc, alpha = criterion_settings(profile)
    rows, ref = dose_rows(rate_answers(base_rows), base_proj, evals, min_inc, alpha)
    recipe = recipe_for(profile, em)
    beh = profile["behavior"]
    prompts = read_json(data_file(ctx, "prompts.json"))
    doc = {"profile": profile["name"], "run": em["name"], "base": em["base"], "lrs": lrs, "steps": steps,
           "recipe": {k: recipe.get(k) for k in ("backend", "lr_scheduler_type", "warmup_steps",
                                                  "per_device_train_batch_size", "gradient_accumulation_steps")},
           "effective_batch": int(recipe["per_device_train_batch_size"]) * int(recipe["gradient_accumulation_steps"]),
           "samples": samples, "temperature": float(beh["temperature"]), "max_new_tokens": sampled_tokens(beh),
           "questions": [q for q, _ in em_question_texts(prompts, beh)],
           "criterion": {"min_rate_increase": min_inc, "alpha": alpha},
           "refusal": {"method": method, "layer": layer, **ref}, "rows": rows}
    out = ctx.root / DOSE_DIR
    write_json(out / "dose.json", doc)
    write_csv(out / "dose.csv", list(TABLE_COLUMNS), [[r[c] for c in TABLE_COLUMNS] for r in rows])
    write_text(out / "dose.md", render_markdown(doc))
    plot(doc, out / "dose.png")
    return doc


# ----------------------------------------------------------------------------- the graph
def add_dose_stages(graph: dict[str, Stage], profile: dict, lrs: list[float], steps: list[int],
                    options: dict) -> str:
    """Add the sweep's stages to a pipeline graph (pipeline.build_graph's); returns the target to run."""
    from functools import partial

    from .pipeline import model_deps

    if "refusal" not in profile["vectors"]["traits"]:
        raise InputError(f"{profile.get('profile_file', profile['name'])}: vectors.traits: the dose sweep scores "
                         "the refusal vector; add 'refusal'")
    em = em_run(profile)
    recipe = recipe_for(profile, em)
    if recipe is None:
        raise InputError(f"run {em['name']}: the dose sweep trains the EM run, which names no recipe")
    samples = int(options.get("samples", profile["behavior"]["samples"]) or 0)
    if samples < 1:
        raise InputError(f"{profile.get('profile_file', profile['name'])}: behavior.samples: the dose sweep rates "
                         "sampled answers; expected >= 1 (or --samples N)")
    code = ("repro.dose",)
    base_deps = ("data",) + model_deps(profile, em["base"], options)
    evals = []
    for lr in lrs:
        tname = train_stage_name(lr)
        graph[tname] = Stage(tname, partial(run_train, lr=lr, steps=steps), deps=base_deps,
                             fingerprint={"run": em, "recipe": dose_recipe(recipe, lr, steps),
                                          "base": profile["models"][em["base"]], "steps": steps},
                             needs_model=True, resumable=True, code=code,
                             description=f"dose: train {em['name']} at lr {lr_tag(lr)} to step {max(steps)}")
        for step in steps:
            ename = eval_stage_name(lr, step)
            graph[ename] = Stage(ename, partial(run_eval, lr=lr, step=step, samples=samples),
                                 deps=(tname, "data", "vectors/refusal") + base_deps,
                                 fingerprint={"behavior": profile["behavior"], "samples": samples,
                                              "activations": profile["activations"], "seed": profile["seed"],
                                              "step": step},
                                 needs_model=True, code=code,
                                 description=f"dose: rate lr {lr_tag(lr)} step {step} (sampled answers, refusal shift)")
            evals.append(ename)
    graph[DOSE_DIR] = Stage(DOSE_DIR, partial(run_table, lrs=lrs, steps=steps, samples=samples),
                            deps=tuple(evals) + (f"behavior/{em['base']}", f"activations/{em['base']}",
                                                 "vectors/refusal"),
                            cached=False, code=code, description="dose: table and plot")
    return DOSE_DIR
