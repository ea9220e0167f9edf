"""The MLflow store: URI resolution, the client, the experiment, retries and batched writes.

Store: a SQLite file by default (``tracking.uri: sqlite:///mlflow.db``; a relative path is taken
relative to the repository root: ``$DVC_ROOT`` when DVC runs the command, which also holds for
``dvc exp run --temp`` / queued experiments, else the working folder). An ``http(s)://`` URI of an
``mlflow server`` works the same way. For SQLite stores the artifacts go next to the database
(``<db folder>/mlruns``); a server decides its own artifact store (docs/storage.md for S3).

mlflow is imported only inside functions (importing it costs ~2.5 s).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drtl.errors import ConfigError, DRTLError

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "drtl"
ROLE_TAG = "drtl.role"          # "pipeline" (the parent of one invocation) or "stage" (a child)
PARENT_TAG = "mlflow.parentRunId"

# MLflow's log_batch limits (per request)
MAX_PARAMS, MAX_TAGS, MAX_ENTITIES = 100, 100, 1000


class TrackingError(DRTLError):
    """The MLflow store cannot be reached or refused a write."""


@dataclass(frozen=True)
class Settings:
    uri: str
    experiment: str
    enabled: bool


def settings(tracking: dict | None) -> Settings:
    """The params' ``tracking`` section (``uri``, ``experiment``, ``enabled``; enabled by default
    when the key is absent) with the URI resolved."""
    t = tracking or {}
    enabled = bool(t.get("enabled", True))
    uri = t.get("uri") or DEFAULT_URI
    return Settings(resolve_uri(uri) if enabled else uri, t.get("experiment") or DEFAULT_EXPERIMENT, enabled)


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


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


# ------------------------------------------------------------------ value conversion
_BAD_KEY = re.compile(r"[^\w\-. :/]")


def clean_key(key: str) -> str:
    """A metric / param / tag key MLflow accepts: letters, digits, ``_ - . space : /``; anything else
    becomes ``_``; at most 250 characters."""
    return _BAD_KEY.sub("_", str(key))[:250]


def param_str(v: Any) -> str:
    """A param / tag value: strings as they are, lists and dicts as JSON, None as ``null``; at
    most 6000 characters (MLflow's limit)."""
    if isinstance(v, (list, tuple, dict)):
        s = json.dumps(v, default=str)
    elif v is None:
        s = "null"
    else:
        s = str(v)
    return s if len(s) <= 6000 else s[:5990] + "...[cut]"


def metric_value(v: Any) -> float | None:
    """A finite number, or None (bools, strings, lists, NaN and inf are not measurements)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def now_ms() -> int:
    return int(time.time() * 1000)


def retry(fn, *args, tries: int = 5, **kwargs):
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


def _first_line(exc: BaseException) -> str:
    s = str(exc)
    return f"{type(exc).__name__}: {s.splitlines()[0]}" if s else type(exc).__name__


# ------------------------------------------------------------------ client and experiment
def _quiet_mlflow_logs() -> None:
    """Quiet migrations and store logs; no usage telemetry (the project runs offline; set
    ``MLFLOW_DISABLE_TELEMETRY=false`` to opt back in)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.tracking.sqlalchemy_store"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _fast_sqlite(store) -> None:
    """WAL journal (readers such as ``mlflow ui`` do not block the writer) and ``synchronous=NORMAL``
    for this process's connections: a commit no longer waits for an fsync, which made a ~90-record
    ingest wait on the disk more than it computed. A crash can lose the last commits, never corrupt
    the file. Best effort: a store that refuses keeps MLflow's settings."""
    engine = getattr(store, "engine", None)
    if engine is None or getattr(engine.dialect, "name", "") != "sqlite":
        return
    from sqlalchemy import event

    def pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        event.listen(engine, "connect", pragmas)
        engine.dispose()  # pooled connections made before the listener: reopened with it
    except Exception:  # noqa: BLE001
        return


def make_client(uri: str):
    """An ``MlflowClient`` for ``uri`` (resolved here; creates the SQLite file and its folder)."""
    _quiet_mlflow_logs()
    from mlflow import MlflowClient

    uri = resolve_uri(uri)
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    try:
        client = retry(MlflowClient, tracking_uri=uri)
        if db is not None:  # the SQL store is built lazily; build it now, inside the retry
            _fast_sqlite(retry(lambda: client._tracking_client.store))
    except Exception as exc:
        raise TrackingError(f"tracking: cannot open MLflow store {uri} ({_first_line(exc)}); fix tracking.uri "
                            f"or set tracking.enabled: false") from None
    return client


def experiment_id(client, name: str, uri: str, create: bool = True) -> str | None:
    """Get or create the experiment (race-safe); SQLite stores keep artifacts in <db folder>/mlruns."""
    exp = retry(client.get_experiment_by_name, name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    if not create:
        return None
    db = sqlite_path(uri)
    location = (db.parent / "mlruns").as_uri() if db is not None else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:
        exp = client.get_experiment_by_name(name)  # another process created it first
        if exp is None:
            raise
        return exp.experiment_id


def write_batch(client, run_id: str, metrics=(), params=(), tags=()) -> None:
    """``log_batch`` in as few requests as MLflow's limits allow (100 params, 100 tags, 1000
    entities per request). ``metrics``: ``mlflow.entities.Metric``; ``params`` / ``tags``: pairs."""
    from mlflow.entities import Param, RunTag

    metrics = list(metrics)
    params = [Param(clean_key(k), param_str(v)) for k, v in params]
    tags = [RunTag(clean_key(k), param_str(v)) for k, v in tags]
    while metrics or params or tags:
        p, params = params[:MAX_PARAMS], params[MAX_PARAMS:]
        t, tags = tags[:MAX_TAGS], tags[MAX_TAGS:]
        room = MAX_ENTITIES - len(p) - len(t)
        m, metrics = metrics[:room], metrics[room:]
        try:
            retry(client.log_batch, run_id, metrics=m, params=p, tags=t)
        except Exception as exc:
            raise TrackingError(f"tracking: cannot write to run {run_id} ({_first_line(exc)})") from None


def search_all(client, exp_ids: list[str], flt: str, order_by: list[str] | None = None) -> list:
    """Every run matching ``flt`` (all pages)."""
    runs, token = [], None
    while True:
        page = retry(client.search_runs, exp_ids, flt, max_results=1000, order_by=order_by, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs
