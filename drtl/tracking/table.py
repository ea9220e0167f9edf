"""The results table as MLflow metrics of the parent run (the table itself: :mod:`drtl.results`)."""

from __future__ import annotations

from pathlib import Path



# ------------------------------------------------------------------ the aggregate as parent metrics
AGG_METRICS = {"psnr_mean": "psnr_y", "psnr_std": "psnr_y_std", "ssim_mean": "ssim_y", "ssim_std": "ssim_y_std",
               "n_seeds": "n_seeds"}


def k_label(shots) -> str:
    """5 -> 'k05' (zero-padded so that names and metric keys sort by K); None -> 'all'."""
    return "all" if shots is None else f"k{int(shots):02d}"


def aggregate_metrics(agg_csv: str | Path) -> tuple[dict[str, float], dict[str, list[tuple[int, float]]]]:
    """The report's ``aggregate.csv`` as parent-run metrics.

    Returns ``(scalars, curves)``: ``curves`` like ``{"psnr_y_vs_k/drtl_pre": [(1, 28.4), (5, 28.6)]}``
    (step = K, so the run's chart of that metric *is* PSNR against K; also ``ssim_y_vs_k/...``),
    ``scalars`` like ``{"summary/psnr_y.drtl_pre.k05": 28.6, "summary/psnr_y_std.drtl_pre.k05": 0.02,
    "summary/ssim_y...", "summary/ssim_y_std...", "summary/n_seeds..."}`` (the table as columns). The UI
    groups a run's charts by the key up to its last ``/``: sections ``psnr_y_vs_k``, ``ssim_y_vs_k``,
    then ``summary``, in that (alphabetical) order.
    """
    import pandas as pd

    agg = pd.read_csv(agg_csv)
    missing = {"method", "shots", "psnr_mean"} - set(agg.columns)
    if missing:
        raise ValueError(f"{agg_csv}: not an aggregate table (missing {sorted(missing)})")
    scalars: dict[str, float] = {}
    curves: dict[str, list[tuple[int, float]]] = {}
    for _, r in agg.iterrows():
        k = None if pd.isna(r["shots"]) else int(r["shots"])
        for col, name in AGG_METRICS.items():
            if col in agg.columns and not pd.isna(r[col]):
                scalars[f"summary/{name}.{r['method']}.{k_label(k)}"] = float(r[col])
        if k is not None:
            for col, name in (("psnr_mean", "psnr_y_vs_k"), ("ssim_mean", "ssim_y_vs_k")):
                if col in agg.columns and not pd.isna(r[col]):
                    curves.setdefault(f"{name}/{r['method']}", []).append((k, float(r[col])))
    return scalars, curves
