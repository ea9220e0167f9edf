"""Stage: the results table and figures from the evaluation reports.

``results.csv``: one row per (method, shots, seed) with ``method, shots, seed, psnr_y, ssim_y``
(means over the test images). ``aggregate.csv``: mean and std over seeds per (method, shots).
``results.md``: the aggregate as a Markdown table (PSNR-Y mean +- std, then SSIM-Y).
``psnr_vs_shots.png``: PSNR-Y against K with error bars per method. ``comparisons.csv`` (and a
section of ``results.md``): paired per-image differences of the registry's comparisons with
bootstrap 95 % intervals (:mod:`drtl.stats`). ``metrics.json``: the headline for ``dvc metrics`` /
``dvc exp show``, a few numbers per K (:func:`headline_metrics`: the best relation-weighted row,
its twin, bicubic and the differences); the full table is ``aggregate.csv`` (``dvc plots``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from drtl.errors import DataError
from drtl.io import clean_stale_temps, write_text
from drtl.methods import BASELINE, TWINS
from drtl.results import COLUMNS, sort_rows, write_report
from drtl.stats import IMAGE_COLUMNS


def collect(eval_paths: list[str | Path], expand_shots: list[int] | None = None, images: list | None = None,
            shot_sets: dict | None = None) -> pd.DataFrame:
    """Rows from evaluation reports. A report with ``shots: null`` (bicubic, upper_bound: methods
    that do not depend on K) is repeated for every K of ``expand_shots`` so the table is complete.
    The same run (method, shots, seed) given twice counts once, its first report: Kubeflow evaluates
    K-independent runs once per cell of its sweep. ``images``: a list that receives the per-image
    rows (``drtl.stats.IMAGE_COLUMNS``; K-independent runs once, with shots 0). ``shot_sets``: a dict that receives, per K,
    the set of the pair lists the evaluated models were fine-tuned on (``train_pairs``)."""
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
        if shot_sets is not None and r.get("shots") and r.get("train_pairs"):
            shot_sets.setdefault(int(r["shots"]), set()).add(tuple(r["train_pairs"]))
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
    pair_sets: dict = {}
    df = collect(eval_paths, expand_shots, images, pair_sets)
    agg = write_report(df, out, pd.DataFrame(images, columns=IMAGE_COLUMNS))
    headline = headline_metrics(agg)
    sets = {k: len(v) for k, v in sorted(pair_sets.items())}  # per K: how many different shot sets
    for k, n in sets.items():
        if f"k{k}" in headline:
            headline[f"k{k}"]["shot_sets"] = n
    one = sorted(k for k, n in sets.items() if n == 1 and int(agg.loc[agg["shots"] == k, "n_seeds"].max()) > 1)
    if one:  # the seeds of these K differ in initialisation and sampling, not in their shots
        md = out / "results.md"
        write_text(md, md.read_text() + "\n" + "".join(
            f"K={k}: one shot set: every seed fine-tuned on the same {k} pairs, so its seeds vary the "
            f"training, not the shots.\n" for k in one))
    write_text(out / "metrics.json", json.dumps(headline, indent=1) + "\n")
    # flat per-row numbers (method_kK_psnr_y: mean PSNR-Y) for callers that log scalars (Kubeflow)
    flat = {f"{r.method}_k{int(r.shots)}_psnr_y": round(float(r.psnr_mean), 4) for r in agg.itertuples()}
    return {"n_rows": len(df), "metrics": flat, "headline": headline}


def headline_metrics(agg: pd.DataFrame) -> dict:
    """``{"k<K>": {...}}``, per K: ``drtl`` (the mean PSNR-Y of the best relation-weighted row,
    named in ``drtl_row``), ``twin`` (that row's twin, the first of :data:`drtl.methods.TWINS` the table holds, named in
    ``twin_row``), ``bicubic``, ``drtl_minus_twin``, ``drtl_minus_bicubic`` and ``n_seeds`` (the
    report adds ``shot_sets``: how many different sets of K shots the seeds used); a K
    without a weighted row (or its twin, or bicubic) leaves those keys out. Flat per K, so
    ``dvc metrics show`` prints a few columns (``k5.drtl_minus_twin``)."""
    psnr = {(r.method, int(r.shots)): (round(float(r.psnr_mean), 4), int(r.n_seeds)) for r in agg.itertuples()}
    out: dict = {}
    for k in sorted({int(s) for s in agg["shots"]}):
        row: dict = {}
        rows = [m for m in TWINS if (m, k) in psnr]
        if rows:
            best = max(rows, key=lambda m: psnr[(m, k)][0])
            row.update(drtl_row=best, drtl=psnr[(best, k)][0], n_seeds=psnr[(best, k)][1])
            twin = next((t for t in TWINS[best] if (t, k) in psnr), None)
            if twin is not None:
                row.update(twin_row=twin, twin=psnr[(twin, k)][0])
                row["drtl_minus_twin"] = round(row["drtl"] - row["twin"], 4)
        if (BASELINE, k) in psnr:
            row["bicubic"] = psnr[(BASELINE, k)][0]
            if "drtl" in row:
                row["drtl_minus_bicubic"] = round(row["drtl"] - row["bicubic"], 4)
        if row:
            out[f"k{k}"] = row
    return out


def run(params: dict, inputs: dict, out: Path, on_log=None) -> dict:
    """Stage contract (drtl.stages): the table of the plan's evaluations (or of ``inputs['evals']``)."""
    evals = inputs.get("evals")
    if not evals:
        from drtl.plan import eval_outputs

        evals = eval_outputs(params)
    evals = [Path(e) / "eval.json" if not Path(e).suffix else Path(e) for e in evals]
    r = report(evals, out, [int(k) for k in params["experiment"]["shots"]])
    return {"n_rows": r["n_rows"]}
