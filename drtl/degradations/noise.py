"""Additive noise (Real-ESRGAN style). Input uint8 or float [0, 1]; output float64 clipped to [0, 1].

- :func:`gaussian_noise`: ``img + N(0, (sigma/255)^2)``, per channel or, with ``gray=True``, one
  noise field shared by all channels (Real-ESRGAN ``generate_gaussian_noise``).
- :func:`poisson_noise`: Real-ESRGAN ``generate_poisson_noise``: the image is quantised to 8 bits,
  ``vals = 2 ** ceil(log2(#unique values))`` (256 for a natural image), the noise is
  ``Poisson(img * vals) / vals - img`` scaled by ``scale``; ``gray=True`` draws it on the BT.601 luma
  and adds the same field to every channel.

All randomness comes from the ``rng`` argument (``numpy.random.Generator``).
"""

from __future__ import annotations

import math

import numpy as np

from drtl.errors import ConfigError

_LUMA = np.array([0.299, 0.587, 0.114])


def _as_float(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    if not np.issubdtype(img.dtype, np.floating):
        raise ConfigError(f"noise expects uint8 or float [0, 1] pixels, got {img.dtype}")
    return img.astype(np.float64)


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ConfigError("noise needs rng=numpy.random.default_rng(seed) (a numpy Generator)")
    return rng


def _check_level(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"noise {name}={value!r} must be a number") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"noise {name}={value!r} must be a finite number >= 0")
    return value


def gaussian_noise(img: np.ndarray, sigma: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian noise of std ``sigma`` (0-255 units); ``gray`` shares it across channels."""
    sigma = _check_level("sigma", sigma)
    rng = _check_rng(rng)
    x = _as_float(img)
    if gray and x.ndim == 3:
        noise = rng.standard_normal(x.shape[:2])[:, :, None]
    else:
        noise = rng.standard_normal(x.shape)
    return np.clip(x + noise * (sigma / 255.0), 0.0, 1.0)


def poisson_noise(img: np.ndarray, scale: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Add Real-ESRGAN Poisson (shot) noise multiplied by ``scale``; ``gray`` uses luma noise."""
    scale = _check_level("scale", scale)
    rng = _check_rng(rng)
    x = _as_float(img)
    base = x @ _LUMA if (gray and x.ndim == 3) else x
    base = np.clip(np.round(base * 255.0), 0, 255) / 255.0
    vals = 2.0 ** math.ceil(math.log2(max(len(np.unique(base)), 1)))
    vals = max(vals, 2.0)
    noise = rng.poisson(base * vals) / vals - base
    if gray and x.ndim == 3:
        noise = noise[:, :, None]
    return np.clip(x + noise * scale, 0.0, 1.0)
