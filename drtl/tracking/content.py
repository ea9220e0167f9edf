"""A run record's content as MLflow entities: metrics, training curves, dataset inputs, artifacts.

Used by :mod:`drtl.tracking.log`; mlflow is imported inside the functions.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from drtl.records import IDENTITY_KEYS, RunRecord, flatten
from drtl.tracking.store import clean_key, metric_value, retry

# keys that describe a run rather than measure it: never metrics (moved to params when found there)
NOT_METRICS = frozenset({*IDENTITY_KEYS, "stage", "scale", "crop_border", "n_images"})


def ms(seconds: float | None) -> int | None:
    return int(seconds * 1000) if seconds else None


def metrics_and_moved(rec: RunRecord, ts: int) -> tuple[list, dict]:
    """(Metric entities, params that sat among the metrics): numeric scalars only."""
    from mlflow.entities import Metric

    out, moved = {}, {}
    for k, v in flatten(rec.metrics or {}).items():
        if k in NOT_METRICS:
            moved[k] = v
        elif (f := metric_value(v)) is not None:
            out[k] = f
    if rec.duration_s and "duration_s" not in out:
        out["duration_s"] = float(rec.duration_s)
    return [Metric(clean_key(k), f, ts, 0) for k, f in out.items()], moved


def history_metrics(history: dict, ts: int) -> list:
    """A history.json as step metrics.

    ``history["log"]`` (``[{"step", "loss", "lr", ...}]``) gives ``train_loss`` and ``lr`` (other
    numeric fields ``train_<name>``) at each logged step. Without ``log``, per-step lists (``loss``,
    ``accuracy``, ...) become ``train_<name>`` at steps 1..n. Numeric scalars (``wall_s``) become
    ``train_<name>`` at step 0.
    """
    from mlflow.entities import Metric

    items = []
    entries = history.get("log")
    if isinstance(entries, list) and entries:
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            step = int(entry.get("step", i + 1))
            for k, v in entry.items():
                if k != "step" and (f := metric_value(v)) is not None:
                    items.append(Metric("lr" if k == "lr" else clean_key(f"train_{k}"), f, ts, step))
    else:
        for k, v in history.items():
            if isinstance(v, list) and v and all(metric_value(x) is not None for x in v):
                items += [Metric(clean_key(f"train_{k}"), float(x), ts, i + 1) for i, x in enumerate(v)]
    for k, v in history.items():
        if k not in ("log", "iterations", "step") and (f := metric_value(v)) is not None:
            items.append(Metric(clean_key(f"train_{k}"), f, ts, 0))
    return items


def read_history(rec: RunRecord) -> dict | None:
    if not rec.history:
        return None
    p = rec.path_of(rec.history)
    try:
        h = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        warnings.warn(f"{rec.folder}: history {rec.history} not read ({exc}); no training curve logged", stacklevel=3)
        return None
    return h if isinstance(h, dict) else {"loss": h} if isinstance(h, list) else None


def _display_path(path: str) -> str:
    """An absolute input path under the working folder, relative to it (``data/sample/pool``)."""
    p = Path(path)
    if p.is_absolute():
        try:
            return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
        except (ValueError, OSError):
            pass
    return path


class Datasets:
    """Dataset entities for record inputs, built once per folder in one ingest."""

    def __init__(self):
        self._cache: dict[tuple, object] = {}

    def entity(self, inp: dict, rec: RunRecord):
        path = str(inp.get("path") or "")
        if not path:
            return None
        key = (path, inp.get("digest"))
        if key not in self._cache:
            self._cache[key] = self._build(path, inp, rec)
        return self._cache[key]

    @staticmethod
    def _build(path: str, inp: dict, rec: RunRecord):
        import mlflow.data
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        name = inp.get("name") or _display_path(path)
        here = Path(path)
        if not here.is_absolute() and not here.exists() and rec.folder and (Path(rec.folder) / path).exists():
            here = Path(rec.folder) / path
        with warnings.catch_warnings():  # source-type ambiguity, schema hints: noise
            warnings.simplefilter("ignore")
            if (here / "manifest.csv").is_file():
                import pandas as pd

                df = pd.read_csv(here / "manifest.csv", dtype={"name": str})
                digest = str(inp["digest"])[:36] if inp.get("digest") else None
                ds = mlflow.data.from_pandas(df, source=str(here.resolve()), name=name, digest=digest)
            else:  # no manifest (HR-only folder, a file, or not on this machine): the record's digest
                source = resolve_dataset_source(str(here.resolve()) if here.exists() else path)
                ds = MetaDataset(source, name=name, digest=str(inp.get("digest") or "unknown")[:36])
            return ds._to_mlflow_entity()


def log_inputs(client, run_id: str, rec: RunRecord, datasets: Datasets) -> None:
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    items = []
    for inp in rec.inputs or []:
        if not isinstance(inp, dict):
            continue
        try:
            ent = datasets.entity(inp, rec)
        except Exception as exc:  # a bad manifest must not stop the ingest
            warnings.warn(f"{rec.folder}: input {inp.get('path')} not logged ({exc})", stacklevel=3)
            continue
        if ent is not None:
            ctx = str(inp.get("context") or "input")
            items.append(DatasetInput(dataset=ent, tags=[InputTag(key=MLFLOW_DATASET_CONTEXT, value=ctx)]))
    if items:
        retry(client.log_inputs, run_id, datasets=items)


def log_artifacts(run, rec: RunRecord, tracking_uri: str) -> list[str]:
    """Each artifact of the record (file or folder) into the run's artifact store; returns what was
    missing. The artifact repository is built once per run (no store round trip per file)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo, missing = None, []
    for rel in rec.artifacts or []:
        p = rec.path_of(rel)
        if not p.exists():
            missing.append(str(rel))
            continue
        # the client's tracking URI, not the process-global one (a server's mlflow-artifacts:/ store)
        repo = repo or get_artifact_repository(run.info.artifact_uri, tracking_uri=tracking_uri)
        sub = Path(rel).parent.as_posix()
        sub = None if sub in ("", ".") or sub.startswith("..") else sub
        if p.is_dir():
            repo.log_artifacts(str(p), (f"{sub}/" if sub else "") + p.name)
        else:
            repo.log_artifact(str(p), sub)
    if missing:
        warnings.warn(f"{rec.folder}: artifacts not found, not logged: {', '.join(missing)}", stacklevel=3)
    return missing
