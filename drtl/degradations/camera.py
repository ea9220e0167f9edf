"""A camera-like *target* degradation for the built-in sample dataset (not an auxiliary task).

Pipeline (HR uint8 -> LR uint8, LR exactly ``(H//s, W//s, 3)`` after mod-crop):

1. lens blur in HR space: anisotropic Gaussian PSF convolved with a small defocus disk;
2. sensor sampling: area (box) downscale by ``scale``;
3. inverse tone curve (sRGB -> linear) and inverse white balance;
4. Bayer RGGB mosaic;
5. Poisson-Gaussian noise (shot + read) on the raw values;
6. bilinear demosaic (normalised convolution), white balance, forward tone curve (linear -> sRGB);
7. mild denoising smear: Gaussian on chroma (strong) and luma (weak), in YCbCr (BT.601);
8. unsharp-mask sharpening of luma (halos);
9. JPEG at ``jpeg_quality``.

Blur sizes in :class:`CameraParams` are in LR pixels (multiplied by ``scale`` in HR space), so the
look is similar for every scale. Only step 5 draws from ``rng``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from drtl.degradations.jpeg import jpeg
from drtl.degradations.kernels import anisotropic_gaussian, apply_kernel, auto_size
from drtl.degradations.resize import resize
from drtl.errors import ConfigError, DataError


@dataclass(frozen=True)
class CameraParams:
    """Parameters of :func:`camera_degradation` (defaults: a mid-range phone camera at base ISO)."""

    lens_sigma_x: float = 0.55  # Gaussian PSF std along the major axis, LR pixels
    lens_sigma_y: float = 0.35  # ... minor axis, LR pixels
    lens_theta_deg: float = 30.0  # PSF orientation
    defocus_radius: float = 0.35  # pillbox radius, LR pixels (0 = off)
    wb_gains: tuple[float, float, float] = (1.9, 1.0, 1.5)  # R, G, B white-balance gains
    shot_noise: float = 0.0015  # Poisson gain: variance = shot_noise * raw (linear, [0, 1])
    read_noise: float = 0.002  # read-noise std (linear, [0, 1])
    chroma_denoise_sigma: float = 1.2  # Gaussian on Cb/Cr, LR pixels
    luma_denoise_sigma: float = 0.5  # Gaussian on Y, LR pixels (0 = off)
    sharpen_amount: float = 0.9  # unsharp-mask gain on Y
    sharpen_sigma: float = 1.2  # unsharp-mask radius, LR pixels
    jpeg_quality: int = 85

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "wb_gains":
                if len(v) != 3 or any((not isinstance(g, (int, float))) or g <= 0 for g in v):
                    raise ConfigError(f"camera wb_gains={v!r} must be three positive numbers (R, G, B)")
                object.__setattr__(self, "wb_gains", tuple(float(g) for g in v))
            elif f.name == "jpeg_quality":
                if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 100:
                    raise ConfigError(f"camera jpeg_quality={v!r} must be an integer in 1..100")
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"camera {f.name}={v!r} must be a finite number >= 0")
        if self.lens_sigma_x <= 0 or self.lens_sigma_y <= 0:
            raise ConfigError("camera lens_sigma_x and lens_sigma_y must be > 0")


# BT.601 full-range RGB <-> YCbCr (offsets omitted: they cancel)
_RGB2YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC2RGB = np.linalg.inv(_RGB2YCC)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB EOTF (inverse tone curve), float [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """sRGB OETF (forward tone curve), float [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def _pillbox(radius: float) -> np.ndarray:
    """Anti-aliased disk kernel (8x supersampled), odd size, sums to 1."""
    half = int(math.ceil(radius - 0.5)) if radius > 0.5 else 0
    size = 2 * half + 1
    sub = 8
    offs = (np.arange(size * sub) + 0.5) / sub - size / 2.0
    yy, xx = np.meshgrid(offs, offs, indexing="ij")
    inside = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    k = inside.reshape(size, sub, size, sub).mean(axis=(1, 3))
    if k.sum() <= 0:
        k = np.zeros((size, size))
        k[half, half] = 1.0
    return k / k.sum()


def _lens_psf(params: CameraParams, scale: int) -> np.ndarray:
    sx, sy = params.lens_sigma_x * scale, params.lens_sigma_y * scale
    psf = anisotropic_gaussian(auto_size(max(sx, sy)), sx, sy, math.radians(params.lens_theta_deg))
    r = params.defocus_radius * scale
    if r > 0.5:
        disk = _pillbox(r)
        pad = disk.shape[0] // 2
        psf = ndimage.convolve(np.pad(psf, pad), disk, mode="constant")
        psf = psf / psf.sum()
    return psf


def _mosaic_masks(h: int, w: int) -> np.ndarray:
    """(H, W, 3) boolean RGGB masks."""
    m = np.zeros((h, w, 3), dtype=bool)
    m[0::2, 0::2, 0] = True
    m[0::2, 1::2, 1] = True
    m[1::2, 0::2, 1] = True
    m[1::2, 1::2, 2] = True
    return m


_K_G = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float64) / 4
_K_RB = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float64) / 4


def bilinear_demosaic(raw: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Bilinear demosaic of a single-plane raw image by normalised convolution (handles borders)."""
    out = np.empty(masks.shape, dtype=np.float64)
    for c, k in enumerate((_K_RB, _K_G, _K_RB)):
        m = masks[:, :, c].astype(np.float64)
        num = ndimage.convolve(raw * m, k, mode="mirror")
        den = ndimage.convolve(m, k, mode="mirror")
        out[:, :, c] = num / np.maximum(den, 1e-12)
    return out


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(x, sigma, mode="mirror", truncate=3.0) if sigma > 0 else x


def camera_degradation(
    hr: np.ndarray,
    scale: int,
    rng: np.random.Generator,
    params: CameraParams | None = None,
    **overrides,
) -> np.ndarray:
    """Camera-like LR image (uint8, exactly ``(H//scale, W//scale, 3)``) of a clean HR uint8 image.

    ``params`` (a :class:`CameraParams`) and/or keyword ``overrides`` of its fields.
    """
    if params is None:
        params = CameraParams()
    if overrides:
        names = {f.name for f in dataclasses.fields(CameraParams)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise ConfigError(f"unknown camera parameter(s) {bad}; choose from {sorted(names)}")
        params = dataclasses.replace(params, **overrides)
    hr = np.asarray(hr)
    if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise DataError(f"camera_degradation expects an HWC RGB uint8 image, got {hr.dtype} {hr.shape}")
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ConfigError(f"scale {scale!r} must be a positive integer (e.g. 2, 3 or 4)")
    if not isinstance(rng, np.random.Generator):
        raise ConfigError("camera_degradation needs rng=numpy.random.default_rng(seed)")
    scale = int(scale)
    h, w = hr.shape[0] - hr.shape[0] % scale, hr.shape[1] - hr.shape[1] % scale
    if h < scale or w < scale:
        raise DataError(f"image of size {hr.shape[:2]} is smaller than scale {scale}")
    x = hr[:h, :w].astype(np.float64) / 255.0

    # 1-2: optics and sensor sampling
    x = apply_kernel(x, _lens_psf(params, scale))
    x = resize(x, (h // scale, w // scale), "area")
    # 3-5: raw domain
    gains = np.asarray(params.wb_gains)
    lin = srgb_to_linear(x) / gains
    masks = _mosaic_masks(*lin.shape[:2])
    raw = np.sum(lin * masks, axis=2)
    if params.shot_noise > 0:
        raw = rng.poisson(raw / params.shot_noise) * params.shot_noise
    if params.read_noise > 0:
        raw = raw + rng.normal(0.0, params.read_noise, raw.shape)
    raw = np.clip(raw, 0.0, 1.0)
    # 6: ISP
    rgb = linear_to_srgb(np.clip(bilinear_demosaic(raw, masks) * gains, 0.0, 1.0))
    # 7-8: denoise smear and sharpening in YCbCr
    ycc = rgb @ _RGB2YCC.T
    y = _gauss(ycc[:, :, 0], params.luma_denoise_sigma)
    if params.sharpen_amount > 0:
        y = y + params.sharpen_amount * (y - _gauss(y, params.sharpen_sigma))
    ycc = np.stack(
        [y, _gauss(ycc[:, :, 1], params.chroma_denoise_sigma), _gauss(ycc[:, :, 2], params.chroma_denoise_sigma)],
        axis=2,
    )
    rgb = np.clip(ycc @ _YCC2RGB.T, 0.0, 1.0)
    # 9: JPEG
    lr = jpeg(np.clip(np.floor(rgb * 255.0 + 0.5), 0, 255).astype(np.uint8), params.jpeg_quality)
    assert lr.shape == (h // scale, w // scale, 3)
    return lr


def camera_pair(
    hr: np.ndarray, scale: int, rng: np.random.Generator, params: CameraParams | None = None, **overrides
) -> tuple[np.ndarray, np.ndarray]:
    """``(lr_uint8, hr_uint8_modcropped)`` for the camera degradation."""
    lr = camera_degradation(hr, scale, rng, params, **overrides)
    return lr, np.ascontiguousarray(hr[: lr.shape[0] * scale, : lr.shape[1] * scale])
