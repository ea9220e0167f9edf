"""MLflow tracking: one parent run per pipeline invocation, one child run per stage run.

Store: a SQLite file by default (``tracking.uri: sqlite:///mlflow.db``; a relative path is taken
relative to the repository root: ``$DVC_ROOT`` when DVC runs the stage, which also holds for
``dvc exp run --temp`` / queued experiments, else the working folder). An ``http(s)://`` URI of an
``mlflow server`` works the same way. For SQLite stores the artifacts go next to the database
(``<db folder>/mlruns``); a server decides its own artifact store (see docs/storage.md for S3).

Run structure (what the MLflow UI shows, nested)::

    pipeline <id>                 tags drtl.pipeline_id, drtl.role=pipeline; params = every param
      ├── synthesize/synth        tags stage, drtl.pipeline_id, git_commit, dvc_lock_sha256, ...
      ├── finetune/drtl_pre_k5_s0 tags stage=finetune, method=drtl_pre, shots=5, seed=0; train_loss, lr
      └── evaluate/drtl_pre_k5_s0 tags stage=evaluate, ...; metrics psnr_y, ssim_y

Every process (each DVC stage is one) finds the parent by its ``drtl.pipeline_id`` tag or creates
it, so the child runs of one ``dvc repro`` land under one parent. Creation is search-then-create
followed by a check: when two processes race, both may create a parent; each then re-reads the
parents with that id, keeps the earliest (start time, then run id) and deletes its own if it lost.
The window that remains: a third process that reads between the two creations attaches to the
later parent before it is deleted (its children then sit under a deleted parent); with DVC, which
runs stages one at a time, this does not happen. SQLite serialises the writes (MLflow retries on
"database is locked"; we retry a few times more).

The library never imports kfp; mlflow is imported only when tracking is enabled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drtl.errors import ConfigError, DataError, DRTLError
from drtl.records import (IDENTITY_KEYS, dvc_lock_sha256, flatten, folder_fingerprint, git_commit,  # noqa: F401
                          git_dirty, sha256_file)

PIPELINE_TAG = "drtl.pipeline_id"
ROLE_TAG = "drtl.role"
RESULT_COLUMNS = ["method", "shots", "seed", "psnr_y", "ssim_y"]


class TrackingError(DRTLError):
    """The MLflow store cannot be reached or refused a write."""


# ------------------------------------------------------------------ where things are
def _store_root() -> Path:
    """Folder against which a relative ``sqlite:///`` path is resolved (the parent repository)."""
    root = os.environ.get("DVC_ROOT")
    return Path(root) if root and Path(root).is_dir() else Path.cwd()


def resolve_uri(uri: str, root: str | os.PathLike | None = None) -> str:
    """Normalise a tracking URI: a relative SQLite path becomes absolute; others pass through.

    ``sqlite:///mlflow.db`` -> ``sqlite:////repo/mlflow.db``; ``http://127.0.0.1:5000`` unchanged.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError("tracking.uri is empty; use sqlite:///mlflow.db or http://host:5000")
    uri = uri.strip()
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if path in ("", ":memory:"):
            raise ConfigError(f"tracking.uri {uri!r}: an in-memory store loses the runs; name a file")
        if not path.startswith("/"):
            path = str((Path(root) if root else _store_root()) / path)
        return "sqlite:///" + str(Path(path).resolve())
    if uri.startswith(("http://", "https://", "databricks", "file:", "postgresql", "mysql", "mssql")):
        return uri
    if "://" not in uri:  # a bare folder: MLflow's (deprecated) file store
        return uri
    raise ConfigError(f"tracking.uri {uri!r}: expected sqlite:///PATH or http(s)://HOST:PORT")


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def _params_for_id(params: dict) -> dict:
    return {k: v for k, v in params.items() if k != "tracking"}


def pipeline_id(params: dict) -> str:
    """Identifies one pipeline invocation (16 hex digits).

    ``$DRTL_PIPELINE_ID`` when set (e.g. a Kubeflow run id). Otherwise a hash of: the git commit,
    the params (all sections but ``tracking``), the content of the target pool/test folders
    (their manifests) and the DVC experiment name when ``dvc exp run`` runs the stage
    (``$DVC_EXP_NAME``). Every stage process of one ``dvc repro`` computes the same id.

    ``dvc.lock`` is *not* part of the id, although it identifies the pipeline's state: ``dvc repro``
    rewrites it after every stage, so each stage would get a parent of its own. Its hash is recorded
    instead on every run (tag ``dvc_lock_sha256``: the lock each stage started from).
    """
    env = os.environ.get("DRTL_PIPELINE_ID")
    if env:
        return env
    cwd = Path.cwd()
    tg = params.get("target", {}) or {}
    parts = {
        "git_commit": git_commit(cwd),
        "params": _params_for_id(params),
        "data": {k: folder_fingerprint(tg[k]) for k in ("pool", "test") if tg.get(k)},
        "dvc_exp": os.environ.get("DVC_EXP_NAME"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def context_tags() -> dict[str, str]:
    """Tags every run gets: git commit (and dirty flag), dvc.lock hash, DVC stage / experiment."""
    cwd = Path.cwd()
    commit = git_commit(cwd)
    tags = {"git_commit": commit, "mlflow.source.git.commit": commit, "mlflow.source.name": "drtl"}
    dirty = git_dirty(cwd)
    if dirty is not None:
        tags["git_dirty"] = str(dirty).lower()
    lock = dvc_lock_sha256(cwd)
    if lock:
        tags["dvc_lock_sha256"] = lock
    for env, tag in (("DVC_STAGE", "dvc_stage"), ("DVC_EXP_NAME", "dvc_exp_name")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


# ------------------------------------------------------------------ value conversion
def _param_str(v: Any) -> str:
    if isinstance(v, (list, tuple, dict)):
        s = json.dumps(v, default=str)
    elif v is None:
        s = "null"
    else:
        s = str(v)
    return s if len(s) <= 6000 else s[:5990] + "...[cut]"


def _metric_value(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if not math.isnan(f) else None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _retry(fn, *args, tries: int = 5, **kwargs):
    """Call ``fn``; retry on SQLite lock contention and first-use table creation races."""
    for attempt in range(tries):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # mlflow wraps sqlalchemy errors in MlflowException
            text = str(exc).lower()
            transient = any(s in text for s in ("database is locked", "already exists", "unique constraint",
                                                "no such table", "deadlock"))
            if not transient or attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


# ------------------------------------------------------------------ run handles
class NullRunHandle:
    """What :meth:`Tracker.run` yields when tracking is disabled: every call does nothing."""

    run_id = None
    parent_run_id = None

    def log_params(self, d: dict) -> None: ...
    def log_metrics(self, d: dict, step: int | None = None) -> None: ...
    def log_history(self, history: dict) -> None: ...
    def log_artifact(self, path, artifact_path: str | None = None) -> None: ...
    def log_artifacts(self, dir, artifact_path: str | None = None) -> None: ...  # noqa: A002
    def log_input(self, dataset_root: str, context: str, name: str | None = None) -> None: ...
    def set_tags(self, d: dict) -> None: ...


class RunHandle:
    """A child run: thin, typed wrappers over ``MlflowClient`` calls for one run id."""

    def __init__(self, client, run_id: str, parent_run_id: str | None = None):
        self.client = client
        self.run_id = run_id
        self.parent_run_id = parent_run_id

    def log_params(self, d: dict) -> None:
        """Nested dicts flattened with dots; values as strings (lists as JSON), at most 6000 chars."""
        from mlflow.entities import Param

        items = [Param(k, _param_str(v)) for k, v in flatten(d).items()]
        for i in range(0, len(items), 100):
            _retry(self.client.log_batch, self.run_id, params=items[i:i + 100])

    def log_metrics(self, d: dict, step: int | None = None) -> None:
        """Numeric leaves of ``d`` (nested keys joined with dots); None, NaN and non-numbers skipped."""
        from mlflow.entities import Metric

        ts = _now_ms()
        items = [Metric(k, f, ts, int(step or 0)) for k, v in flatten(d).items()
                 if (f := _metric_value(v)) is not None]
        for i in range(0, len(items), 1000):
            _retry(self.client.log_batch, self.run_id, metrics=items[i:i + 1000])

    def log_history(self, history: dict) -> None:
        """A trainer's history as step metrics.

        ``history["log"]`` (``[{"step", "loss", "lr", ...}]``) gives ``train_loss`` and ``lr`` (other
        numeric fields as ``train_<name>``) at each logged step. Without ``log``, the per-step lists
        (``loss``, ``accuracy``, ...) are logged as ``train_<name>`` at steps 1..n. Scalar numbers
        (``wall_s``, ...) become ``train_<name>``.
        """
        from mlflow.entities import Metric

        ts = _now_ms()
        items = []
        log = history.get("log")
        if isinstance(log, list) and log:
            for i, entry in enumerate(log):
                if not isinstance(entry, dict):
                    continue
                step = int(entry.get("step", i + 1))
                for k, v in entry.items():
                    if k == "step" or (f := _metric_value(v)) is None:
                        continue
                    items.append(Metric("lr" if k == "lr" else f"train_{k}", f, ts, step))
        else:
            for k, v in history.items():
                if isinstance(v, list) and v and all(_metric_value(x) is not None for x in v):
                    items += [Metric(f"train_{k}", float(x), ts, i + 1) for i, x in enumerate(v)]
        for k, v in history.items():
            if k not in ("log", "iterations") and not isinstance(v, (list, dict)) and (f := _metric_value(v)) is not None:
                items.append(Metric(f"train_{k}", f, ts, 0))
        for i in range(0, len(items), 1000):
            _retry(self.client.log_batch, self.run_id, metrics=items[i:i + 1000])

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{p}: artifact file not found")
        self.client.log_artifact(self.run_id, str(p), artifact_path)

    def log_artifacts(self, dir, artifact_path: str | None = None) -> None:  # noqa: A002
        p = Path(dir)
        if not p.is_dir():
            raise DataError(f"{p}: artifact folder not found")
        self.client.log_artifacts(self.run_id, str(p), artifact_path)

    def log_input(self, dataset_root: str, context: str, name: str | None = None) -> None:
        """Record a dataset folder as an input of this run (MLflow dataset lineage).

        The dataset is the folder's ``manifest.csv`` (name, sizes, sha256 of every file) as a pandas
        dataset, so its digest changes exactly when the data does; an HR-only folder without a
        manifest is described by its files (name, bytes, sha256). ``context``: e.g. ``pool``, ``test``,
        ``aux``. ``name``: default the folder path relative to the working folder.
        """
        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        df = dataset_table(dataset_root)
        root = Path(dataset_root)
        if name is None:
            try:
                name = root.resolve().relative_to(Path.cwd().resolve()).as_posix()
            except ValueError:
                name = root.name
        with warnings.catch_warnings():  # source-type ambiguity, schema hints: noise in a stage's log
            warnings.simplefilter("ignore")
            ds = mlflow.data.from_pandas(df, source=str(root.resolve()), name=name)
            entity = ds._to_mlflow_entity()
        _retry(self.client.log_inputs, self.run_id,
               datasets=[DatasetInput(dataset=entity, tags=[InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)])])

    def set_tags(self, d: dict) -> None:
        from mlflow.entities import RunTag

        tags = [RunTag(k, _param_str(v)) for k, v in d.items() if v is not None]
        for i in range(0, len(tags), 100):
            _retry(self.client.log_batch, self.run_id, tags=tags[i:i + 100])


def dataset_table(root: str | os.PathLike):
    """The table ``log_input`` records: manifest.csv, or (HR-only folders) name/path/bytes/sha256."""
    import pandas as pd

    root = Path(root)
    if (root / "manifest.csv").is_file():
        return pd.read_csv(root / "manifest.csv", dtype={"name": str})
    from drtl.io import IMAGE_EXTS

    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise DataError(f"{root}: no manifest.csv and no images; not a dataset folder")
    return pd.DataFrame([{"name": p.stem, "path": p.relative_to(root).as_posix(), "bytes": p.stat().st_size,
                          "sha256": sha256_file(p)} for p in files])


# ------------------------------------------------------------------ the tracker
def _quiet_mlflow_logs() -> None:
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.tracking.sqlalchemy_store"):
        logging.getLogger(name).setLevel(logging.WARNING)


def make_client(uri: str):
    """An ``MlflowClient`` for the resolved ``uri`` (creates the SQLite file and its folder)."""
    _quiet_mlflow_logs()
    from mlflow import MlflowClient

    db = _sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    try:
        client = _retry(MlflowClient, tracking_uri=uri)
        if db is not None:  # the SQL store is built lazily; build it now, inside the retry
            _retry(lambda: client._tracking_client.store)
    except Exception as exc:
        raise TrackingError(f"tracking: cannot open MLflow store {uri} ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}); fix tracking.uri or set "
                            f"tracking.enabled: false") from None
    return client


def experiment_id(client, name: str, uri: str) -> str:
    """Get or create the experiment (race-safe); SQLite stores keep artifacts in <db folder>/mlruns."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    db = _sqlite_path(uri)
    location = (db.parent / "mlruns").as_uri() if db is not None else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:
        exp = client.get_experiment_by_name(name)  # another process created it first
        if exp is None:
            raise
        return exp.experiment_id


class Tracker:
    """Creates child runs under this pipeline's parent run; a no-op object when disabled.

    >>> t = Tracker("sqlite:///mlflow.db", "drtl", pipeline_id="abc")
    >>> with t.run("finetune", "drtl_pre_k5_s0", {"method": "drtl_pre", "shots": 5, "seed": 0}) as r:
    ...     r.log_history(history); r.log_artifact("outputs/finetune/drtl_pre_k5_s0/model.pt")
    """

    def __init__(self, uri: str, experiment: str, enabled: bool = True, pipeline_id: str | None = None,
                 parent_params: dict | None = None):
        self.enabled = bool(enabled)
        self.uri = resolve_uri(uri) if self.enabled else uri
        self.experiment = experiment
        self.pipeline_id = pipeline_id or os.environ.get("DRTL_PIPELINE_ID") or \
            hashlib.sha256(f"{os.getpid()}-{time.time_ns()}".encode()).hexdigest()[:16]
        self.parent_params = parent_params
        self._client = None
        self._exp_id = None
        self._parent = None

    # -- lazily created store objects
    @property
    def client(self):
        if self._client is None:
            self._client = make_client(self.uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        if self._exp_id is None:
            self._exp_id = _retry(experiment_id, self.client, self.experiment, self.uri)
        return self._exp_id

    def _parents(self) -> list:
        flt = f"tags.`{PIPELINE_TAG}` = '{self.pipeline_id}' and tags.`{ROLE_TAG}` = 'pipeline'"
        runs = _retry(self.client.search_runs, [self.experiment_id], flt, max_results=100)
        return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))

    def parent_run_id(self) -> str:
        """The parent run of this pipeline id: found by its tag, or created (see the module doc)."""
        if not self.enabled:
            return None
        if self._parent is not None:
            return self._parent
        found = self._parents()
        if found:
            self._parent = found[0].info.run_id
            return self._parent
        tags = {PIPELINE_TAG: self.pipeline_id, ROLE_TAG: "pipeline", **context_tags()}
        tags.pop("dvc_stage", None)
        run = _retry(self.client.create_run, self.experiment_id, tags=tags,
                     run_name=f"pipeline {self.pipeline_id[:8]}")
        mine = run.info.run_id
        if self.parent_params:
            RunHandle(self.client, mine).log_params(self.parent_params)
        winner = self._parents()[0].info.run_id
        if winner != mine:  # lost a creation race: use the earliest parent, drop ours
            with contextlib.suppress(Exception):
                self.client.delete_run(mine)
        self._parent = winner
        return winner

    @contextlib.contextmanager
    def run(self, stage: str, name: str, params: dict, tags: dict | None = None) -> Iterator[RunHandle]:
        """A child run ``<stage>/<name>`` under the parent; FINISHED on success, FAILED on error.

        ``method``, ``shots`` and ``seed`` become tags when given in ``tags`` or as top-level keys
        of ``params`` (None values are left out: bicubic / upper_bound have no shots).
        """
        if not self.enabled:
            yield NullRunHandle()
            return
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        parent = self.parent_run_id()
        ident = {k: params.get(k) for k in IDENTITY_KEYS if isinstance(params, dict) and params.get(k) is not None}
        run_tags = {MLFLOW_PARENT_RUN_ID: parent, "stage": stage, PIPELINE_TAG: self.pipeline_id,
                    ROLE_TAG: "stage", **context_tags(), **ident, **(tags or {})}
        run_tags = {k: _param_str(v) for k, v in run_tags.items() if v is not None}
        try:
            run = _retry(self.client.create_run, self.experiment_id, tags=run_tags, run_name=f"{stage}/{name}")
        except TrackingError:
            raise
        except Exception as exc:
            raise TrackingError(f"tracking: cannot create a run in {self.uri} ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        handle = RunHandle(self.client, run.info.run_id, parent)
        handle.log_params(params or {})
        try:
            yield handle
        except BaseException as exc:
            status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            with contextlib.suppress(Exception):
                self.client.set_terminated(handle.run_id, status)
                self.client.set_terminated(parent, "FAILED")
            raise
        _retry(self.client.set_terminated, handle.run_id, "FINISHED")
        with contextlib.suppress(Exception):  # the parent's status and end time follow its last child
            self.client.set_terminated(parent, "FINISHED")


def tracker_from_params(params: dict) -> Tracker:
    """The tracker ``params['tracking']`` describes (disabled: a no-op tracker, mlflow not imported)."""
    t = params.get("tracking") or {}
    enabled = bool(t.get("enabled", False))
    if not enabled:
        return Tracker(t.get("uri", "sqlite:///mlflow.db"), t.get("experiment", "drtl"), enabled=False,
                       pipeline_id="disabled")
    return Tracker(t.get("uri", "sqlite:///mlflow.db"), t.get("experiment", "drtl"), enabled=True,
                   pipeline_id=pipeline_id(params), parent_params=_params_for_id(params))


# ------------------------------------------------------------------ reading results back
def _search_all(client, exp_ids: list[str], flt: str, order_by: list[str] | None = None) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(exp_ids, flt, max_results=1000, order_by=order_by, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _int_or_none(v):
    if v in (None, "", "None", "null", "none"):
        return None
    try:
        return int(float(v))
    except ValueError:
        return None


def search_results(uri: str, experiment: str, pipeline_id: str | None = None, latest: bool = True,
                   with_ids: bool = False):
    """One row per finished evaluation child run: ``method, shots, seed, psnr_y, ssim_y``.

    ``shots`` is a nullable integer (missing for K-independent methods: bicubic, upper_bound).
    ``pipeline_id``: only that pipeline's runs. ``latest``: one row per (method, shots, seed), the
    most recent run (a stage re-run under a new pipeline id supersedes the old one).
    ``with_ids``: add ``run_id``, ``pipeline_id`` and ``start_time`` columns.
    """
    import pandas as pd

    from drtl.config import METHODS

    cols = RESULT_COLUMNS + (["run_id", "pipeline_id", "start_time"] if with_ids else [])
    client = make_client(resolve_uri(uri))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return pd.DataFrame(columns=cols)
    flt = "tags.stage = 'evaluate' and attributes.status = 'FINISHED'"
    if pipeline_id:
        flt += f" and tags.`{PIPELINE_TAG}` = '{pipeline_id}'"
    rows = []
    for r in _search_all(client, [exp.experiment_id], flt, ["attributes.start_time DESC"]):
        m, t = r.data.metrics, r.data.tags
        if "psnr_y" not in m or "ssim_y" not in m or "method" not in t:
            continue
        rows.append({"method": t["method"], "shots": _int_or_none(t.get("shots")),
                     "seed": _int_or_none(t.get("seed")) or 0, "psnr_y": float(m["psnr_y"]),
                     "ssim_y": float(m["ssim_y"]), "run_id": r.info.run_id,
                     "pipeline_id": t.get(PIPELINE_TAG), "start_time": r.info.start_time})
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS + ["run_id", "pipeline_id", "start_time"])
    df["shots"] = df["shots"].astype("Int64")
    df["seed"] = df["seed"].astype(int)
    if latest and len(df):
        df = df.sort_values("start_time", ascending=False, kind="stable")
        df = df.drop_duplicates(subset=["method", "shots", "seed"], keep="first")
    order = {m: i for i, m in enumerate(METHODS)}
    df = df.assign(_o=df["method"].map(lambda x: order.get(x, len(order))))
    df = df.sort_values(["_o", "shots", "seed"], na_position="first").drop(columns="_o").reset_index(drop=True)
    return df[cols]


def _parent_shots(client, experiment: str, pipeline_id: str) -> list[int] | None:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], f"tags.`{PIPELINE_TAG}` = '{pipeline_id}' and "
                              f"tags.`{ROLE_TAG}` = 'pipeline'", max_results=1)
    if not runs or "experiment.shots" not in runs[0].data.params:
        return None
    try:
        return [int(k) for k in json.loads(runs[0].data.params["experiment.shots"])]
    except (ValueError, TypeError):
        return None


def report_from_mlflow(uri: str, experiment: str, out_dir: str | os.PathLike, pipeline_id: str | None = None,
                       expand_shots: list[int] | None = None) -> dict:
    """The comparison table and figure from the MLflow store instead of the evaluation files.

    Writes ``out_dir/{results.csv, aggregate.csv, results.md, psnr_vs_shots.png}`` with the same
    functions as the report stage (drtl.stages.report). K-independent runs (no ``shots`` tag) are
    repeated for every K: ``expand_shots``, else the pipeline's ``experiment.shots`` param (when
    ``pipeline_id`` is given), else the K values found among the other runs.
    """
    import pandas as pd

    from drtl.io import atomic_path, write_text
    from drtl.stages.report import COLUMNS, aggregate, markdown, plot

    uri = resolve_uri(uri)
    df = search_results(uri, experiment, pipeline_id)
    if df.empty:
        where = f" for pipeline {pipeline_id}" if pipeline_id else ""
        raise DataError(f"{uri}: no finished evaluation runs in experiment {experiment!r}{where}; "
                        f"run the pipeline with tracking.enabled: true")
    ks = expand_shots or (pipeline_id and _parent_shots(make_client(uri), experiment, pipeline_id)) or \
        sorted(int(k) for k in df["shots"].dropna().unique()) or [0]
    fixed = df[df["shots"].notna()]
    free = df[df["shots"].isna()]
    parts = [fixed] + [free.assign(shots=k) for k in ks]
    full = pd.concat([p for p in parts if len(p)], ignore_index=True)
    full["shots"] = full["shots"].astype(int)
    full = full[COLUMNS]
    from drtl.config import METHODS

    order = {m: i for i, m in enumerate(METHODS)}
    full = full.assign(_o=full["method"].map(lambda x: order.get(x, len(order))))
    full = full.sort_values(["_o", "shots", "seed"]).drop(columns="_o").reset_index(drop=True)
    agg = aggregate(full)
    out = Path(out_dir)
    with atomic_path(out / "results.csv") as tmp:
        full.to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(out / "aggregate.csv") as tmp:
        agg.to_csv(tmp, index=False, float_format="%.6f")
    write_text(out / "results.md", markdown(agg))
    plot(agg, out / "psnr_vs_shots.png")
    return {"n_runs": int(len(df)), "n_rows": int(len(full)), "shots": list(ks), "out": str(out)}


def main(argv: list[str] | None = None) -> int:
    """``python -m drtl.tracking report|results --uri URI --experiment NAME ...``"""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m drtl.tracking", description="read drtl results from MLflow")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("report", "results"):
        p = sub.add_parser(name)
        p.add_argument("--uri", default="sqlite:///mlflow.db")
        p.add_argument("--experiment", default="drtl")
        p.add_argument("--pipeline-id", default=None)
        if name == "report":
            p.add_argument("--out", default="reports/mlflow")
            p.add_argument("--shots", default=None, help="K list for K-independent methods, e.g. 1,5,10")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "results":
            print(search_results(a.uri, a.experiment, a.pipeline_id).to_string(index=False))
        else:
            ks = [int(k) for k in a.shots.split(",")] if a.shots else None
            r = report_from_mlflow(a.uri, a.experiment, a.out, a.pipeline_id, ks)
            print(f"{r['n_runs']} evaluation runs -> {r['out']}/results.csv ({r['n_rows']} rows)")
    except DRTLError as exc:
        print(f"drtl: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
