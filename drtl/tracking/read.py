"""Reading results back from MLflow: the evaluation runs of a parent as the results table.

``search_results`` -> one row per evaluation child run (``method, shots, seed, psnr_y, ssim_y``);
``report_from_mlflow`` -> the report stage's files (results.csv, aggregate.csv, results.md,
psnr_vs_shots.png) from the store instead of the evaluation files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from drtl.errors import DataError
from drtl.tracking.log import LOGGED_AT_TAG, SHOTS_TAG
from drtl.tracking.store import PARENT_TAG, ROLE_TAG, experiment_id, make_client, resolve_uri, search_all
from drtl.results import COLUMNS, sort_rows, write_report

ID_COLUMNS = ["run_id", "parent_run_id", "start_time"]
EVALUATE = "tags.stage = 'evaluate' and attributes.status = 'FINISHED'"


def _int_or_none(v):
    if v in (None, "", "None", "null", "none"):
        return None
    try:
        return int(float(v))
    except ValueError:
        return None


def parents(client, exp_id: str) -> list:
    """The experiment's parent runs, newest ingest first (tag ``drtl.logged_at``, then start time)."""
    runs = search_all(client, [exp_id], f"tags.`{ROLE_TAG}` = 'pipeline'")
    return sorted(runs, key=lambda r: (_int_or_none(r.data.tags.get(LOGGED_AT_TAG)) or 0, r.info.start_time or 0),
                  reverse=True)


def latest_parent(uri: str, experiment: str) -> str | None:
    """The newest parent run that has finished evaluation children (None when there is none)."""
    client = make_client(uri)
    exp = experiment_id(client, experiment, resolve_uri(uri), create=False)
    if exp is None:
        return None
    for p in parents(client, exp):
        if search_all(client, [exp], f"{EVALUATE} and tags.`{PARENT_TAG}` = '{p.info.run_id}'"):
            return p.info.run_id
    return None


def search_results(uri: str, experiment: str, parent_run_id: str | None = None, latest: bool = True,
                   with_ids: bool = False):
    """One row per finished evaluation child run: ``method, shots, seed, psnr_y, ssim_y``.

    Which runs: those of ``parent_run_id``; else (``latest``) those of the newest parent that has
    evaluation runs; else (``latest=False``) every evaluation run of the experiment. ``shots`` is a
    nullable integer (missing for K-independent methods: bicubic, upper_bound). ``with_ids`` adds
    ``run_id``, ``parent_run_id`` and ``start_time``.
    """
    import pandas as pd

    cols = COLUMNS + (ID_COLUMNS if with_ids else [])
    uri = resolve_uri(uri)
    client = make_client(uri)
    exp = experiment_id(client, experiment, uri, create=False)
    if exp is None:
        return pd.DataFrame(columns=cols)
    if parent_run_id is None and latest:
        parent_run_id = latest_parent(uri, experiment)
        if parent_run_id is None:
            return pd.DataFrame(columns=cols)
    flt = EVALUATE + (f" and tags.`{PARENT_TAG}` = '{parent_run_id}'" if parent_run_id else "")
    rows = []
    for r in search_all(client, [exp], flt, ["attributes.start_time DESC"]):
        m, t = r.data.metrics, r.data.tags
        if "psnr_y" not in m or "ssim_y" not in m or "method" not in t:
            continue
        rows.append({"method": t["method"], "shots": _int_or_none(t.get("shots")),
                     "seed": _int_or_none(t.get("seed")) or 0, "psnr_y": float(m["psnr_y"]),
                     "ssim_y": float(m["ssim_y"]), "run_id": r.info.run_id,
                     "parent_run_id": t.get(PARENT_TAG), "start_time": r.info.start_time})
    df = pd.DataFrame(rows, columns=COLUMNS + ID_COLUMNS)
    df["shots"] = df["shots"].astype("Int64")
    df["seed"] = df["seed"].astype(int)
    return sort_rows(df)[cols]


def _parent_shots(client, parent_run_id: str) -> list[int] | None:
    """K values of an invocation: the parent's ``drtl.shots`` tag, else its ``experiment.shots`` param."""
    run = client.get_run(parent_run_id)
    for raw in (run.data.tags.get(SHOTS_TAG), run.data.params.get("experiment.shots")):
        try:
            ks = [int(k) for k in json.loads(raw)] if raw else None
        except (ValueError, TypeError):
            ks = None
        if ks:
            return ks
    return None


def report_from_mlflow(uri: str, experiment: str, out_dir: str | os.PathLike, parent_run_id: str | None = None,
                       expand_shots: list[int] | None = None) -> dict:
    """The comparison table and figure from the MLflow store instead of the evaluation files.

    Reads the evaluation runs of ``parent_run_id`` (default: the newest parent that has some) and
    writes ``out_dir/{results.csv, aggregate.csv, results.md, psnr_vs_shots.png}``. K-independent
    runs (no ``shots``) are repeated for every K: ``expand_shots``, else the parent's K values
    (tag ``drtl.shots``), else the K values found among the other runs.
    """
    import pandas as pd

    uri = resolve_uri(uri)
    if parent_run_id is None:
        parent_run_id = latest_parent(uri, experiment)
    df = search_results(uri, experiment, parent_run_id) if parent_run_id else pd.DataFrame(columns=COLUMNS)
    if df.empty:
        where = f" under parent run {parent_run_id}" if parent_run_id else ""
        raise DataError(f"{uri}: no finished evaluation runs in experiment {experiment!r}{where}; "
                        f"log the run records with `drtl track`")
    ks = expand_shots or _parent_shots(make_client(uri), parent_run_id) or \
        sorted(int(k) for k in df["shots"].dropna().unique()) or [0]
    fixed, free = df[df["shots"].notna()], df[df["shots"].isna()]
    parts = [fixed] + [free.assign(shots=k) for k in ks]
    full = pd.concat([p for p in parts if len(p)], ignore_index=True)
    full["shots"] = full["shots"].astype(int)
    full = sort_rows(full[COLUMNS])
    write_report(full, out_dir)
    return {"parent_run_id": parent_run_id, "n_runs": int(len(df)), "n_rows": int(len(full)), "shots": list(ks),
            "out": str(Path(out_dir))}
