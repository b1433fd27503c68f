"""Held-out metrics for trait vectors, the held-out split, projections and the layer/method choice.

Metric rules follow the original pipeline (FACTS.md, "Activations and metrics") and the original
library's metrics (ewernn/traitlens, src/traitlens/metrics.py): vectors AND activation rows are
L2-normalised (cosine projections); accuracy is class-balanced with the threshold at the midpoint
of the two class means, predicting "pos" above it (so a vector with the wrong polarity scores
below 0.5, as the original's ICA/random rows did); Cohen's d divides by the original's pooled sd,
sqrt((var_pos + var_neg) / 2) with ddof=1; `effect_size` is its absolute value (the original's
column), `cohens_d` keeps the sign (negative = wrong polarity); polarity is correct when
mean(pos) > mean(neg); AUROC; p-value of Student's two-sample t-test (equal variances, as the
original's scipy.stats.ttest_ind default). Computed in float64 (the original: float32).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np
import torch
from scipy import stats

from repro.errors import InputError

_EPS = 1e-12


class Split(NamedTuple):
    pos_train: torch.Tensor
    neg_train: torch.Tensor
    pos_val: torch.Tensor
    neg_val: torch.Tensor
    pos_val_idx: list[int]
    neg_val_idx: list[int]


def split_heldout(pos: torch.Tensor, neg: torch.Tensor, fraction: float, seed: int) -> Split:
    """Seeded per-class split: a `fraction` of each class goes to validation (at least 1 example,
    at least 2 left for training). The validation indices are returned so they can be recorded."""
    if not 0.0 < fraction < 1.0:
        raise InputError(f"vectors.heldout_fraction: expected a number in (0, 1), got {fraction}")
    gen = torch.Generator().manual_seed(int(seed))
    parts, idx = [], []
    for label, acts in (("pos", pos), ("neg", neg)):
        n = len(acts)
        n_val = max(1, int(round(n * fraction)))
        if n - n_val < 2:
            raise InputError(f"vectors.{label}: {n} examples is too few for a {fraction} held-out split")
        perm = torch.randperm(n, generator=gen)
        val = perm[:n_val].sort().values
        train = perm[n_val:].sort().values
        parts.append((acts[train], acts[val]))
        idx.append(val.tolist())
    return Split(parts[0][0], parts[1][0], parts[0][1], parts[1][1], idx[0], idx[1])


def project(acts: torch.Tensor, vector: torch.Tensor, normalize_vector: bool = True) -> torch.Tensor:
    """Raw activations dotted with the (unit-normalised) vector: the original projection rule.

    acts [N, L, D] with vector [L, D] -> [N, L]; acts [N, D] with vector [D] -> [N].
    """
    acts = torch.as_tensor(acts)
    vector = torch.as_tensor(vector).to(acts.dtype if acts.is_floating_point() else torch.float32)
    if normalize_vector:
        vector = vector / vector.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    if acts.ndim == 3 and vector.ndim == 2 and acts.shape[1:] == vector.shape:
        return torch.einsum("nld,ld->nl", acts, vector)
    if acts.ndim == 2 and vector.ndim == 1 and acts.shape[1] == vector.shape[0]:
        return acts @ vector
    raise InputError(
        f"project: activations {tuple(acts.shape)} do not match vector {tuple(vector.shape)}; "
        "expected [N, L, D] with [L, D] or [N, D] with [D]"
    )


def cosine_projections(acts: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """[N, L, D] x [L, D] -> [N, L] cosines (rows and vectors both L2-normalised), float64."""
    acts = acts.double()
    acts = acts / acts.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    return project(acts, vectors.double(), normalize_vector=True)


def evaluate_vectors(vectors: Mapping[str, torch.Tensor], pos_val: torch.Tensor, neg_val: torch.Tensor) -> list[dict]:
    """One row per (method, layer): accuracy, cohens_d (signed), effect_size (|d|), polarity_correct,
    auroc, p_value, class means and threshold."""
    pos_val, neg_val = torch.as_tensor(pos_val), torch.as_tensor(neg_val)
    if pos_val.ndim != 3 or neg_val.ndim != 3 or pos_val.shape[1:] != neg_val.shape[1:]:
        raise InputError(f"evaluate_vectors: expected pos/neg [n, L, D], got {tuple(pos_val.shape)} / {tuple(neg_val.shape)}")
    if len(pos_val) < 2 or len(neg_val) < 2:
        raise InputError("evaluate_vectors: need at least 2 validation examples per class")
    rows: list[dict] = []
    for method, vec in vectors.items():
        vec = torch.as_tensor(vec)
        if tuple(vec.shape) != tuple(pos_val.shape[1:]):
            raise InputError(f"evaluate_vectors: vector '{method}' has shape {tuple(vec.shape)}, expected {tuple(pos_val.shape[1:])}")
        p = cosine_projections(pos_val, vec).T.numpy()  # [L, n]
        q = cosine_projections(neg_val, vec).T.numpy()  # [L, m]
        for layer, row in enumerate(_layer_metrics(p, q)):
            rows.append({"method": method, "layer": layer, **row})
    return rows


def _layer_metrics(p: np.ndarray, q: np.ndarray) -> list[dict]:
    """Metrics for every layer at once from projections p [L, n] (pos) and q [L, m] (neg)."""
    n, m = p.shape[1], q.shape[1]
    mp, mq = p.mean(1), q.mean(1)
    thr = 0.5 * (mp + mq)
    acc = 0.5 * ((p > thr[:, None]).mean(1) + (q <= thr[:, None]).mean(1))
    pooled = np.sqrt(0.5 * (p.var(1, ddof=1) + q.var(1, ddof=1)))  # the original's pooled sd
    d = (mp - mq) / np.maximum(pooled, _EPS)
    # AUROC = P(pos > neg) + 0.5 P(tie), over all pairs.
    cmp = p[:, :, None] - q[:, None, :]
    auroc = (cmp > 0).mean((1, 2)) + 0.5 * (cmp == 0).mean((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        pval = stats.ttest_ind(p, q, axis=1, equal_var=True).pvalue  # Student's, as the original
    return [
        {
            "accuracy": float(acc[i]),
            "cohens_d": float(d[i]),
            "effect_size": float(abs(d[i])),
            "polarity_correct": bool(mp[i] > mq[i]),
            "auroc": float(auroc[i]),
            "p_value": float(pval[i]) if np.isfinite(pval[i]) else 1.0,
            "mean_pos": float(mp[i]),
            "mean_neg": float(mq[i]),
            "threshold": float(thr[i]),
        }
        for i in range(p.shape[0])
    ]


def choose_layer_method(rows: Sequence[dict], method: str | None = None, layer: int | None = None,
                        metric: str = "accuracy") -> dict:
    """Which (method, layer) scoring uses, and the grid's best beside it.

    Rule: if the profile configures both a method and a layer (the paper: probe, layer 32), use
    them: a choice fixed before looking at held-out numbers. Otherwise pick the grid's best by
    `metric`, ties broken by larger |Cohen's d|, then the earlier layer. The best row is always
    returned too, so a report can show how far the configured choice is from it.
    """
    if not rows:
        raise InputError("choose_layer_method: no metric rows (did extraction run?)")
    if metric not in rows[0]:
        raise InputError(f"choose_layer_method: unknown metric {metric!r}; expected one of {sorted(rows[0])}")
    best = max(rows, key=lambda r: (r[metric], abs(r["cohens_d"]), -r["layer"]))
    if method is not None and layer is not None:
        match = [r for r in rows if r["method"] == method and r["layer"] == layer]
        if not match:
            raise InputError(f"vectors.score_method/score_layer: ({method}, {layer}) is not in the extraction grid")
        chosen, rule = match[0], f"configured: {method} at layer {layer}"
    else:
        chosen, rule = best, f"best {metric} on held-out data (ties: |cohens_d|, then earlier layer)"
    return {"method": chosen["method"], "layer": chosen["layer"], "rule": rule, "chosen": chosen, "best": best}
