"""Typed params: the default profile, overlays, overrides (``-S key.sub=value``) and validation.

:data:`DEFAULTS` is the default profile (CPU, sized for ``make run``) and the one definition of every
key; ``params.yaml`` writes it out in full for DVC, and every other profile (``params.gpu.yaml``,
``configs/*.yaml``, ``drtl/profiles/adapt.yaml``) is an overlay holding only what it changes.
``load_params`` merges a params file over :data:`DEFAULTS`, refuses unknown keys, and checks every
value against :data:`SCHEMA` (the type and range of each key, defined next to the defaults). A bad
value is a one-line :class:`ConfigError` naming the key, the value and what is expected, raised
before any work starts.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import yaml

from drtl.errors import ConfigError
from drtl.methods import DEFAULT_METHODS, META_INITS, UPPER_BOUND_INITS
from drtl.methods import METHOD_NAMES as METHODS  # the method registry is the one definition
from drtl.similarity import PROFILE_SIMILARITIES as SIMILARITIES  # relation.similarity: drtl.similarity

# The super-resolution scales the project supports, everywhere (import, validation, params, models).
SUPPORTED_SCALES = (2, 3, 4)
SCHEDULES = ("constant", "step", "cosine")

DEFAULTS: dict[str, Any] = {
    "device": "cpu",
    "threads": 0,          # torch intra-op threads; 0 = torch's default (one per core)
    "log_every_s": 60,     # experiment runner: at most one progress line per this many seconds
    "outputs": "outputs",
    "target": {"pool": "data/sample/pool", "test": "data/sample/test", "scale": 2},
    "aux": {"hr": ["data/sample/aux_hr"], "families": None, "tasks": None, "exclude": None, "variants": 1,
            "val_fraction": 0.25, "max_hr_side": 256, "seed": 0},
    "arch": {"name": "edsr_tiny"},
    # *.amp (relation.expert, pretrain, meta, finetune): bf16 autocast of the training forward passes
    # on CUDA (drtl.train.TrainConfig.amp; ignored on CPU)
    "relation": {"drn": {"num_feat": 32, "emb_dim": 64, "reference": True, "reference_match": True}, "steps": 300,
                 "batch_per_task": 2, "lr_patch": 32, "lr": 1e-3, "temperature": 0.1, "tau": 0.05, "mix": 0.0,
                 "top_k": 0, "weighting": True, "patches_per_image": 16, "eval_per_task": 32, "seed": 0,
                 "fitted": False, "fitted_noise": 0.0, "composed": False, "similarity": "drn", "tau_db": 0.5,
                 "expert": {"iterations": 400, "batch": 4, "lr_patch": 24, "lr": 5e-4, "schedule": "cosine",
                            "tasks_per_step": 4, "amp": False}},
    "pretrain": {"iterations": 400, "batch": 4, "lr_patch": 24, "lr": 5e-4, "tasks_per_step": 4,
                 "schedule": "cosine", "log_every": 100, "checkpoint_every": 0, "drtl_continue": 0, "amp": False},
    "meta": {"iterations": 30, "lr_patch": 24, "lr": 1e-4, "inner_steps": 3, "inner_lr": 1e-2,
             "meta_batch": 4, "first_order": True, "support_batch": 4, "query_batch": 4,
             "log_every": 20, "checkpoint_every": 0, "init": "pretrain", "amp": False},
    "finetune": {"iterations": 60, "batch": 16, "lr_patch": 24, "lr": 5e-5, "schedule": "constant",
                 "log_every": 20, "checkpoint_every": 0, "upper_bound_init": "pretrain",
                 "ceiling_iterations": 150, "val_fraction": 0.25, "eval_every": 5, "patience": 0, "amp": False},
    "experiment": {"shots": [1, 5, 10], "seeds": [0], "methods": list(DEFAULT_METHODS)},
    "tracking": {"uri": "sqlite:///mlflow.db", "experiment": "drtl", "enabled": True},
}

# sub-mappings whose keys are free-form (passed to builders that validate them themselves)
_FREE = {("arch",), ("relation", "drn")}


# ----------------------------------------------------------------------------------- the schema
class Spec:
    """The type and range of one key: ``check(value) -> value`` (possibly normalised) or ``None``
    when the value does not fit; ``expect`` says what fits, for the error message."""

    def __init__(self, expect: str, check, nullable: bool = False):
        self.expect, self._check, self.nullable = expect, check, nullable

    def __call__(self, value):
        if value is None and self.nullable:
            return True, None
        try:
            out = self._check(value)
        except (TypeError, ValueError, OverflowError):
            return False, None
        return (out is not None), out

    def or_null(self, what: str = "null") -> Spec:
        return Spec(f"{self.expect}, or {what}", self._check, nullable=True)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def Int(lo: int | None = None, hi: int | None = None) -> Spec:
    rng = f" >= {lo}" if hi is None else f" in {lo}..{hi}"
    return Spec(f"an integer{rng if lo is not None else ''}",
                lambda v: v if _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi) else None)


def _as_float(v) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, str):  # YAML 1.1 reads 1e-4 (no dot) as a string: accept the number it spells
        v = float(v.strip())
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return v  # an int stays an int (logged and hashed as written)


def Float(lo: float, hi: float | None = None, lo_open: bool = False, hi_open: bool = False) -> Spec:
    low = f"> {lo:g}" if lo_open else f">= {lo:g}"
    text = f"a number {low}" if hi is None else f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def check(v):
        x = _as_float(v)
        if x is None or x < lo or (lo_open and x == lo):
            return None
        if hi is not None and (x > hi or (hi_open and x == hi)):
            return None
        return x
    return Spec(text, check)


def Bool() -> Spec:
    return Spec("true or false", lambda v: v if isinstance(v, bool) else None)


def Str(choices: tuple | None = None, pattern: str | None = None, expect: str | None = None) -> Spec:
    def check(v):
        if not isinstance(v, str) or not v.strip():
            return None
        if choices is not None and v not in choices:
            return None
        if pattern is not None and not re.fullmatch(pattern, v.strip().lower()):
            return None
        return v
    text = expect or (f"one of {', '.join(choices)}" if choices else "a non-empty string")
    return Spec(text, check)


def List(item: Spec, scalar_ok: bool = False, expect: str | None = None) -> Spec:
    """A non-empty list of ``item``; with ``scalar_ok`` a single item is taken as a one-item list."""
    def check(v):
        if scalar_ok and not isinstance(v, (list, tuple)):
            v = [v]
        if not isinstance(v, (list, tuple)) or not v:
            return None
        out = []
        for x in v:
            ok, y = item(x)
            if not ok:
                return None
            out.append(y)
        return out
    return Spec(expect or f"a non-empty list of {item.expect.replace('an integer', 'integers').replace('a non-empty string', 'strings')}",
                check)


def Mapping() -> Spec:
    return Spec("a mapping of settings", lambda v: v if isinstance(v, dict) else None)


_POS = Float(0.0, lo_open=True)
SCHEMA: dict[str, Spec] = {
    "device": Str(pattern=r"cpu|cuda|cuda:\d+|auto", expect="cpu, cuda, cuda:N or auto"),
    "threads": Int(0),
    "log_every_s": Float(0.0),
    "outputs": Str(),
    "target.pool": Str(), "target.test": Str(),
    "target.scale": Int(),  # the range is set below from SUPPORTED_SCALES
    "aux.hr": List(Str(), scalar_ok=True),
    "aux.families": List(Str(), scalar_ok=True).or_null("null (every family)"),
    "aux.tasks": List(Str(), scalar_ok=True).or_null("null (every task)"),
    "aux.exclude": List(Str(), scalar_ok=True).or_null("null (none)"),
    "aux.variants": Int(1), "aux.val_fraction": Float(0.0, 1.0, hi_open=True), "aux.max_hr_side": Int(16).or_null("null (no limit)"),
    "aux.seed": Int(0),
    "arch": Mapping(), "relation.drn": Mapping(),
    "relation.steps": Int(1), "relation.batch_per_task": Int(1), "relation.lr_patch": Int(8), "relation.lr": _POS,
    "relation.temperature": _POS, "relation.tau": _POS, "relation.weighting": Bool(),
    "relation.mix": Float(0.0, 1.0), "relation.top_k": Int(0),
    "relation.patches_per_image": Int(1), "relation.eval_per_task": Int(1), "relation.seed": Int(0),
    "relation.fitted": Bool(), "relation.fitted_noise": Float(0.0), "relation.composed": Bool(),
    "relation.similarity": Str(SIMILARITIES),
    "relation.tau_db": _POS,
    "relation.expert.iterations": Int(1), "relation.expert.batch": Int(1), "relation.expert.lr_patch": Int(8),
    "relation.expert.lr": _POS, "relation.expert.schedule": Str(SCHEDULES), "relation.expert.tasks_per_step": Int(1),
    "relation.expert.amp": Bool(), "pretrain.amp": Bool(), "meta.amp": Bool(), "finetune.amp": Bool(),
    "pretrain.iterations": Int(1), "pretrain.batch": Int(1), "pretrain.lr_patch": Int(8), "pretrain.lr": _POS,
    "pretrain.tasks_per_step": Int(1), "pretrain.schedule": Str(SCHEDULES), "pretrain.log_every": Int(1),
    "pretrain.checkpoint_every": Int(0), "pretrain.drtl_continue": Int(0),
    "meta.iterations": Int(1), "meta.lr_patch": Int(8), "meta.lr": _POS, "meta.inner_steps": Int(1),
    "meta.inner_lr": _POS, "meta.meta_batch": Int(1), "meta.first_order": Bool(), "meta.support_batch": Int(1),
    "meta.query_batch": Int(1), "meta.log_every": Int(1), "meta.checkpoint_every": Int(0),
    "meta.init": Str(META_INITS),
    "finetune.iterations": Int(1), "finetune.batch": Int(1), "finetune.lr_patch": Int(8), "finetune.lr": _POS,
    "finetune.schedule": Str(SCHEDULES), "finetune.log_every": Int(1), "finetune.checkpoint_every": Int(0),
    "finetune.upper_bound_init": Str(UPPER_BOUND_INITS), "finetune.ceiling_iterations": Int(1),
    "finetune.val_fraction": Float(0.0, 1.0, hi_open=True), "finetune.eval_every": Int(1), "finetune.patience": Int(0),
    "experiment.shots": List(Int(1), scalar_ok=True), "experiment.seeds": List(Int(0), scalar_ok=True),
    "experiment.methods": List(Str(METHODS), expect=f"a non-empty list of methods from {', '.join(METHODS)}"),
    "tracking.uri": Str(), "tracking.experiment": Str(), "tracking.enabled": Bool(),
}
SCHEMA["target.scale"] = Spec(f"one of {', '.join(map(str, SUPPORTED_SCALES))}",
                              lambda v: v if _is_int(v) and v in SUPPORTED_SCALES else None)


def check_scale(scale, what: str = "--scale") -> int:
    """The one scale rule: an integer in :data:`SUPPORTED_SCALES`; else a one-line ConfigError."""
    if not _is_int(scale) or scale not in SUPPORTED_SCALES:
        raise ConfigError(f"{what}={scale}: expected one of {', '.join(map(str, SUPPORTED_SCALES))}")
    return int(scale)


def _show(value) -> str:
    text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
    text = text.removesuffix("\n...").strip()
    return text if len(text) <= 60 else text[:57] + "..."


def _merge(base: dict, over: dict, path: tuple = ()) -> dict:
    out = copy.deepcopy(base)
    if not isinstance(over, dict):
        where = ".".join(path) or "params file"
        raise ConfigError(f"{where}={_show(over)}: expected a mapping of settings")
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


def section(params: dict, dotted: str):
    """The value at a dotted key, e.g. ``section(p, "finetune.lr")``."""
    cur = params
    for part in dotted.split("."):
        cur = cur[part]
    return cur


def set_key(params: dict, dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested mapping (the target keys must exist, except in free-form sections)."""
    keys = dotted.split(".")
    node = params
    for i, k in enumerate(keys[:-1]):
        if not isinstance(node.get(k), dict):
            if k not in node:
                raise ConfigError(f"params: unknown key {dotted}")
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
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        return key.strip(), raw  # not YAML: the schema check names the key and what it expects


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
    """Set torch's intra-op threads from ``params['threads']`` (0 = leave torch's default).

    Without importing torch (1.5-2 s) in a process that may not need it: when torch is not loaded
    yet, ``OMP_NUM_THREADS`` is set, which torch reads for its intra-op thread count when imported.
    """
    n = int(p.get("threads") or 0)
    if n <= 0:
        return
    import os
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        os.environ["OMP_NUM_THREADS"] = str(n)


def check_params(p: dict) -> None:
    """Check every key of :data:`SCHEMA` in ``p`` (in place: numbers spelt as strings such as
    ``1e-4`` become floats, a single shot count or HR folder becomes a one-item list). Raises a
    one-line ConfigError ``KEY=VALUE: expected WHAT`` for the first bad value."""
    if not isinstance(p, dict):
        raise ConfigError(f"params: expected a mapping of sections, got {_show(p)}")
    for section, default in DEFAULTS.items():
        if isinstance(default, dict) and not isinstance(p.get(section), dict):
            raise ConfigError(f"{section}={_show(p.get(section))}: expected a mapping of settings")
    for dotted, spec in SCHEMA.items():
        *parents, leaf = dotted.split(".")
        node = p
        for k in parents:
            node = node[k]
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(parents)}={_show(node)}: expected a mapping of settings")
        if leaf not in node:
            raise ConfigError(f"params: {dotted} is missing")
        ok, value = spec(node[leaf])
        if not ok:
            raise ConfigError(f"{dotted}={_show(node[leaf])}: expected {spec.expect}")
        node[leaf] = value
