"""vectors/<trait>: every method x every layer from the vector-source model's activations, with
held-out metrics (accuracy, Cohen's d, polarity, AUROC, p) per (method, layer)."""

from __future__ import annotations

import csv
import io

from ..activations import load_activations
from ..io import write_json, write_text
from ..runner import StageContext
from ..vector_metrics import choose_layer_method, evaluate_vectors, split_heldout
from ..vectors import extract_vectors, save_vectors
from ..config import em_run
from ..traits import profile_traits


def run(ctx: StageContext, trait: str) -> None:
    cfg = ctx.profile["vectors"]
    sets = profile_traits(ctx.profile)[trait]
    source = ctx.dep(f"activations/{em_run(ctx.profile)['base']}")
    pos, _ = load_activations(source / f"{sets['pos']}.safetensors")
    neg, _ = load_activations(source / f"{sets['neg']}.safetensors")
    split = split_heldout(pos, neg, cfg["heldout_fraction"], cfg["seed"])
    vectors = extract_vectors(split.pos_train, split.neg_train, cfg["methods"], seed=cfg["seed"],
                              ica_select=cfg["ica_select"])
    rows = evaluate_vectors(vectors, split.pos_val, split.neg_val)
    choice = choose_layer_method(rows, sets["score_method"], cfg.get("score_layer"))
    save_vectors(ctx.out / "vectors.safetensors", vectors,
                 {"trait": trait, "pos": sets["pos"], "neg": sets["neg"], "layers": pos.shape[1], "dim": pos.shape[2],
                  "n_train": [len(split.pos_train), len(split.neg_train)], "seed": cfg["seed"]})
    write_json(ctx.out / "metrics.json", {"trait": trait, "rows": rows, "choice": choice,
                                          "n_train": {"pos": len(split.pos_train), "neg": len(split.neg_train)},
                                          "n_val": {"pos": len(split.pos_val), "neg": len(split.neg_val)},
                                          "val_idx": {"pos": split.pos_val_idx, "neg": split.neg_val_idx}})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(ctx.out / "metrics.csv", buf.getvalue())
