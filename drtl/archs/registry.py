"""A small explicit registry: config dict -> model, with the resolved config recorded on the model.

Names:

* ``edsr_tiny``     EDSR, num_feat 32, num_block 4 (CPU default).
* ``edsr_baseline`` EDSR, num_feat 64, num_block 16 (EDSR-baseline, paper / GPU scale).
* ``edsr``          EDSR with explicit ``num_feat`` and ``num_block``.
* ``drn``           the Distortion Relation Network encoder.

EDSR configs require ``scale`` (2, 3 or 4) and accept ``res_scale``, ``global_residual``,
``tail_init_scale``, ``img_range``, ``rgb_mean``; the presets fix ``num_feat`` / ``num_block``
(use ``edsr`` for other sizes). DRN configs accept ``in_ch``, ``num_feat``, ``emb_dim``, ``depth``,
``highpass``, ``highpass_gain``. Unknown keys are errors (they are usually typos).

Every built model carries ``model.arch_cfg``: the full resolved dict (name plus every constructor
argument), JSON-serialisable, so that ``build_arch(model.arch_cfg)`` rebuilds the same architecture
and checkpoints can store their recipe next to the weights.
"""

from __future__ import annotations

import copy
import numbers
from typing import Any

import torch
from torch import nn

from drtl.archs.drn import DRNEncoder
from drtl.archs.edsr import EDSR, RGB_MEAN, VALID_SCALES
from drtl.errors import ConfigError

_EDSR_DEFAULTS: dict[str, Any] = {
    "res_scale": 1.0,
    "global_residual": True,
    "tail_init_scale": 0.1,
    "img_range": 1.0,
    "rgb_mean": list(RGB_MEAN),
}
_EDSR_PRESETS: dict[str, dict[str, int] | None] = {
    "edsr_tiny": {"num_feat": 32, "num_block": 4},
    "edsr_baseline": {"num_feat": 64, "num_block": 16},
    "edsr": None,  # explicit num_feat / num_block
}
_DRN_DEFAULTS: dict[str, Any] = {
    "in_ch": 3,
    "num_feat": 32,
    "emb_dim": 64,
    "depth": 4,
    "highpass": True,
    "highpass_gain": 4.0,
    "reference": False,  # True: embed LR/HR pairs (LR + HR downscaled to LR size), drtl.archs.drn
    "reference_gain": 4.0,
    "reference_match": False,  # True: the reference gets the LR patch's per-channel mean / std first
}
_NAMES = ("edsr_tiny", "edsr_baseline", "edsr", "drn")


def arch_names() -> list[str]:
    """The names ``build_arch`` accepts."""
    return list(_NAMES)


def _pos_int(name: str, key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"arch '{name}': '{key}' must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _number(name: str, key: str, value: Any, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or (positive and not value > 0):
        kind = "a positive number" if positive else "a number"
        raise ConfigError(f"arch '{name}': '{key}' must be {kind}, got {value!r}")
    return float(value)


def _flag(name: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"arch '{name}': '{key}' must be true or false, got {value!r}")
    return value


def _check_keys(name: str, cfg: dict, allowed: set[str]) -> None:
    unknown = sorted(set(cfg) - allowed - {"name"})
    if unknown:
        raise ConfigError(f"arch '{name}': unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def resolve_arch_cfg(cfg: dict) -> dict:
    """Validate ``cfg`` and fill in defaults; returns a new dict. Raises ConfigError (one line)."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"arch config must be a mapping with a 'name' (one of {', '.join(_NAMES)}), got {type(cfg).__name__}")
    name = cfg.get("name")
    if name not in _NAMES:
        raise ConfigError(f"unknown arch name {name!r}; valid names: {', '.join(_NAMES)}")

    if name == "drn":
        _check_keys(name, cfg, set(_DRN_DEFAULTS))
        out = {"name": name, **_DRN_DEFAULTS, **{k: v for k, v in cfg.items() if k != "name"}}
        for key in ("in_ch", "num_feat", "emb_dim"):
            out[key] = _pos_int(name, key, out[key])
        out["depth"] = _pos_int(name, "depth", out["depth"], minimum=0)
        out["highpass"] = _flag(name, "highpass", out["highpass"])
        out["highpass_gain"] = _number(name, "highpass_gain", out["highpass_gain"])
        out["reference"] = _flag(name, "reference", out["reference"])
        out["reference_gain"] = _number(name, "reference_gain", out["reference_gain"])
        out["reference_match"] = _flag(name, "reference_match", out["reference_match"])
        return out

    preset = _EDSR_PRESETS[name]
    size_keys = {"num_feat", "num_block"}
    allowed = {"scale", *_EDSR_DEFAULTS} | size_keys
    # a preset's resolved config (model.arch_cfg) repeats its sizes: accept them when they agree
    if preset is not None and any(k in cfg and cfg[k] != preset[k] for k in size_keys):
        raise ConfigError(
            f"arch '{name}' fixes num_feat={preset['num_feat']}, num_block={preset['num_block']}; "
            "use name 'edsr' for other sizes"
        )
    _check_keys(name, cfg, allowed)
    if "scale" not in cfg:
        raise ConfigError(f"arch '{name}': 'scale' is required (one of {', '.join(map(str, VALID_SCALES))})")
    scale = cfg["scale"]
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or scale not in VALID_SCALES:
        raise ConfigError(f"arch '{name}': scale must be one of {', '.join(map(str, VALID_SCALES))}, got {scale!r}")
    if preset is None:
        missing = sorted(size_keys - set(cfg))
        if missing:
            raise ConfigError(f"arch 'edsr' needs explicit {missing} (or use edsr_tiny / edsr_baseline)")
        sizes = {"num_feat": cfg["num_feat"], "num_block": cfg["num_block"]}
    else:
        sizes = dict(preset)
    out = {"name": name, "scale": int(scale), **sizes, **copy.deepcopy(_EDSR_DEFAULTS)}
    out.update({k: v for k, v in cfg.items() if k not in ("name", "scale", *size_keys)})
    out["num_feat"] = _pos_int(name, "num_feat", out["num_feat"])
    out["num_block"] = _pos_int(name, "num_block", out["num_block"], minimum=0)
    out["res_scale"] = _number(name, "res_scale", out["res_scale"])
    out["global_residual"] = _flag(name, "global_residual", out["global_residual"])
    out["tail_init_scale"] = _number(name, "tail_init_scale", out["tail_init_scale"])
    out["img_range"] = _number(name, "img_range", out["img_range"], positive=True)
    mean = out["rgb_mean"]
    if (
        not isinstance(mean, (list, tuple))
        or len(mean) != 3
        or not all(isinstance(m, numbers.Real) and not isinstance(m, bool) for m in mean)
    ):
        raise ConfigError(f"arch '{name}': 'rgb_mean' must be a list of 3 numbers, got {mean!r}")
    out["rgb_mean"] = [float(m) for m in mean]
    return out


def build_arch(cfg: dict, *, generator: torch.Generator | None = None) -> nn.Module:
    """Build a model from a config dict such as ``{"name": "edsr_tiny", "scale": 2}``,
    ``{"name": "edsr", "num_feat": 48, "num_block": 6, "scale": 3}`` or ``{"name": "drn", "emb_dim": 64}``.

    ``generator`` (optional torch.Generator) makes the initial weights reproducible. The model is
    on CPU in float32; move it with ``.to(device)``. ``model.arch_cfg`` holds the resolved config.
    """
    rcfg = resolve_arch_cfg(cfg)
    kwargs = {k: v for k, v in rcfg.items() if k != "name"}
    if rcfg["name"] == "drn":
        model: nn.Module = DRNEncoder(**kwargs, generator=generator)
    else:
        kwargs["rgb_mean"] = tuple(kwargs["rgb_mean"])
        model = EDSR(**kwargs, generator=generator)
    model.arch_cfg = copy.deepcopy(rcfg)
    return model
