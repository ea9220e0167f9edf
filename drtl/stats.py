"""Paired comparisons of two methods: per-image PSNR differences and a bootstrap 95 % interval.

A comparison ``a - b`` at K pairs every test image of every seed where both methods were
evaluated (K-independent rows such as ``bicubic`` or the ceilings pair with every K), takes the
differences ``psnr_y(a) - psnr_y(b)``, and reports their mean, a percentile bootstrap 95 % interval
(resampling the (seed, image) pairs with replacement, ``reps`` times, seeded, so the interval is
reproducible) and how often ``a`` wins. The comparisons are the registry's
:data:`drtl.methods.COMPARISONS`. pandas and numpy only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from drtl.methods import COMPARISONS

IMAGE_COLUMNS = ["method", "shots", "seed", "image", "psnr_y"]
COMPARISON_COLUMNS = ["a", "b", "shots", "n_pairs", "n_seeds", "mean_diff", "ci_low", "ci_high", "a_wins"]


def paired(images: pd.DataFrame, a: str, b: str, shots: int) -> np.ndarray:
    """``psnr_y(a) - psnr_y(b)`` per (seed, image) at K = ``shots`` (K-independent rows match any K)."""
    def side(m):
        d = images[images["method"] == m]
        if d.empty:
            return d
        if (d["shots"] == shots).any():
            d = d[d["shots"] == shots]
        elif d["shots"].nunique() > 1:  # per-K method without this K
            return d.iloc[0:0]
        return d.set_index(["seed", "image"])["psnr_y"]

    x, y = side(a), side(b)
    if len(x) == 0 or len(y) == 0:
        return np.array([])
    both = pd.concat([x.rename("a"), y.rename("b")], axis=1, join="inner")
    return (both["a"] - both["b"]).to_numpy(dtype=float)


def bootstrap_ci(d: np.ndarray, reps: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``d``."""
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(reps, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def comparisons(images: pd.DataFrame, pairs=COMPARISONS, reps: int = 2000) -> pd.DataFrame:
    """One row per (a, b, K) of ``pairs`` that the table holds (see the module docstring)."""
    rows = []
    ks = sorted(images.loc[images["shots"] > 0, "shots"].unique()) or [0]
    present = set(images["method"])
    k_free = {m for m in present if (images.loc[images["method"] == m, "shots"] == 0).all()}
    for a, b in pairs:
        if a not in present or b not in present:
            continue
        for k in ([0] if {a, b} <= k_free else ks):  # two K-independent rows: one comparison
            d = paired(images, a, b, int(k))
            if len(d) == 0:
                continue
            lo, hi = bootstrap_ci(d, reps)
            n_seeds = images[(images["method"] == a)]["seed"].nunique()
            rows.append({"a": a, "b": b, "shots": int(k), "n_pairs": len(d), "n_seeds": int(n_seeds),
                         "mean_diff": float(d.mean()), "ci_low": lo, "ci_high": hi,
                         "a_wins": float((d > 0).mean())})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def markdown(comp: pd.DataFrame) -> str:
    if comp.empty:
        return ""
    lines = ["| a - b | K | mean ΔPSNR-Y (dB) | 95 % bootstrap CI | a wins | pairs (seeds x images) |",
             "|---|---|---|---|---|---|"]
    for _, r in comp.iterrows():
        sig = " *" if r.ci_low > 0 or r.ci_high < 0 else ""
        lines.append(f"| {r.a} - {r.b} | {r.shots or 'all'} | {r.mean_diff:+.3f}{sig} | [{r.ci_low:+.3f}, {r.ci_high:+.3f}] | "
                     f"{r.a_wins:.0%} | {r.n_pairs} ({r.n_seeds} x {r.n_pairs // max(r.n_seeds, 1)}) |")
    return ("\n".join(lines) + "\n\nPaired per-image differences over test images x seeds; * = the interval "
            "excludes 0. Resampling pairs, not seeds: with few seeds the interval does not cover seed-to-seed "
            "variation of training.\n")
