"""Transitional: the old per-stage ``tracker_from_params(params).run(...)`` API, disabled-only.

The stage call sites (drtl/cli.py, drtl/stages/experiment.py, drtl/stages/adapt.py) still call it
until they are rewritten to write run records and call :func:`drtl.tracking.log_records`. With
``tracking.enabled: false`` (the default) it is the same no-op as before, so those commands keep
working; with tracking enabled it refuses with a pointer to the new way. Delete this module when no
call site is left (``git grep tracker_from_params``).
"""

from __future__ import annotations

import contextlib

from drtl.errors import ConfigError


class NullRunHandle:
    """Every call does nothing."""

    run_id = None
    parent_run_id = None

    def __getattr__(self, name):
        if name.startswith(("log_", "set_")):
            return lambda *a, **k: None
        raise AttributeError(name)


class _DisabledTracker:
    enabled = False
    pipeline_id = "disabled"

    def parent_run_id(self):
        return None

    @contextlib.contextmanager
    def run(self, stage, name, params=None, tags=None):
        yield NullRunHandle()


def tracker_from_params(params: dict) -> _DisabledTracker:
    if (params.get("tracking") or {}).get("enabled"):
        raise ConfigError("tracking.enabled: stages no longer log to MLflow themselves; they write run records "
                          "(run.json) and `drtl track` logs them (drtl.tracking.log_records). Run with "
                          "tracking.enabled=false, then `python -m drtl.tracking track --root outputs`")
    return _DisabledTracker()
