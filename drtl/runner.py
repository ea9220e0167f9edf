"""One wrapper around every stage call: threads, timing, provenance and the run record.

:func:`execute` is the only way a stage runs, whoever the caller is (the CLI and so ``dvc repro``,
the Kubeflow components, ``drtl experiment``, ``drtl adapt``). It never imports MLflow: it writes
the run's record (:mod:`drtl.records`) beside the outputs, and whoever orchestrates logs the records
in one process (:func:`drtl.tracking.log_records`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from drtl.config import section
from drtl.records import IDENTITY_KEYS, RunRecord, flatten, folder_fingerprint, provenance, write_record
from drtl.stages import get_stage

def read_params(params: dict, reads) -> dict:
    """The flat dotted params a stage reads, e.g. {'finetune.lr': 1e-4, 'target.scale': 2}."""
    out = {}
    for key in reads:
        v = section(params, key)
        out.update(flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def _measurements(metrics) -> dict:
    """Numbers only (identities and lists are not measurements)."""
    out = {}
    for k, v in flatten(metrics if isinstance(metrics, dict) else {}).items():
        if isinstance(v, bool) or k in IDENTITY_KEYS or not isinstance(v, (int, float)):
            continue
        out[k] = float(v)
    return out


def execute(stage: str, params: dict, inputs: dict, out, *, name: str | None = None, on_log=None) -> dict:
    """Run ``stage`` with ``inputs`` into ``out``; returns its metrics and writes ``<out>/run.json``.

    ``inputs`` may hold None for optional args; ``name`` defaults to the output's folder name.
    ``out`` None (``drtl evaluate`` without ``--out``: print the numbers only): nothing is written.
    ``on_log``: passed to the stage function, which calls it with each training log entry
    (progress lines of long runs).
    """
    from drtl.config import apply_threads

    spec = get_stage(stage)
    apply_threads(params)
    out = None if out is None else Path(out)
    t0 = time.time()
    metrics = spec.fn(params, dict(inputs), out, on_log=on_log) or {}
    duration = time.time() - t0
    if out is not None:
        folder = out if not out.suffix else out.parent
        rec = RunRecord(
            stage=stage, name=name or (out.stem if out.suffix else out.name),
            identity={k: inputs[k] for k in IDENTITY_KEYS if inputs.get(k) is not None},
            params=read_params(params, spec.reads_for(params, spec.variant_of(inputs))),
            metrics={**_measurements(metrics), "duration_s": round(duration, 3)},
            history="history.json" if (folder / "history.json").is_file() else None,
            artifacts=[a for a in spec.artifacts if (folder / a).exists()],
            inputs=_inputs(spec, params, inputs),
            provenance=provenance(params), started=t0, duration_s=round(duration, 3))
        write_record(out, rec)
    return metrics


def _inputs(spec, params, inputs) -> list[dict]:
    """Dataset inputs for the tracker: path args with a context (target pool / test) and their content hash."""
    found = []
    for a in spec.args:
        if a.kind == "path" and a.context and inputs.get(a.name):
            p = str(inputs[a.name])
            found.append({"path": p, "context": a.context,
                          "digest": folder_fingerprint(p) if os.path.exists(p) else None})
    return found
