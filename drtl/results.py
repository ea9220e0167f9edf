"""The results table, defined once: rows, the aggregate over seeds, Markdown and the figure.

``results.csv``: ``method, shots, seed, psnr_y, ssim_y`` (one row per run); ``aggregate.csv``:
``method, shots, psnr_mean, psnr_std, ssim_mean, ssim_std, n_seeds``. The report stage writes them
from evaluation reports, ``drtl.tracking`` from MLflow runs (``report_from_mlflow``): the same
functions, so the same files. pandas and matplotlib are imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path

from drtl.methods import METHODS

COLUMNS = ["method", "shots", "seed", "psnr_y", "ssim_y"]
AGGREGATE_COLUMNS = ["method", "shots", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "n_seeds"]


def sort_rows(df, keys=("shots", "seed")):
    """Rows in the registry's method order, then by ``keys`` (missing K first)."""
    order = {m: i for i, m in enumerate(METHODS)}
    df = df.assign(_o=df["method"].map(lambda m: order.get(m, len(order))))
    return df.sort_values(["_o", *keys], na_position="first", kind="stable").drop(columns="_o").reset_index(drop=True)


def aggregate(df):
    """Mean and std over seeds per (method, shots); std 0 for a single seed."""
    g = df.groupby(["method", "shots"], sort=False)
    agg = g.agg(psnr_mean=("psnr_y", "mean"), psnr_std=("psnr_y", "std"), ssim_mean=("ssim_y", "mean"),
                ssim_std=("ssim_y", "std"), n_seeds=("seed", "nunique")).reset_index()
    return agg.fillna({"psnr_std": 0.0, "ssim_std": 0.0})


def markdown(agg) -> str:
    shots = sorted(agg["shots"].unique())
    head = ("| method | " + " | ".join(f"K={k} PSNR-Y" for k in shots) + " | "
            + " | ".join(f"K={k} SSIM-Y" for k in shots) + " |")
    lines = [head, "|---|" + "---|" * (2 * len(shots))]
    for m in agg["method"].unique():
        a = agg[agg["method"] == m].set_index("shots")
        ps = [f"{a.loc[k, 'psnr_mean']:.3f} ± {a.loc[k, 'psnr_std']:.3f}" if k in a.index else "—" for k in shots]
        ss = [f"{a.loc[k, 'ssim_mean']:.4f}" if k in a.index else "—" for k in shots]
        lines.append(f"| {m} | " + " | ".join(ps) + " | " + " | ".join(ss) + " |")
    n = int(agg["n_seeds"].max())
    return "\n".join(lines) + f"\n\nMean ± std over {n} seed(s); PSNR/SSIM on Y (BT.601), border crop = scale.\n"


def plot(agg, path: str | Path) -> None:
    """PSNR-Y against K (log axis) with error bars, one line per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from drtl.io import atomic_path

    fig = Figure(figsize=(6, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    for m in agg["method"].unique():
        a = agg[agg["method"] == m].sort_values("shots")
        ax.errorbar(a["shots"], a["psnr_mean"], yerr=a["psnr_std"], marker="o", capsize=3, label=m)
    ks = sorted(agg["shots"].unique())
    ax.set_xlabel("shots K")
    ax.set_ylabel("PSNR-Y (dB)")
    ax.set_xscale("log")
    ax.set_xticks(ks, labels=[str(k) for k in ks])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


def write_report(full, out_dir: str | Path, images=None):
    """``results.csv``, ``aggregate.csv``, ``results.md`` and ``psnr_vs_shots.png`` in ``out_dir``;
    with per-image rows (``images``, :data:`drtl.stats.IMAGE_COLUMNS`) also ``comparisons.csv``, the
    paired comparisons with bootstrap intervals, appended to ``results.md``. Returns the aggregate."""
    from drtl.io import atomic_path, write_text

    out = Path(out_dir)
    agg = aggregate(full)
    text = markdown(agg)
    if images is not None and len(images):
        from drtl import stats

        comp = stats.comparisons(images)
        with atomic_path(out / "comparisons.csv") as tmp:
            comp.to_csv(tmp, index=False, float_format="%.4f")
        if len(comp):
            text += "\n" + stats.markdown(comp)
    with atomic_path(out / "results.csv") as tmp:
        full.to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(out / "aggregate.csv") as tmp:
        agg.to_csv(tmp, index=False, float_format="%.6f")
    write_text(out / "results.md", text)
    plot(agg, out / "psnr_vs_shots.png")
    return agg
