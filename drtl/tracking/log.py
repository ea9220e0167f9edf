"""Logging run records (``run.json``, see :mod:`drtl.records`) to MLflow from one process.

One parent run per invocation (``drtl track``, the end of ``drtl experiment`` / ``drtl adapt``, or
a Kubeflow pipeline: :func:`start_parent` in its first task, :func:`finish_parent` in its report
task), one child run per stage record; the report record goes onto the parent::

    drtl 2025-06-01 14:03 3f2a9c1e        params: the invocation; metrics: psnr_y_vs_k/<method> (step = K),
    │                                     summary/psnr_y.<method>.k05, ...; artifacts: aggregate.csv,
    │                                     results.csv, results.md, psnr_vs_shots.png
    ├── synthesize                        params: aux.*; metrics: duration_s, ...
    ├── finetune drtl_pre k05 s0          params+tags: stage, method, shots, seed; params: finetune.*;
    │                                     metrics: final_loss, duration_s; step metrics train_loss, lr
    ├── finetune upper_bound all s0       (K-independent: no shots param or tag)
    └── evaluate drtl_pre k05 s0          metrics: psnr_y, ssim_y, psnr_rgb, duration_s; inputs: test

Identities (stage, method, shots, seed) are params *and* tags, never metrics; only a record's
numeric scalar ``metrics`` (and its ``duration_s``) become metrics. Writes are batched
(``log_batch``): a child run costs one create, one or two batches, its inputs, its artifacts and
its end.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from pathlib import Path

from drtl.errors import DataError
from drtl.methods import METHODS, source_for
from drtl.records import IDENTITY_KEYS, RunRecord, find_records, flatten
from drtl.tracking.content import (Datasets, history_metrics, log_artifacts, log_inputs, metrics_and_moved, ms,
                                   read_history)
from drtl.tracking.store import (PARENT_TAG, ROLE_TAG, TrackingError, experiment_id, make_client, now_ms, retry,
                                 settings, write_batch)
from drtl.tracking.table import aggregate_metrics, k_label

log = logging.getLogger(__name__)

REPORT_STAGE = "report"
INVOCATION_TAG = "drtl.invocation"
LOGGED_AT_TAG = "drtl.logged_at"   # ms since the epoch when the parent was created (orders parents)
SHOTS_TAG = "drtl.shots"           # JSON list of the K values among an invocation's records


# ------------------------------------------------------------------ identities and names
def _per_shot(stage: str, method: str | None) -> bool:
    """Does this run depend on K? From the method registry (upper_bound, bicubic and the uniform /
    MAML source runs do not); unknown methods and stages keep their ``shots``."""
    if method is None:
        return True
    if stage in ("pretrain", "metatrain"):
        try:
            return source_for(stage, method).per_shot
        except ValueError:
            return True
    m = METHODS.get(method)
    return m.per_shot if m is not None else True


def identity(rec: RunRecord) -> dict:
    """``stage`` plus the record's method / shots / seed that are meaningful (None dropped; ``shots``
    dropped for K-independent runs whatever the record says)."""
    ident = {k: rec.identity[k] for k in IDENTITY_KEYS if rec.identity.get(k) is not None}
    if "shots" in ident and not _per_shot(rec.stage, ident.get("method")):
        del ident["shots"]
    for k in ("shots", "seed"):
        if k in ident:
            try:
                ident[k] = int(ident[k])
            except (TypeError, ValueError):
                pass
    return {"stage": rec.stage, **ident}


def run_name(rec: RunRecord) -> str:
    """``evaluate drtl_pre k05 s0``, ``finetune upper_bound all s0``, ``relation``: sorting the runs
    table by name sorts by stage, method, then K (zero-padded)."""
    ident = identity(rec)
    if "method" not in ident and "shots" not in ident and "seed" not in ident:
        return rec.stage if rec.name in ("", rec.stage) else f"{rec.stage} {rec.name}"
    parts = [rec.stage]
    if "method" in ident:
        parts.append(str(ident["method"]))
    shots = ident.get("shots")
    parts.append(k_label(shots) if shots is None or isinstance(shots, int) else f"k{shots}")
    if "seed" in ident:
        parts.append(f"s{ident['seed']}")
    return " ".join(parts)


def _provenance_tags(rec: RunRecord | None) -> dict:
    prov = dict((rec.provenance if rec else None) or {})
    tags = {k: v for k, v in prov.items() if v is not None}
    if "git_dirty" in tags:
        tags["git_dirty"] = str(tags["git_dirty"]).lower()
    if prov.get("git_commit"):
        tags["mlflow.source.git.commit"] = prov["git_commit"]
    tags["mlflow.source.name"] = "drtl"
    return tags


# ------------------------------------------------------------------ runs
EXPERIMENT_NOTE = """drtl: few-shot super-resolution runs, logged from run records.

* One parent run per invocation (`drtl <date> <id>`). Its **Model metrics** tab charts PSNR-Y / SSIM-Y
  against K for each method (`psnr_y_vs_k/<method>`: step = K); `summary/psnr_y.<method>.k05` etc.
  hold the aggregate table (mean, std, seeds); its artifacts: aggregate.csv, results.csv, results.md,
  psnr_vs_shots.png; its description: the results table.
* Child runs are named `<stage> <method> k<K> s<seed>` (`all` for runs that do not depend on K);
  stage, method, shots and seed are params and tags.
* Compare across K: search `tags.stage = 'evaluate'`, add the columns psnr_y, method and shots
  (Columns), select runs and Compare (parameter `shots` against metric `psnr_y`).
"""


class _Store:
    def __init__(self, cfg):
        self.cfg = cfg
        self.client = make_client(self.cfg.uri)
        self.exp_id = retry(experiment_id, self.client, self.cfg.experiment, self.cfg.uri)
        exp = retry(self.client.get_experiment, self.exp_id)
        if "mlflow.note.content" not in (exp.tags or {}):  # the experiment's description: how to read it
            retry(self.client.set_experiment_tag, self.exp_id, "mlflow.note.content", EXPERIMENT_NOTE)


def _create_parent(st: _Store, invocation: dict | None, first: RunRecord | None, start_ms: int | None,
                   shots: list[int] | None = None) -> str:
    inv_id = secrets.token_hex(4)
    name = f"drtl {time.strftime('%Y-%m-%d %H:%M')} {inv_id}"
    tags = {ROLE_TAG: "pipeline", INVOCATION_TAG: inv_id, LOGGED_AT_TAG: str(now_ms()), **_provenance_tags(first)}
    if shots:
        tags[SHOTS_TAG] = json.dumps(shots)
    try:
        run = retry(st.client.create_run, st.exp_id, start_time=start_ms or now_ms(),
                    tags={k: str(v) for k, v in tags.items()}, run_name=name)
    except Exception as exc:
        raise TrackingError(f"tracking: cannot create a run in {st.cfg.uri} ({type(exc).__name__}: {exc})") from None
    if invocation:
        write_batch(st.client, run.info.run_id, params=flatten(invocation).items())
    return run.info.run_id


def start_parent(tracking: dict, invocation: dict | None = None) -> str:
    """Create the parent run of an invocation whose records come later (a Kubeflow pipeline's first
    task); it stays RUNNING until :func:`finish_parent`. Returns its run id."""
    cfg = settings(tracking)
    if not cfg.enabled:
        return None
    return _create_parent(_Store(cfg), invocation, None, None)


def finish_parent(tracking: dict, parent_run_id: str, status: str = "FINISHED") -> None:
    """End the parent run (``FINISHED``, ``FAILED`` or ``KILLED``)."""
    cfg = settings(tracking)
    if cfg.enabled and parent_run_id:
        retry(_Store(cfg).client.set_terminated, parent_run_id, status)


def _log_child(st: _Store, parent: str, rec: RunRecord, datasets: Datasets) -> str:
    ident = identity(rec)
    start = ms(rec.started) or now_ms()
    tags = {PARENT_TAG: parent, ROLE_TAG: "stage", **_provenance_tags(rec),
            **{k: str(v) for k, v in ident.items()}}
    if rec.folder:
        tags["drtl.record"] = str(rec.folder)
    try:
        run = retry(st.client.create_run, st.exp_id, start_time=start, tags={k: str(v) for k, v in tags.items()},
                    run_name=run_name(rec))
    except Exception as exc:
        raise TrackingError(f"tracking: cannot create a run in {st.cfg.uri} ({type(exc).__name__}: {exc})") from None
    rid = run.info.run_id
    metrics, moved = metrics_and_moved(rec, start)
    hist = read_history(rec)
    if hist:
        metrics += history_metrics(hist, start)
    params = {**{k: v for k, v in moved.items() if k not in ("stage", *IDENTITY_KEYS)},
              **flatten(rec.params or {}), **ident}  # identities win over a same-named param
    write_batch(st.client, rid, metrics=metrics, params=params.items())
    log_inputs(st.client, rid, rec, datasets)
    missing = log_artifacts(run, rec, st.cfg.uri)
    if missing:
        write_batch(st.client, rid, tags=[("drtl.missing_artifacts", missing)])
    end = start + int((rec.duration_s or 0) * 1000) if rec.started else now_ms()
    retry(st.client.set_terminated, rid, "FINISHED", end_time=end)
    return rid


def _log_report(st: _Store, parent: str, rec: RunRecord) -> None:
    """The report record onto the parent: its files as artifacts, the aggregate as metrics, the
    Markdown table as the run's description, its params (those the parent lacks) as params."""
    from mlflow.entities import Metric

    run = retry(st.client.get_run, parent)
    ts = ms(rec.started) or now_ms()
    metrics, tags = [], {"drtl.report": "true"}
    agg = next((rec.path_of(a) for a in rec.artifacts or [] if Path(a).name == "aggregate.csv"), None)
    if agg is not None and agg.is_file():
        scalars, curves = aggregate_metrics(agg)
        metrics += [Metric(k, v, ts, 0) for k, v in scalars.items()]
        metrics += [Metric(k, v, ts, step) for k, pts in curves.items() for step, v in pts]
        ks = sorted({s for pts in curves.values() for s, _ in pts})
        if ks and SHOTS_TAG not in run.data.tags:
            tags[SHOTS_TAG] = json.dumps(ks)
    else:  # no aggregate table: the report's own numbers
        metrics += metrics_and_moved(rec, ts)[0]
    md = next((rec.path_of(a) for a in rec.artifacts or [] if Path(a).name == "results.md"), None)
    if md is not None and md.is_file():
        tags["mlflow.note.content"] = md.read_text()[:5000]
    have = run.data.params
    params = {k: v for k, v in flatten(rec.params or {}).items() if k not in have}
    write_batch(st.client, parent, metrics=metrics, params=params.items(), tags=tags.items())
    missing = log_artifacts(run, rec, st.cfg.uri)
    if missing:
        write_batch(st.client, parent, tags=[("drtl.missing_artifacts", missing)])


def log_records(records: list[RunRecord], tracking: dict, *, parent_run_id: str | None = None,
                invocation: dict | None = None) -> str | None:
    """Log run records to MLflow; returns the parent run id (None when ``tracking.enabled`` is false).

    ``tracking``: the params' ``tracking`` section (``uri``, ``experiment``, ``enabled``).
    Without ``parent_run_id``, one parent run is created for this invocation (``invocation`` as its
    params, the first record's provenance as its tags) and ended when all records are logged
    (FAILED if logging failed). With it, the records go under that parent, which stays as it is
    (:func:`finish_parent` ends it). Each record but the report becomes a child run; the report
    (stage ``report``) is logged onto the parent.
    """
    cfg = settings(tracking)
    if not cfg.enabled:
        return None
    st = _Store(cfg)
    records = list(records)
    own = parent_run_id is None
    if own:
        starts = [r.started for r in records if r.started]
        shots = sorted({i["shots"] for r in records if isinstance((i := identity(r)).get("shots"), int)})
        parent_run_id = _create_parent(st, invocation, records[0] if records else None,
                                       ms(min(starts)) if starts else None, shots)
    t0, status, datasets = time.time(), "FAILED", Datasets()
    try:
        for rec in records:
            if rec.stage == REPORT_STAGE:
                _log_report(st, parent_run_id, rec)
            else:
                _log_child(st, parent_run_id, rec, datasets)
        status = "FINISHED"
    finally:
        if own:
            ends = [r.started + (r.duration_s or 0) for r in records if r.started]
            end = ms(max(ends)) if ends else now_ms()
            try:
                retry(st.client.set_terminated, parent_run_id, status, end_time=end)
            except Exception:  # do not hide the error that got us here
                if status == "FINISHED":
                    raise
    log.info("logged %d records under %s in %.1f s", len(records), parent_run_id, time.time() - t0)
    return parent_run_id


def track_folder(root: str | os.PathLike, tracking: dict, invocation: dict | None = None) -> str | None:
    """Log every run record under ``root`` (:func:`drtl.records.find_records`) under one new parent."""
    records = find_records(root)
    if not records:
        raise DataError(f"{root}: no run records (run.json / *.run.json) found; run the stages first")
    return log_records(records, tracking, invocation=invocation)
