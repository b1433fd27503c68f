"""score/<trait>: project each test prompt (prompt + the model's own answer, pooled) on the chosen
vector, for the base model and the EM model, and for every control and backdoor run beside them.

Rule (stated, FACTS.md leaves it open): raw pooled activation . unit-normalised vector at the
chosen (method, layer), pooling as configured (mean over all tokens of the chat-formatted prompt
and the model's own greedy answer).

`rows` is the EM run against the base. `controls` holds, per control / backdoor run
(pipeline.scored_models, run order), the same per-prompt rows with `score` in place of `em`:
diff = score - base, the EM run's rule. A backdoor run has two entries, without and with its
trigger in front of the user turn (its <set>__triggered answers); both are measured against the
base model's answers to the plain prompts, the reference T1 counts the triggered rates against
too (the base model was never trained on the trigger).
"""

from __future__ import annotations

from ..activations import load_activations
from ..config import em_run, get_run
from ..errors import ReproError
from ..io import read_json, read_jsonl, write_json
from ..pipeline import scored_models
from ..runner import StageContext
from ..traits import profile_traits
from ..vector_metrics import project
from ..vectors import load_vectors
from .answers import triggered_set


def run(ctx: StageContext, trait: str) -> None:
    em = em_run(ctx.profile)
    metrics = read_json(ctx.dep(f"vectors/{trait}") / "metrics.json")
    choice = metrics["choice"]
    vectors, _ = load_vectors(ctx.dep(f"vectors/{trait}") / "vectors.safetensors")
    vector = vectors[choice["method"]][choice["layer"]]
    layer = choice["layer"]

    def scores(label: str, set_name: str) -> list[float]:
        acts, _ = load_activations(ctx.dep(f"activations/{label}") / f"{set_name}.safetensors")
        return project(acts[:, layer], vector).tolist()

    tests = profile_traits(ctx.profile)[trait]["test"]
    base = {t["set"]: scores(em["base"], t["set"]) for t in tests}
    prompts = {t["set"]: [r["prompt"] for r in read_jsonl(ctx.dep(f"activations/{em['base']}") / f"{t['set']}.jsonl")]
               for t in tests}

    def compare(label: str, key: str, suffix=lambda s: s) -> list[dict]:
        rows = []
        for test in tests:
            cls, set_name = test["cls"], test["set"]
            values = scores(label, suffix(set_name))
            if len(values) != len(base[set_name]):
                raise ReproError(f"activations/{label}/{suffix(set_name)}.safetensors: {len(values)} rows, "
                                 f"expected {len(base[set_name])} (the base model's {set_name})")
            for prompt, b, v in zip(prompts[set_name], base[set_name], values):
                rows.append({"prompt": prompt, "class": cls, "base": b, key: v, "diff": v - b})
        return rows

    controls = []
    for label in scored_models(ctx.profile)[1:]:
        run_spec = get_run(ctx.profile, label)
        variants = [(False, lambda s: s)] + ([(True, triggered_set)] if run_spec.get("trigger") else [])
        for is_triggered, suffix in variants:
            controls.append({"run": label, "role": run_spec["role"], "triggered": is_triggered,
                             "trigger": run_spec.get("trigger") if is_triggered else None,
                             "sets": {t["cls"]: suffix(t["set"]) for t in tests},
                             "rows": compare(label, "score", suffix)})
    write_json(ctx.out / "scores.json", {"trait": trait, "method": choice["method"], "layer": layer,
                                         "rule": choice["rule"], "vector_normalised": True, "em_run": em["name"],
                                         "rows": compare(em["name"], "em"), "controls": controls,
                                         "heldout_gap": _heldout_gap(ctx, trait, metrics, vector, layer)})


def _heldout_gap(ctx: StageContext, trait: str, metrics: dict, vector, layer: int) -> dict:
    """Base model: mean projection of the held-out pos vs neg extraction prompts (the trait's own scale)."""
    sets = profile_traits(ctx.profile)[trait]
    source = ctx.dep(f"activations/{em_run(ctx.profile)['base']}")
    means = {}
    for cls in ("pos", "neg"):
        acts, _ = load_activations(source / f"{sets[cls]}.safetensors")
        idx = metrics["val_idx"][cls]
        means[cls] = float(project(acts[idx, layer], vector).mean())
    return {"pos_mean": means["pos"], "neg_mean": means["neg"], "gap": means["pos"] - means["neg"]}
