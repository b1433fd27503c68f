"""`--seed N`: one invocation of a profile under another seed.

The override replaces the profile's top-level `seed` (data generation, organism, sampling,
activations) and every recipe's `seed` (training). The stage fingerprints contain both, so every
seeded stage gets a new cache key and a seed run never reuses another seed's artifacts; by default
it also gets its own run directory, runs/<profile>/seed-<N>. The recipes' split/shuffle seeds
(the paper's data order) and vectors.seed (the held-out split of the extraction prompts) stay.
Note that `--seed 0` is not the plain profile when a recipe has another seed (mini's failed
recipes use 42): every recipe then trains with 0.
"""

from __future__ import annotations

import copy
from pathlib import Path

from .config import run_dir
from .errors import InputError


def with_seed(profile: dict, seed: int) -> dict:
    """A copy of the profile with its top-level and recipe seeds replaced by `seed`."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"--seed: expected a non-negative integer, got {seed!r}")
    out = copy.deepcopy(profile)
    out["seed"] = seed
    for recipe in (out.get("recipes") or {}).values():
        recipe["seed"] = seed
    return out


def seed_run_dir(profile: dict, seed: int) -> Path:
    """Default run directory of a seed override: runs/<profile>/seed-<N>."""
    return run_dir(profile) / f"seed-{seed}"
