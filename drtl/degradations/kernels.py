"""Blur kernels (Real-ESRGAN families) and fast 2-D filtering.

Kernels follow Real-ESRGAN's ``basicsr/data/degradations.py``:

- :func:`isotropic_gaussian` / :func:`anisotropic_gaussian` (``bivariate_Gaussian``),
- :func:`generalized_gaussian` (``bivariate_generalized_Gaussian``, shape ``beta``),
- :func:`plateau` (``bivariate_plateau``, shape ``beta``),
- :func:`sinc` (``circular_lowpass_kernel``, cut-off ``omega_c`` in radians).

Every kernel is a float64 ``(size, size)`` array with odd ``size`` in 7..21 that sums to 1. Angles
``theta`` are in radians here (the task recipes in :mod:`drtl.degradations.tasks` store degrees).

:func:`apply_kernel` correlates each channel with the kernel using reflect-101 padding (the border
mode of OpenCV's ``filter2D`` used by Real-ESRGAN, numpy's ``"reflect"``, scipy.ndimage's
``"mirror"``). Rank-1 (separable) kernels are applied as two 1-D passes, others through an FFT.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft, ndimage, special

from drtl.errors import ConfigError

MIN_KERNEL_SIZE = 7
MAX_KERNEL_SIZE = 21
KERNEL_TYPES = ("iso", "aniso", "gen_gauss", "plateau", "sinc")


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size % 2 == 0 or not (
        MIN_KERNEL_SIZE <= size <= MAX_KERNEL_SIZE
    ):
        raise ConfigError(
            f"kernel size {size!r} is invalid; use an odd integer in {MIN_KERNEL_SIZE}..{MAX_KERNEL_SIZE}"
        )
    return int(size)


def _check_positive(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"kernel parameter {name}={value!r} must be a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"kernel parameter {name}={value!r} must be a finite number > 0")
    return value


def _grid(size: int) -> np.ndarray:
    """(size, size, 2) grid of (x, y) offsets from the centre (Real-ESRGAN ``mesh_grid``)."""
    ax = np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)
    xx, yy = np.meshgrid(ax, ax)
    return np.stack([xx, yy], axis=-1)


def _sigma_matrix(sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    d = np.diag([sigma_x**2, sigma_y**2])
    u = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return u @ d @ u.T


def _quad_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """x^T Sigma^-1 x on the grid."""
    grid = _grid(size)
    inv = np.linalg.inv(_sigma_matrix(sigma_x, sigma_y, theta))
    return np.sum((grid @ inv) * grid, axis=-1)


def _normalise(kernel: np.ndarray) -> np.ndarray:
    total = kernel.sum()
    if not np.isfinite(total) or total <= 0:
        raise ConfigError("kernel parameters give a degenerate kernel (sum <= 0); use a larger sigma")
    return kernel / total


def isotropic_gaussian(size: int, sigma: float) -> np.ndarray:
    """Isotropic Gaussian ``exp(-|x|^2 / (2 sigma^2))``, normalised."""
    size = _check_size(size)
    sigma = _check_positive("sigma", sigma)
    return _normalise(np.exp(-0.5 * _quad_form(size, sigma, sigma, 0.0)))


def anisotropic_gaussian(size: int, sigma_x: float, sigma_y: float, theta: float = 0.0) -> np.ndarray:
    """Anisotropic Gaussian with principal std devs ``sigma_x``, ``sigma_y`` rotated by ``theta`` rad."""
    size = _check_size(size)
    sx, sy = _check_positive("sigma_x", sigma_x), _check_positive("sigma_y", sigma_y)
    return _normalise(np.exp(-0.5 * _quad_form(size, sx, sy, float(theta))))


def generalized_gaussian(
    size: int, sigma_x: float, beta: float, sigma_y: float | None = None, theta: float = 0.0
) -> np.ndarray:
    """Generalised Gaussian ``exp(-0.5 * (x^T S^-1 x)^beta)`` (isotropic when ``sigma_y`` is None)."""
    size = _check_size(size)
    sx = _check_positive("sigma_x", sigma_x)
    sy = sx if sigma_y is None else _check_positive("sigma_y", sigma_y)
    beta = _check_positive("beta", beta)
    return _normalise(np.exp(-0.5 * np.power(_quad_form(size, sx, sy, float(theta)), beta)))


def plateau(size: int, sigma_x: float, beta: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """Plateau-shaped kernel ``1 / (1 + (x^T S^-1 x)^beta)`` (isotropic when ``sigma_y`` is None)."""
    size = _check_size(size)
    sx = _check_positive("sigma_x", sigma_x)
    sy = sx if sigma_y is None else _check_positive("sigma_y", sigma_y)
    beta = _check_positive("beta", beta)
    return _normalise(np.reciprocal(np.power(_quad_form(size, sx, sy, float(theta)), beta) + 1.0))


def sinc(size: int, omega_c: float) -> np.ndarray:
    """2-D circular low-pass (sinc / Airy) kernel with cut-off ``omega_c`` in (0, pi] radians."""
    size = _check_size(size)
    omega_c = _check_positive("omega_c", omega_c)
    if omega_c > math.pi + 1e-12:
        raise ConfigError(f"sinc cut-off omega_c={omega_c} must be in (0, pi]")
    c = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    r = np.sqrt((x - c) ** 2 + (y - c) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = omega_c * special.j1(omega_c * r) / (2.0 * math.pi * r)
    kernel[size // 2, size // 2] = omega_c**2 / (4.0 * math.pi)
    return _normalise(kernel)


def auto_size(sigma: float, lo: int = MIN_KERNEL_SIZE, hi: int = MAX_KERNEL_SIZE) -> int:
    """Odd size covering +-3 sigma, clipped to ``lo..hi``."""
    size = 2 * int(math.ceil(3.0 * float(sigma))) + 1
    return int(min(max(size, lo), hi))


def make_kernel(kernel_type: str, size: int, **params) -> np.ndarray:
    """Build a kernel by family name (the form used by task recipes; ``theta_deg`` in degrees).

    ``iso``: sigma; ``aniso``: sigma_x, sigma_y, theta_deg; ``gen_gauss`` / ``plateau``: sigma_x,
    beta, optional sigma_y, theta_deg; ``sinc``: omega_c.
    """
    if kernel_type not in KERNEL_TYPES:
        raise ConfigError(f"unknown blur kernel type {kernel_type!r}; choose one of {', '.join(KERNEL_TYPES)}")
    params = dict(params)
    theta = math.radians(float(params.pop("theta_deg", 0.0)))
    try:
        if kernel_type == "iso":
            args = (params.pop("sigma"),)
            build = lambda: isotropic_gaussian(size, *args)  # noqa: E731
        elif kernel_type == "aniso":
            args = (params.pop("sigma_x"), params.pop("sigma_y"))
            build = lambda: anisotropic_gaussian(size, *args, theta)  # noqa: E731
        elif kernel_type in ("gen_gauss", "plateau"):
            fn = generalized_gaussian if kernel_type == "gen_gauss" else plateau
            args = (params.pop("sigma_x"), params.pop("beta"), params.pop("sigma_y", None))
            build = lambda: fn(size, *args, theta)  # noqa: E731
        else:  # sinc
            args = (params.pop("omega_c"),)
            build = lambda: sinc(size, *args)  # noqa: E731
    except KeyError as exc:
        raise ConfigError(f"blur kernel '{kernel_type}' needs parameter {exc.args[0]!r}") from None
    if params:
        raise ConfigError(f"blur kernel '{kernel_type}' got unknown parameters {sorted(params)}")
    return build()


def _separable(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(col, row) with kernel == outer(col, row) when the kernel is rank-1, else None."""
    u, s, vt = np.linalg.svd(kernel)
    if s[0] <= 0 or s[1] > 1e-12 * s[0]:
        return None
    root = math.sqrt(s[0])
    col, row = u[:, 0] * root, vt[0] * root
    if col.sum() < 0:
        col, row = -col, -row
    return col, row


def _fft_correlate(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Reflect-101 pad, then one batched real FFT over the channels (channel-first for speed)."""
    ph, pw = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(img.transpose(2, 0, 1), ((0, 0), (ph, ph), (pw, pw)), mode="reflect")
    hp, wp = padded.shape[1:]
    shape = (fft.next_fast_len(hp, True), fft.next_fast_len(wp, True))
    spec = fft.rfft2(padded, shape)
    spec *= fft.rfft2(kernel[::-1, ::-1], shape)
    full = fft.irfft2(spec, shape)
    # full convolution index i+2*ph corresponds to the centred correlation at output pixel i
    out = full[:, 2 * ph : hp, 2 * pw : wp]
    return np.ascontiguousarray(out.transpose(1, 2, 0))


def apply_kernel(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate each channel of a float image (HW or HWC) with ``kernel``; reflect-101 borders.

    Returns float64 with the input's shape (no clipping). Same result as OpenCV ``filter2D``.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ConfigError(f"kernel must be a 2-D array with odd sides, got shape {kernel.shape}")
    img = np.asarray(img, dtype=np.float64)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ConfigError(f"apply_kernel expects an HW or HWC image, got shape {img.shape}")
    sep = _separable(kernel)
    if sep is not None:
        col, row = sep
        out = ndimage.correlate1d(img, col, axis=0, mode="mirror")
        out = ndimage.correlate1d(out, row, axis=1, mode="mirror")
    else:
        out = _fft_correlate(img, kernel)
    return out[:, :, 0] if squeeze else out
