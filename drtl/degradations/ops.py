"""Degradation ops: the steps of an auxiliary task recipe, and how a sequence of them runs.

An :class:`Op` is ``(kind, params)`` with ``params`` a sorted tuple of ``(key, value)`` pairs
(defaults filled in, so equal recipes compare and hash equal).

Op kinds and parameters:

- ``blur``: ``kernel`` in iso / aniso / gen_gauss / plateau / sinc, ``size`` (odd, 7..21) and the
  kernel's parameters (``sigma``; ``sigma_x, sigma_y, theta_deg``; ``sigma_x, beta[, sigma_y,
  theta_deg]``; ``omega_c``). See :func:`drtl.degradations.kernels.make_kernel`.
- ``resize``: ``mode`` in matlab / area / bilinear / bicubic and ``fraction`` in (0, 1] (default
  1): the share of the total downscale, in log scale, done by this op. The fractions of a recipe
  sum to 1 and the last resize lands exactly on ``(H/scale, W/scale)``, so there is one total
  downscale. A recipe without a resize op gets a MATLAB-bicubic downscale after its leading blurs.
- ``noise``: ``type`` gaussian / poisson, ``level`` (Gaussian sigma in 0-255 units, or the Poisson
  scale), ``gray`` (bool).
- ``jpeg``: ``quality`` 1..100.
- ``rescale``, ``defocus``, ``shift``, ``mosaic``, ``denoise``, ``sharpen``, ``tone``, ``color``:
  camera-pipeline and capture-chain steps, see :mod:`drtl.degradations.isp` (parameters and
  bounds in ``isp.SPECS``).

A numeric parameter is either a scalar (fixed) or a ``[lo, hi]`` range (a 2-list in YAML, a
2-tuple here), drawn uniformly from the rng for each realisation (each pair) when the op runs
(``jpeg`` quality: an integer in ``lo..hi``). Ranges are allowed on every numeric parameter except
the kernel ``size`` and the resize ``fraction``; both ends are validated. Ops without ranges draw
nothing, so the fixed recipes give the same pairs as before ranges existed; noise (and the raw
noise of ``mosaic``) draws from the rng as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

import numpy as np

import drtl.degradations.isp as _isp
import drtl.degradations.kernels as _kernels
import drtl.degradations.noise as _noise
from drtl.degradations.jpeg import jpeg as _jpeg_fn
from drtl.degradations.resize import RESIZE_MODES, resize
from drtl.errors import ConfigError, DataError

OP_KINDS = ("blur", "resize", "noise", "jpeg", *_isp.SPECS)
NOISE_TYPES = ("gaussian", "poisson")

_BLUR_KEYS = {
    "iso": ({"sigma"}, set()),
    "aniso": ({"sigma_x", "sigma_y"}, {"theta_deg"}),
    "gen_gauss": ({"sigma_x", "beta"}, {"sigma_y", "theta_deg"}),
    "plateau": ({"sigma_x", "beta"}, {"sigma_y", "theta_deg"}),
    "sinc": ({"omega_c"}, set()),
}


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, lists -> tuples (for hashing and YAML)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _number(kind: str, key: str, value: Any, lo: float | None = None, hi: float | None = None,
            integer: bool = False) -> Any:
    """A scalar (returned as given) or a ``(lo, hi)`` range, every value within ``[lo, hi]``."""
    what = "an integer" if integer else "a finite number"
    ok = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if integer else _is_number
    if isinstance(value, tuple):
        if len(value) != 2 or not all(ok(v) for v in value) or value[0] > value[1]:
            raise ConfigError(f"{kind} op: {key}={list(value)!r} must be {what} or a [lo, hi] range with lo <= hi")
        ends = value
    elif ok(value):
        ends = (value,)
    else:
        raise ConfigError(f"{kind} op: {key}={value!r} must be {what} or a [lo, hi] range")
    if any((lo is not None and v < lo) or (hi is not None and v > hi) for v in ends):
        bounds = f">= {lo}" if hi is None else (f"<= {hi}" if lo is None else f"in [{lo}, {hi}]")
        raise ConfigError(f"{kind} op: {key}={_show(value)} is out of bounds; use values {bounds}")
    return value


def _show(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _end(params: dict, i: int) -> dict:
    """The params with every range replaced by its ``i``-th end (0 = lo, 1 = hi)."""
    return {k: (v[i] if isinstance(v, tuple) else v) for k, v in params.items()}


def _check_spec(kind: str, p: dict) -> dict:
    """Validate a camera/capture op (:data:`drtl.degradations.isp.SPECS`), defaults filled."""
    spec = _isp.SPECS[kind]
    extra = sorted(set(p) - set(spec))
    if extra:
        raise ConfigError(f"{kind} op: unknown parameter(s) {extra}; allowed {sorted(spec)}")
    for key, rule in spec.items():
        if key not in p:
            if rule[0] is _isp.REQUIRED:
                raise ConfigError(f"{kind} op: missing parameter {key!r}")
            p[key] = rule[0]
        if len(rule) == 2:
            if isinstance(p[key], (bool, tuple)) or p[key] not in rule[1]:
                raise ConfigError(f"{kind} op: {key}={_show(p[key])}; choose one of {', '.join(map(str, rule[1]))}")
        else:
            p[key] = _number(kind, key, p[key], rule[1], rule[2])
    return p


@dataclass(frozen=True)
class Op:
    """One degradation step: ``kind`` plus sorted ``(key, value)`` params (validated, defaults filled)."""

    kind: str
    params: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.kind not in OP_KINDS:
            raise ConfigError(f"unknown op kind {self.kind!r}; choose one of {', '.join(OP_KINDS)}")
        raw = dict(self.params) if not isinstance(self.params, dict) else dict(self.params)
        params = {str(k): _plain(v) for k, v in raw.items()}
        check = getattr(self, f"_check_{self.kind}", None)
        params = check(params) if check else _check_spec(self.kind, params)
        object.__setattr__(self, "params", tuple(sorted(params.items())))

    # -- validation per kind (returns params with defaults filled)
    @staticmethod
    def _check_blur(p: dict) -> dict:
        kernel = p.get("kernel")
        if kernel not in _BLUR_KEYS:
            raise ConfigError(f"blur op: kernel={kernel!r}; choose one of {', '.join(_BLUR_KEYS)}")
        required, optional = _BLUR_KEYS[kernel]
        allowed = required | optional | {"kernel", "size"}
        missing = sorted((required | {"size"}) - set(p))
        if missing:
            raise ConfigError(f"blur op ({kernel}): missing parameter(s) {missing}")
        extra = sorted(set(p) - allowed)
        if extra:
            raise ConfigError(f"blur op ({kernel}): unknown parameter(s) {extra}; allowed {sorted(allowed)}")
        _kernels._check_size(p["size"])
        p["size"] = int(p["size"])
        for key in set(p) - {"kernel", "size"}:
            p[key] = _number("blur", key, p[key])
        if kernel in ("aniso", "gen_gauss", "plateau"):
            p.setdefault("theta_deg", 0.0)
        if kernel in ("gen_gauss", "plateau"):
            p.setdefault("sigma_y", p["sigma_x"])
        for i in (0, 1):  # raises ConfigError on bad values (both ends of every range)
            _kernel_cached(tuple(sorted(_end(p, i).items())))
        return p

    @staticmethod
    def _check_resize(p: dict) -> dict:
        extra = sorted(set(p) - {"mode", "fraction"})
        if extra:
            raise ConfigError(f"resize op: unknown parameter(s) {extra}; allowed ['fraction', 'mode']")
        p.setdefault("mode", "matlab")
        p.setdefault("fraction", 1.0)
        if p["mode"] not in RESIZE_MODES:
            raise ConfigError(f"resize op: mode={p['mode']!r}; choose one of {', '.join(RESIZE_MODES)}")
        if isinstance(p["fraction"], tuple):
            raise ConfigError(f"resize op: fraction={_show(p['fraction'])} must be fixed (the fractions sum to 1)")
        frac = _number("resize", "fraction", p["fraction"])
        if not 0 < frac <= 1:
            raise ConfigError(f"resize op: fraction={frac!r} must be in (0, 1]")
        p["fraction"] = float(frac)
        return p

    @staticmethod
    def _check_noise(p: dict) -> dict:
        extra = sorted(set(p) - {"type", "level", "gray"})
        if extra:
            raise ConfigError(f"noise op: unknown parameter(s) {extra}; allowed ['gray', 'level', 'type']")
        if p.get("type") not in NOISE_TYPES:
            raise ConfigError(f"noise op: type={p.get('type')!r}; choose one of {', '.join(NOISE_TYPES)}")
        if "level" not in p:
            raise ConfigError("noise op: missing parameter 'level' (Gaussian sigma in 0-255 or Poisson scale)")
        p["level"] = _number("noise", "level", p["level"], lo=0)
        p.setdefault("gray", False)
        if not isinstance(p["gray"], bool):
            raise ConfigError(f"noise op: gray={p['gray']!r} must be true or false")
        return p

    @staticmethod
    def _check_jpeg(p: dict) -> dict:
        extra = sorted(set(p) - {"quality"})
        if extra:
            raise ConfigError(f"jpeg op: unknown parameter(s) {extra}; allowed ['quality']")
        if "quality" not in p:
            raise ConfigError("jpeg op: missing parameter 'quality' (an integer in 1..100)")
        p["quality"] = _number("jpeg", "quality", p["quality"], 1, 100, integer=True)
        return p

    # -- access and serialisation
    @property
    def p(self) -> dict[str, Any]:
        """Params as a dict."""
        return dict(self.params)

    @property
    def ranged(self) -> bool:
        """Whether some parameter is a ``(lo, hi)`` range drawn per realisation."""
        return any(isinstance(v, tuple) for _, v in self.params)

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        """Params for one realisation: each range drawn uniformly (in sorted key order); no draw
        without ranges."""
        p = dict(self.params)
        for key, v in self.params:
            if isinstance(v, tuple):
                p[key] = int(rng.integers(v[0], v[1] + 1)) if self.kind == "jpeg" else float(rng.uniform(*v))
        return p

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in self.params}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Op":
        if not isinstance(d, dict) or "kind" not in d:
            raise ConfigError(f"op {d!r} must be a mapping with a 'kind' key")
        d = dict(d)
        return cls(d.pop("kind"), tuple(d.items()))

    def kernel(self) -> np.ndarray:
        """The blur kernel of a ``blur`` op (cached, read-only)."""
        if self.kind != "blur":
            raise ConfigError(f"{self.kind} op has no kernel")
        if self.ranged:
            raise ConfigError("a blur op with parameter ranges has no fixed kernel; draw(rng) its params")
        return _kernel_cached(self.params)


@lru_cache(maxsize=512)
def _kernel_cached(params: tuple[tuple[str, Any], ...]) -> np.ndarray:
    p = dict(params)
    kernel_type, size = p.pop("kernel"), p.pop("size")
    k = _kernels.make_kernel(kernel_type, size, **p)
    k.setflags(write=False)
    return k


def blur_op(kernel: str, size: int | None = None, **params) -> Op:
    """``blur`` op; ``size`` defaults to an odd size covering +-3 sigma (the top of a range; clipped
    to 7..21)."""
    if size is None:
        top = lambda v: max(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
        sig = max(float(top(params.get(k, 0.0))) for k in ("sigma", "sigma_x", "sigma_y")) if kernel != "sinc" else 0
        size = 21 if kernel == "sinc" else _kernels.auto_size(sig)
    return Op("blur", tuple({"kernel": kernel, "size": size, **params}.items()))


def resize_op(mode: str = "matlab", fraction: float = 1.0) -> Op:
    return Op("resize", (("mode", mode), ("fraction", fraction)))


def noise_op(type: str, level: float, gray: bool = False) -> Op:  # noqa: A002 - recipe vocabulary
    return Op("noise", (("type", type), ("level", level), ("gray", gray)))


def jpeg_op(quality) -> Op:
    return Op("jpeg", (("quality", quality),))


def isp_op(kind: str, **params) -> Op:
    """A camera/capture op (``rescale``, ``defocus``, ``shift``, ``mosaic``, ``denoise``,
    ``sharpen``, ``tone``, ``color``); any numeric parameter may be a ``[lo, hi]`` range."""
    if kind not in _isp.SPECS:
        raise ConfigError(f"isp_op: kind={kind!r}; choose one of {', '.join(_isp.SPECS)}")
    return Op(kind, tuple(params.items()))


# ----------------------------------------------------------------------------- execution


def check_scale(scale) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ConfigError(f"scale {scale!r} must be a positive integer (e.g. 2, 3 or 4)")
    return int(scale)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] rounded half up to uint8 (MATLAB's im2uint8)."""
    return np.clip(np.floor(x * 255.0 + 0.5), 0, 255).astype(np.uint8)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop bottom/right so that height and width are multiples of ``scale``."""
    scale = check_scale(scale)
    h, w = img.shape[:2]
    h, w = h - h % scale, w - w % scale
    if h < scale or w < scale:
        raise DataError(f"image of size {img.shape[:2]} is smaller than scale {scale}; use a larger image")
    return img[:h, :w]


def apply_ops(
    img: np.ndarray, ops: Iterable[Op], scale: int, rng: np.random.Generator, quantised: bool = False
) -> np.ndarray:
    """Run ``ops`` on a float HWC image whose sides are multiples of ``scale``; float64 out.

    Resize ops downscale by ``scale ** fraction``; the last one lands exactly on (H/scale, W/scale).
    ``quantised=True`` says the input holds exact 8-bit values (``uint8 / 255``): while the image
    is still 8-bit (before any blur/noise, or right after JPEG) a ``matlab`` resize runs MATLAB's
    uint8 path, so e.g. ``clean_bicubic`` reproduces the standard MATLAB bicubic LR files exactly.
    """
    scale = check_scale(scale)
    x = np.asarray(img, dtype=np.float64)
    h, w = x.shape[:2]
    if h % scale or w % scale:
        raise DataError(f"image size {x.shape[:2]} is not a multiple of scale {scale}; mod-crop it first")
    ops = tuple(ops)
    total = sum(op.p["fraction"] for op in ops if op.kind == "resize")
    done = 0.0
    for op in ops:
        p = op.draw(rng) if op.ranged else op.p
        if op.kind == "blur":
            kernel = op.kernel() if not op.ranged else _kernels.make_kernel(p.pop("kernel"), p.pop("size"), **p)
            x = _kernels.apply_kernel(x, kernel)
            quantised = False
        elif op.kind == "resize":
            done += p["fraction"]
            if math.isclose(done, total, abs_tol=1e-6):
                target = (h // scale, w // scale)
            else:
                f = scale ** (done / total)
                target = (max(1, round(h / f)), max(1, round(w / f)))
            if quantised and p["mode"] == "matlab":
                u8 = to_uint8(x)
                x = resize(u8, target, "matlab").astype(np.float64) / 255.0
            else:
                x = resize(x, target, p["mode"])
                quantised = False
        elif op.kind == "noise":
            fn = _noise.gaussian_noise if p["type"] == "gaussian" else _noise.poisson_noise
            x = fn(x, p["level"], p["gray"], rng)
            quantised = False
        elif op.kind == "jpeg":
            x = _jpeg_fn(np.clip(x, 0.0, 1.0), p["quality"])
            quantised = True
        elif op.kind == "phone":  # HR -> LR in one op: the camera simulator downscales by scale itself
            x = _isp.phone(x, rng, scale, **p)
            quantised = True
        else:
            x = _isp.OPS[op.kind](x, rng, **p)
            quantised = False
    return x
