"""Paired comparisons of two methods: per-image PSNR differences and a two-way bootstrap 95 % interval.

A comparison ``a - b`` at K pairs every test image of every seed where both methods were
evaluated (K-independent rows such as ``bicubic`` or the ceilings pair with every K), takes the
differences ``psnr_y(a) - psnr_y(b)`` as a seeds x images grid, and reports their mean, the mean of
each seed, how often ``a`` wins, and a percentile bootstrap 95 % interval that resamples seeds and
images independently (a crossed two-way bootstrap, ``reps`` times, seeded, so the interval is
reproducible): the images of a seed share one trained model and the same images recur in every seed,
so resampling (seed, image) pairs as if independent would give too narrow an interval. With one
seed the interval covers image-to-image variation only. The comparisons are the registry's
:data:`drtl.methods.COMPARISONS`. pandas and numpy only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from drtl.methods import COMPARISONS

IMAGE_COLUMNS = ["method", "shots", "seed", "image", "psnr_y"]
COMPARISON_COLUMNS = ["a", "b", "shots", "n_pairs", "n_seeds", "mean_diff", "ci_low", "ci_high", "a_wins",
                      "seed_means"]


def paired_grid(images: pd.DataFrame, a: str, b: str, shots: int) -> pd.DataFrame:
    """``psnr_y(a) - psnr_y(b)`` at K = ``shots`` as a seeds x images table (K-independent rows match
    any K; a (seed, image) that one side lacks is NaN; no common pair: an empty table)."""
    d = paired_series(images, a, b, shots)
    return d.unstack("image") if len(d) else pd.DataFrame()


def paired(images: pd.DataFrame, a: str, b: str, shots: int) -> np.ndarray:
    """``psnr_y(a) - psnr_y(b)`` per (seed, image) at K = ``shots``, flat."""
    return paired_series(images, a, b, shots).to_numpy(dtype=float)


def paired_series(images: pd.DataFrame, a: str, b: str, shots: int) -> pd.Series:
    """The differences indexed by (seed, image), for the (seed, image) pairs both methods have."""
    def side(m):
        d = images[images["method"] == m]
        if d.empty:
            return d
        if (d["shots"] == shots).any():
            d = d[d["shots"] == shots]
        elif (d["shots"] != 0).any():  # a per-K method without this K (K-independent rows have shots 0)
            return d.iloc[0:0]
        return d.set_index(["seed", "image"])["psnr_y"]

    x, y = side(a), side(b)
    if len(x) == 0 or len(y) == 0:
        return pd.Series(dtype=float)
    both = pd.concat([x.rename("a"), y.rename("b")], axis=1, join="inner")
    return (both["a"] - both["b"]).astype(float)


def bootstrap_ci(d: np.ndarray, reps: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``d``: a seeds x images grid (seeds and images
    resampled independently; NaN cells are left out of each mean) or a 1-D array (one seed)."""
    grid = np.atleast_2d(np.asarray(d, dtype=float))
    rng = np.random.default_rng(seed)
    n_s, n_i = grid.shape
    si = rng.integers(0, n_s, size=(reps, n_s))
    ii = rng.integers(0, n_i, size=(reps, n_i))
    means = np.nanmean(grid[si[:, :, None], ii[:, None, :]].reshape(reps, -1), axis=1)
    lo, hi = np.nanquantile(means, [(1 - level) / 2, (1 + level) / 2])
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
            grid = paired_grid(images, a, b, int(k))
            if grid.empty:
                continue
            g = grid.to_numpy(dtype=float)
            d = g[~np.isnan(g)]
            lo, hi = bootstrap_ci(g, reps)
            per_seed = np.nanmean(g, axis=1)
            rows.append({"a": a, "b": b, "shots": int(k), "n_pairs": len(d), "n_seeds": len(grid),
                         "mean_diff": float(d.mean()), "ci_low": lo, "ci_high": hi,
                         "a_wins": float((d > 0).mean()),
                         "seed_means": " ".join(f"{m:+.3f}" for m in per_seed)})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def markdown(comp: pd.DataFrame) -> str:
    if comp.empty:
        return ""
    lines = ["| a - b | K | mean ΔPSNR-Y (dB) | 95 % two-way bootstrap CI | per seed | a wins | pairs (seeds x images) |",
             "|---|---|---|---|---|---|---|"]
    for _, r in comp.iterrows():
        sig = " *" if r.ci_low > 0 or r.ci_high < 0 else ""
        lines.append(f"| {r.a} - {r.b} | {r.shots or 'all'} | {r.mean_diff:+.3f}{sig} | [{r.ci_low:+.3f}, {r.ci_high:+.3f}] | "
                     f"{r.seed_means} | {r.a_wins:.0%} | {r.n_pairs} ({r.n_seeds} x {r.n_pairs // max(r.n_seeds, 1)}) |")
    return ("\n".join(lines) + "\n\nPaired per-image differences over test images x seeds; * = the interval "
            "excludes 0. The interval resamples seeds and images independently (two-way); with one seed it "
            "covers image-to-image variation only, not the variation of training.\n")
