"""Small statistics for the behaviour tables: binomial rates with Wilson score intervals."""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping

from .errors import ReproError


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes out of n trials (95% with the default z).

    Chosen over the normal approximation because rates here are often 0/N or N/N, where the
    normal interval collapses to a point.
    """
    if n < 0 or k < 0 or k > n:
        raise ReproError(f"wilson_interval: expected 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (0.0, 1.0)  # no evidence: the whole range
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Clamp: at k=0 / k=n the exact bound is 0 / 1 but float rounding can leave 1e-17 residue.
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)


def code_rate(rows: Iterable[Mapping], classify: Callable[[str], bool], z: float = 1.96) -> dict[str, dict]:
    """Per prompt: how many of its responses `classify` marks positive (e.g. "is code").

    rows: generation rows ({"prompt", "response", ...}, as from repro.generate).
    Returns {prompt: {"k", "n", "rate", "ci": [lo, hi]}} in first-seen prompt order.
    """
    counts: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        if "prompt" not in row or "response" not in row:
            raise ReproError(f"code_rate: row {i} lacks 'prompt' or 'response'")
        k_n = counts.setdefault(row["prompt"], [0, 0])
        k_n[0] += int(bool(classify(row["response"])))
        k_n[1] += 1
    out = {}
    for prompt, (k, n) in counts.items():
        lo, hi = wilson_interval(k, n, z)
        out[prompt] = {"k": k, "n": n, "rate": k / n, "ci": [lo, hi]}
    return out
