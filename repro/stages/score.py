"""score/<trait>: project each test prompt (prompt + the model's own answer, pooled) on the chosen
vector, for the base model and the EM model.

Rule (stated, FACTS.md leaves it open): raw pooled activation . unit-normalised vector at the
chosen (method, layer), pooling as configured (mean over all tokens of the chat-formatted prompt
and the model's own greedy answer).
"""

from __future__ import annotations

from ..activations import load_activations
from ..config import em_run
from ..io import read_json, read_jsonl, write_json
from ..runner import StageContext
from ..traits import profile_traits
from ..vector_metrics import project
from ..vectors import load_vectors

def run(ctx: StageContext, trait: str) -> None:
    em = em_run(ctx.profile)
    metrics = read_json(ctx.dep(f"vectors/{trait}") / "metrics.json")
    choice = metrics["choice"]
    vectors, _ = load_vectors(ctx.dep(f"vectors/{trait}") / "vectors.safetensors")
    vector = vectors[choice["method"]][choice["layer"]]
    rows = []
    for test in profile_traits(ctx.profile)[trait]["test"]:
        cls, set_name = test["cls"], test["set"]
        scores = {}
        for role, label in (("base", em["base"]), ("em", em["name"])):
            acts, _ = load_activations(ctx.dep(f"activations/{label}") / f"{set_name}.safetensors")
            scores[role] = project(acts[:, choice["layer"]], vector).tolist()
        prompts = [r["prompt"] for r in read_jsonl(ctx.dep(f"activations/{em['base']}") / f"{set_name}.jsonl")]
        for prompt, base, emv in zip(prompts, scores["base"], scores["em"]):
            rows.append({"prompt": prompt, "class": cls, "base": base, "em": emv, "diff": emv - base})
    write_json(ctx.out / "scores.json", {"trait": trait, "method": choice["method"], "layer": choice["layer"],
                                         "rule": choice["rule"], "vector_normalised": True, "rows": rows,
                                         "heldout_gap": _heldout_gap(ctx, trait, metrics, vector, choice["layer"])})


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

