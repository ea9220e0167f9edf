"""MLflow tracking from run records: stages never import MLflow; one process logs their records.

Every stage run writes a run record (``run.json``, :mod:`drtl.records`). :func:`log_records` logs
a list of them: one parent run per invocation, one child run per stage record, the report record
onto the parent (the aggregate table as metrics and artifacts, the PSNR-vs-K chart). Callers:
``drtl track`` (:func:`track_folder`), the end of ``drtl experiment`` / ``drtl adapt``, and each
Kubeflow component (:func:`start_parent` / ``log_records(..., parent_run_id=...)`` /
:func:`finish_parent`). Reading back: :func:`search_results`, :func:`report_from_mlflow`,
``python -m drtl.tracking report|results|track``.

Modules: ``store`` (URI, client, experiment, retries, batched writes), ``log`` (records -> runs),
``content`` (a record's metrics, curves, datasets, artifacts as MLflow entities),
``read`` (runs -> results table), ``table`` (aggregate / Markdown / figure). Importing this package
imports neither mlflow nor pandas; the library never imports kfp or drtl.stages.
"""

from drtl.tracking.log import (finish_parent, history_metrics, identity, log_records, run_name,  # noqa: F401
                               start_parent, track_folder)
from drtl.tracking.read import latest_parent, report_from_mlflow, search_results  # noqa: F401
from drtl.tracking.store import (DEFAULT_URI, ROLE_TAG, TrackingError, make_client, resolve_uri,  # noqa: F401
                                 settings)

__all__ = ["log_records", "start_parent", "finish_parent", "track_folder", "search_results", "report_from_mlflow",
           "latest_parent", "resolve_uri", "make_client", "settings", "run_name", "identity", "TrackingError",
           "DEFAULT_URI", "ROLE_TAG"]
