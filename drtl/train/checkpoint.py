"""Training checkpoints: atomic ``torch.save`` dicts read back with ``weights_only=True``.

A checkpoint holds the model and optimizer states, the step, the generator state and the loss
history (see :func:`drtl.train.common.run_loop`); :func:`check_resumable` says whether one may be
resumed by a run with a given kind, config and fingerprint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from drtl.errors import ConfigError, ModelError
from drtl.io import atomic_path
from drtl.train.config import TrainConfig

CHECKPOINT_FORMAT = 1

# Fields that may change between a run and its resumption without changing the trajectory.
_RESUME_FREE_FIELDS = {"log_every", "checkpoint_every", "device"}


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` atomically (temp file next to ``path``, then ``os.replace``)."""
    with atomic_path(path, suffix=".tmp") as tmp:
        torch.save(dict(state), tmp)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``; unreadable files raise ModelError."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ModelError(
            f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc}); delete it to start the run afresh"
        ) from None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: not a drtl checkpoint (got {type(state).__name__}); delete it to start afresh")
    return state


def cpu_state(obj):
    """Deep-copy a (nested) state onto the CPU so a checkpoint never aliases live tensors."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [cpu_state(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(cpu_state(v) for v in obj)
    return obj


def _differing(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """Sorted keys whose values differ (a key missing on one side differs)."""
    return sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))


def check_resumable(state: dict, kind: str, cfg: TrainConfig, ckpt_path, fingerprint) -> None:
    """Raise unless ``state`` may be resumed by a ``kind`` run with ``cfg`` and ``fingerprint``."""
    for key in ("format", "kind", "step", "config", "model", "optimizer", "gen", "history"):
        if key not in state:
            raise ModelError(f"{ckpt_path}: checkpoint lacks {key!r}; delete it to start the run afresh")
    if state["kind"] != kind:
        raise ConfigError(
            f"{ckpt_path}: checkpoint was written by a {state['kind']!r} run, not {kind!r}; use another path"
        )
    mine = {k: v for k, v in cfg.to_dict().items() if k not in _RESUME_FREE_FIELDS}
    theirs = {k: v for k, v in dict(state["config"]).items() if k not in _RESUME_FREE_FIELDS}
    diff = _differing(mine, theirs)
    if diff:
        raise ConfigError(
            f"{ckpt_path}: checkpoint was written with different training settings ({', '.join(diff)}); "
            "delete it to start afresh or restore the old settings"
        )
    diff = _differing(dict(fingerprint or {}), dict(state.get("fingerprint") or {}))
    if diff:
        raise ConfigError(
            f"{ckpt_path}: checkpoint was written with different {kind} settings ({', '.join(diff)}); "
            "delete it to start afresh or restore the old settings"
        )
    if int(state["step"]) > cfg.iterations:
        raise ConfigError(f"{ckpt_path}: checkpoint is at step {state['step']} > iterations={cfg.iterations}")
