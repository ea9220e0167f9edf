"""Typed access to params.yaml: defaults, overrides (``-S key.sub=value``) and validation.

``params.yaml`` (read by DVC too) holds every tunable, one section per stage. ``load_params``
merges it over :data:`DEFAULTS`, so a partial file works, and refuses unknown keys with a one-line
error naming them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from drtl.errors import ConfigError

METHODS = ("bicubic", "scratch", "pretrain", "maml", "drtl_pre", "drtl_meta", "upper_bound")

DEFAULTS: dict[str, Any] = {
    "device": "cpu",
    "threads": 0,          # torch intra-op threads; 0 = torch's default (one per core)
    "log_every_s": 60,     # experiment runner: at most one progress line per this many seconds
    "outputs": "outputs",
    "target": {"pool": "data/sample/pool", "test": "data/sample/test", "scale": 2},
    "aux": {"hr": ["data/sample/aux_hr"], "families": None, "tasks": None, "variants": 1,
            "val_fraction": 0.25, "max_hr_side": 256, "seed": 0},
    "arch": {"name": "edsr_tiny"},
    "relation": {"drn": {"num_feat": 32, "emb_dim": 64}, "steps": 300, "batch_per_task": 4, "lr_patch": 32,
                 "lr": 1e-3, "temperature": 0.1, "tau": 0.05, "weighting": True, "patches_per_image": 16,
                 "eval_per_task": 32, "seed": 0},
    "pretrain": {"iterations": 200, "batch": 4, "lr_patch": 32, "lr": 2e-4, "tasks_per_step": 4,
                 "schedule": "constant", "log_every": 25, "checkpoint_every": 0},
    "meta": {"iterations": 100, "lr_patch": 32, "lr": 2e-4, "inner_steps": 1, "inner_lr": 1e-3,
             "meta_batch": 4, "first_order": True, "support_batch": 4, "query_batch": 4,
             "log_every": 25, "checkpoint_every": 0},
    "finetune": {"iterations": 200, "batch": 16, "lr_patch": 32, "lr": 1e-4, "schedule": "constant",
                 "log_every": 25, "checkpoint_every": 0, "upper_bound_init": "scratch"},
    "experiment": {"shots": [1, 5, 10], "seeds": [0, 1], "methods": list(METHODS)},
    "tracking": {"uri": "sqlite:///mlflow.db", "experiment": "drtl", "enabled": False},
}

# sub-mappings whose keys are free-form (passed to builders that validate them themselves)
_FREE = {("arch",), ("relation", "drn")}


def _merge(base: dict, over: dict, path: tuple = ()) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if path + (k,) not in _FREE and path not in _FREE and k not in base and path != ():
            raise ConfigError(f"params: unknown key {'.'.join(path + (k,))}; known: {', '.join(sorted(base))}")
        if path == () and k not in base:
            raise ConfigError(f"params: unknown section {k!r}; known: {', '.join(sorted(base))}")
        if isinstance(v, dict) and isinstance(base.get(k), dict) and path + (k,) not in _FREE:
            out[k] = _merge(base[k], v, path + (k,))
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_key(params: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested mapping (the target keys must exist, except in free-form sections)."""
    keys = dotted.split(".")
    node = params
    for i, k in enumerate(keys[:-1]):
        if not isinstance(node.get(k), dict):
            raise ConfigError(f"params: {'.'.join(keys[: i + 1])} is not a section")
        node = node[k]
    if keys[-1] not in node and tuple(keys[:-1]) not in _FREE:
        raise ConfigError(f"params: unknown key {dotted}")
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'finetune.iterations=50' -> ('finetune.iterations', 50) with YAML typing of the value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def load_params(path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None) -> dict:
    """``base`` (default: DEFAULTS) <- the params file ``path`` <- ``-S`` overrides, then checked."""
    params = copy.deepcopy(DEFAULTS if base is None else base)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: params file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
        params = _merge(params, data)
    for o in overrides or []:
        set_key(params, *parse_override(o))
    check_params(params)
    return params


def apply_threads(p: dict) -> None:
    """Set torch's intra-op threads from ``params['threads']`` (0 = leave torch's default)."""
    if int(p.get("threads") or 0) > 0:
        import torch

        torch.set_num_threads(int(p["threads"]))


def check_params(p: dict) -> None:
    bad = [m for m in p["experiment"]["methods"] if m not in METHODS]
    if bad:
        raise ConfigError(f"params: unknown method(s) {bad}; choose from {', '.join(METHODS)}")
    if int(p["target"]["scale"]) not in (2, 3, 4):
        raise ConfigError(f"params: target.scale must be 2, 3 or 4, got {p['target']['scale']}")
    if not p["experiment"]["shots"] or any(int(k) < 1 for k in p["experiment"]["shots"]):
        raise ConfigError("params: experiment.shots must be a non-empty list of positive integers")
    if isinstance(p["aux"]["hr"], str):
        p["aux"]["hr"] = [p["aux"]["hr"]]
    if p["finetune"]["upper_bound_init"] not in ("scratch", "pretrain"):
        raise ConfigError("params: finetune.upper_bound_init must be 'scratch' or 'pretrain'")
