"""Stage: the results table and figures from the evaluation reports.

``results.csv``: one row per (method, shots, seed) with ``method, shots, seed, psnr_y, ssim_y``
(means over the test images). ``aggregate.csv``: mean and std over seeds per (method, shots).
``results.md``: the aggregate as a Markdown table (PSNR-Y mean +- std, then SSIM-Y).
``psnr_vs_shots.png``: PSNR-Y against K with error bars per method. ``comparisons.csv`` (and a
section of ``results.md``): paired per-image differences of the registry's comparisons with
bootstrap 95 % intervals (:mod:`drtl.stats`). ``metrics.json``: for
``dvc metrics`` / ``dvc exp show``, per method and K: PSNR-Y and SSIM-Y mean, std and seed count
(see :func:`dvc_metrics`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from drtl.errors import DataError
from drtl.io import clean_stale_temps, write_text
from drtl.results import COLUMNS, sort_rows, write_report
from drtl.stats import IMAGE_COLUMNS


def collect(eval_paths: list[str | Path], expand_shots: list[int] | None = None, images: list | None = None
            ) -> pd.DataFrame:
    """Rows from evaluation reports. A report with ``shots: null`` (bicubic, upper_bound: methods
    that do not depend on K) is repeated for every K of ``expand_shots`` so the table is complete.
    The same run (method, shots, seed) given twice counts once, its first report: Kubeflow evaluates
    K-independent runs once per cell of its sweep. ``images``: a list that receives the per-image
    rows (``drtl.stats.IMAGE_COLUMNS``; K-independent runs once, with shots 0)."""
    rows, seen = [], set()
    for p in eval_paths:
        p = Path(p)
        if not p.is_file():
            raise DataError(f"{p}: evaluation report not found; run the evaluate stage first")
        r = json.loads(p.read_text())
        key = (r["method"], r.get("shots"), r.get("seed"))
        if key in seen:
            continue
        seen.add(key)
        if images is not None:
            images += [{"method": r["method"], "shots": int(r.get("shots") or 0), "seed": int(r["seed"] or 0),
                        "image": im["name"], "psnr_y": float(im["psnr_y"])} for im in r.get("per_image", [])]
        ks = [r["shots"]] if r.get("shots") is not None else list(expand_shots or [0])
        for k in ks:
            rows.append({"method": r["method"], "shots": int(k), "seed": int(r["seed"] or 0),
                         "psnr_y": float(r["psnr_y"]), "ssim_y": float(r["ssim_y"])})
    if not rows:
        raise DataError("no evaluation reports given")
    return sort_rows(pd.DataFrame(rows, columns=COLUMNS))


def report(eval_paths: list[str | Path], out: str | Path, expand_shots: list[int] | None = None) -> dict:
    out = Path(out)
    clean_stale_temps(out)  # temporaries of an earlier report run that was killed
    images: list = []
    df = collect(eval_paths, expand_shots, images)
    agg = write_report(df, out, pd.DataFrame(images, columns=IMAGE_COLUMNS))
    nested = dvc_metrics(agg)
    write_text(out / "metrics.json", json.dumps(nested, indent=1) + "\n")
    # flat headline numbers (method_kK_psnr_y: mean PSNR-Y) for callers that log scalars (Kubeflow)
    flat = {f"{m}_{k}_psnr_y": v["psnr_y"]["mean"] for m, ks in nested.items() for k, v in ks.items()}
    return {"n_rows": len(df), "metrics": flat, "dvc_metrics": nested}


def dvc_metrics(agg: pd.DataFrame) -> dict:
    """``{method: {"k<K>": {"psnr_y": {"mean", "std", "n"}, "ssim_y": {...}}}}`` (std over seeds,
    n = number of seeds): nested, so ``dvc exp show`` / ``dvc metrics diff`` get one column each,
    e.g. ``drtl_pre.k5.psnr_y.mean``."""
    metrics: dict = {}
    for _, r in agg.iterrows():
        n = int(r["n_seeds"])
        metrics.setdefault(str(r["method"]), {})[f"k{int(r['shots'])}"] = {
            "psnr_y": {"mean": round(float(r["psnr_mean"]), 4), "std": round(float(r["psnr_std"]), 4), "n": n},
            "ssim_y": {"mean": round(float(r["ssim_mean"]), 5), "std": round(float(r["ssim_std"]), 5), "n": n},
        }
    return metrics


def run(params: dict, inputs: dict, out: Path, on_log=None) -> dict:
    """Stage contract (drtl.stages): the table of the plan's evaluations (or of ``inputs['evals']``)."""
    evals = inputs.get("evals")
    if not evals:
        from drtl.plan import eval_outputs

        evals = eval_outputs(params)
    evals = [Path(e) / "eval.json" if not Path(e).suffix else Path(e) for e in evals]
    r = report(evals, out, [int(k) for k in params["experiment"]["shots"]])
    return {"n_rows": r["n_rows"]}
