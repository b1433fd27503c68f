"""T6 (extraction grid): every method x every layer, held-out accuracy / Cohen's d / polarity / AUROC,
and which (method, layer) the scoring uses and why.

Reads vectors/<trait>/metrics.json for every trait of the profile. results/extraction.json has the
paper_tables/README.md schema for the refusal trait at the top level (methods, n_layers, grid,
score) and the same block for every trait under `traits`, each with a per-method summary (mean
and max accuracy over layers, polarity failures; the shape of the original group's method
comparison). Writes tables/extraction.md, tables/extraction.csv (long form, all traits) and one
heatmap (methods x layers) per trait and metric: tables/extraction_<trait>_<metric>.png.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..io import read_json, write_json, write_text
from ..runner import StageContext
from .render import fmt, save_figure, table_lines, write_csv

PRIMARY_TRAIT = "refusal"
GRID_KEYS = ("val_accuracy", "cohens_d", "polarity_correct", "auroc")
HEATMAPS = ("val_accuracy", "cohens_d", "polarity_correct")
_LABELS = {"val_accuracy": "held-out accuracy", "cohens_d": "Cohen's d", "polarity_correct": "polarity correct",
           "auroc": "AUROC"}


def _cell(row: dict) -> dict:
    return {"method": row["method"], "layer": int(row["layer"]), "val_accuracy": float(row["accuracy"]),
            "cohens_d": float(row["cohens_d"]), "polarity_correct": bool(row["polarity_correct"]),
            "auroc": float(row["auroc"]), "p_value": row.get("p_value")}


def _why(choice: dict, chosen: dict, best: dict) -> str:
    rule = choice.get("rule") or "not recorded"
    if rule.startswith("configured"):
        text = (f"{rule}: fixed in the profile before looking at held-out numbers (the findings scored with the "
                f"probe vector at the middle layer)")
    else:
        text = rule
    if (best["method"], best["layer"]) != (chosen["method"], chosen["layer"]):
        text += (f"; the grid's best by held-out accuracy is {best['method']} at layer {best['layer']} "
                 f"(accuracy {best['val_accuracy']:.3f}, d {best['cohens_d']:.2f}) vs the chosen cell's "
                 f"{chosen['val_accuracy']:.3f}, d {chosen['cohens_d']:.2f}")
    else:
        text += "; it is also the grid's best cell by held-out accuracy"
    return text


def build_trait_grid(metrics: dict, source: str = "metrics.json") -> dict:
    """One trait's block: methods, n_layers, grid, score, best, method_summary, n_train, n_val."""
    rows = metrics.get("rows")
    choice = metrics.get("choice")
    if not rows or not isinstance(choice, dict):
        raise InputError(f"{source}: expected 'rows' (per method x layer metrics) and 'choice' (from the vectors stage)")
    try:
        grid = [_cell(r) for r in rows]
    except KeyError as exc:
        raise InputError(f"{source}: rows: missing metric {exc} (expected evaluate_vectors rows)") from None
    methods = list(dict.fromkeys(c["method"] for c in grid))
    layers = sorted({c["layer"] for c in grid})
    if layers != list(range(len(layers))) or len(grid) != len(methods) * len(layers):
        raise InputError(f"{source}: rows do not form a full method x layer grid "
                         f"({len(grid)} rows, {len(methods)} methods, layers {layers[:3]}...)")
    index = {(c["method"], c["layer"]): c for c in grid}
    key = (choice.get("method"), choice.get("layer"))
    if key not in index:
        raise InputError(f"{source}: choice {key} is not a cell of the grid")
    chosen = index[key]
    best_row = choice.get("best") or {}
    best = index.get((best_row.get("method"), best_row.get("layer"))) or max(
        grid, key=lambda c: (c["val_accuracy"], abs(c["cohens_d"]), -c["layer"]))
    summary = []
    for m in methods:
        cells = [c for c in grid if c["method"] == m]
        top = max(cells, key=lambda c: (c["val_accuracy"], -c["layer"]))
        summary.append({"method": m, "mean_val_accuracy": sum(c["val_accuracy"] for c in cells) / len(cells),
                        "max_val_accuracy": top["val_accuracy"], "best_layer": top["layer"],
                        "mean_abs_cohens_d": sum(abs(c["cohens_d"]) for c in cells) / len(cells),
                        "polarity_failures": sum(not c["polarity_correct"] for c in cells), "n_layers": len(cells)})
    score = {k: chosen[k] for k in ("method", "layer", *GRID_KEYS)}
    score["why"] = _why(choice, chosen, best)
    score["rule"] = choice.get("rule")
    return {"methods": methods, "n_layers": len(layers), "grid": grid, "score": score,
            "best": {k: best[k] for k in ("method", "layer", *GRID_KEYS)}, "method_summary": summary,
            "n_train": metrics.get("n_train"), "n_val": metrics.get("n_val")}


def build_extraction(per_trait: dict[str, dict], primary: str = PRIMARY_TRAIT) -> dict:
    """results/extraction.json from {trait: metrics.json dict}; the primary trait fills the top level."""
    if not per_trait:
        raise InputError("vectors.traits: no trait metrics to tabulate")
    traits = {t: build_trait_grid(m, f"vectors/{t}/metrics.json") for t, m in per_trait.items()}
    top = primary if primary in traits else next(iter(traits))
    block = traits[top]
    return {"trait": top, **{k: block[k] for k in ("methods", "n_layers", "grid", "score")}, "traits": traits}


def render_extraction(res: dict) -> str:
    lines = ["# T6 Extraction grid", ""]
    for trait, block in res["traits"].items():
        s = block["score"]
        n_val = block.get("n_val") or {}
        lines += [f"## {trait}: {len(block['methods'])} methods x {block['n_layers']} layers", "",
                  f"Held-out examples: {n_val.get('pos', '?')} pos / {n_val.get('neg', '?')} neg. "
                  "Metrics on cosine projections (vectors and activations L2-normalised).", "",
                  f"**Scoring uses {s['method']} at layer {s['layer']}** (accuracy {fmt(s['val_accuracy'], digits=3)}, "
                  f"d {fmt(s['cohens_d'])}, polarity {fmt(s['polarity_correct'])}). Why: {s['why']}.", ""]
        lines += table_lines(
            ["method", "mean accuracy", "max accuracy (layer)", "mean |d|", "polarity failures"],
            [[m["method"], fmt(m["mean_val_accuracy"], digits=3), f"{fmt(m['max_val_accuracy'], digits=3)} ({m['best_layer']})",
              fmt(m["mean_abs_cohens_d"]), f"{m['polarity_failures']}/{m['n_layers']}"] for m in block["method_summary"]])
        if block["n_layers"] <= 16:  # small grids fit on the page; large ones are in the CSV and heatmaps
            lines += ["", "Held-out accuracy per layer (* = polarity wrong):", ""]
            index = {(c["method"], c["layer"]): c for c in block["grid"]}
            lines += table_lines(
                ["method"] + [str(l) for l in range(block["n_layers"])],
                [[m] + [fmt(index[m, l]["val_accuracy"], digits=2) + ("" if index[m, l]["polarity_correct"] else "*")
                        for l in range(block["n_layers"])] for m in block["methods"]])
        lines += ["", "Heatmaps: " + ", ".join(f"extraction_{trait}_{k}.png" for k in HEATMAPS) + ".", ""]
    lines += ["Full grid (all traits): extraction.csv."]
    return "\n".join(lines) + "\n"


def write_grid_csv(res: dict, path: Path) -> Path:
    header = ["trait", "method", "layer", *GRID_KEYS, "p_value"]
    rows = [[t, c["method"], c["layer"], *(c[k] for k in GRID_KEYS), c.get("p_value")]
            for t, block in res["traits"].items() for c in block["grid"]]
    return write_csv(path, header, rows)


def plot_heatmap(block: dict, trait: str, metric: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods, n_layers = block["methods"], block["n_layers"]
    index = {(c["method"], c["layer"]): c for c in block["grid"]}
    data = np.array([[float(index[m, l][metric]) for l in range(n_layers)] for m in methods])
    fig, ax = plt.subplots(figsize=(min(16, 3 + 0.22 * n_layers), 0.45 * len(methods) + 1.6), dpi=120)
    if metric == "cohens_d":  # signed: diverging colours centred on 0
        lim = float(np.abs(data).max()) or 1.0
        im = ax.imshow(data, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
    else:
        im = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    s = block["score"]
    ax.scatter([s["layer"]], [methods.index(s["method"])], marker="s", s=60, facecolors="none", edgecolors="red")
    ax.set_yticks(range(len(methods)), methods)
    step = max(1, n_layers // 16)
    ax.set_xticks(range(0, n_layers, step))
    ax.set_xlabel("layer (output of decoder block)")
    ax.set_title(f"T6 {trait}: {_LABELS[metric]} (red square: scoring cell)", fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return save_figure(fig, path)


def run(ctx: StageContext) -> dict:
    per_trait = {}
    for trait in ctx.profile["vectors"]["traits"]:
        src = ctx.root / "vectors" / trait / "metrics.json"
        if not src.exists():
            raise InputError(f"{src}: missing (run the vectors/{trait} stage first)")
        per_trait[trait] = read_json(src)
    res = build_extraction(per_trait)
    write_json(ctx.root / "results" / "extraction.json", res)
    write_text(ctx.root / "tables" / "extraction.md", render_extraction(res))
    write_grid_csv(res, ctx.root / "tables" / "extraction.csv")
    for trait, block in res["traits"].items():
        for metric in HEATMAPS:
            plot_heatmap(block, trait, metric, ctx.root / "tables" / f"extraction_{trait}_{metric}.png")
    return res
