"""Few-shot splits: K pairs drawn from a pool with a seed, never touching the test pairs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from drtl.errors import ConfigError, DataError


def few_shot_names(pool: Sequence[str], shots: int, seed: int, exclude: Sequence[str] = ()) -> list[str]:
    """Return ``shots`` names from ``pool`` minus ``exclude`` for this seed.

    Splits are nested: for a fixed seed the K=1 pair is among the K=5 pairs, which are among the
    K=10 pairs (the first K of one seeded permutation), so shot counts differ only in data amount.
    """
    candidates = sorted(set(pool) - set(exclude))
    if shots < 1:
        raise ConfigError(f"shots must be >= 1, got {shots}")
    if shots > len(candidates):
        raise DataError(f"asked for {shots} shots but the pool has only {len(candidates)} pairs outside the test set")
    perm = np.random.default_rng(seed).permutation(len(candidates))
    return [candidates[i] for i in perm[:shots]]

