"""PSNR and SSIM exactly as the super-resolution literature reports them.

The numbers match BasicSR's ``calculate_psnr`` / ``calculate_ssim`` with ``test_y_channel=True``
(which in turn match the MATLAB tables of EDSR, RCAN, RealSR, ...):

* images are HWC RGB, ``uint8`` (canonical) or float in [0, 1] (scaled by 255, not rounded);
* ``crop_border`` pixels are removed on every side before anything else;
* ``y_channel=True``: the BT.601 luma of :func:`rgb_to_y` (16-235 range), in 0-255 units;
  ``y_channel=False``: the three RGB channels (SSIM = mean of the per-channel SSIMs);
* everything is computed in float64 in the 0-255 range, peak 255;
* SSIM (Wang et al. 2004): 11x11 Gaussian window (sigma 1.5, normalised to sum 1),
  C1 = (0.01*255)^2, C2 = (0.03*255)^2, 'valid' filtering (only windows fully inside the image,
  i.e. the SSIM map is 10 pixels smaller than the image in each dimension), mean of the map.

Differences from BasicSR, all below 1e-4 dB / 1e-6 SSIM: BasicSR converts to Y in float32, this
module in float64; BasicSR uses ``cv2.filter2D`` + ``[5:-5, 5:-5]`` cropping, this module a separable
'valid' correlation with the same window (the cropped result does not depend on cv2's border mode).

Relation to scikit-image: ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=255)`` uses a Gaussian truncated at 3.5 sigma,
i.e. the same 11-tap window, filters with reflect padding and then averages the SSIM map after
cropping (win_size - 1) // 2 = 5 pixels per side -- exactly the 'valid' region. The two therefore
agree to floating-point precision (see ``tests/test_metrics.py``); the default skimage call
(uniform 7x7 window, sample covariance) does *not* give literature numbers.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["rgb_to_y", "psnr", "ssim", "gaussian_window"]

# BT.601 "studio swing" luma coefficients for RGB in [0, 1] -> Y in [16, 235] (MATLAB rgb2ycbcr).
_Y_COEFFS = np.array([65.481, 128.553, 24.966], dtype=np.float64)

_SSIM_K1 = 0.01
_SSIM_K2 = 0.03
_SSIM_WIN = 11
_SSIM_SIGMA = 1.5


def _to_float01(img: np.ndarray, name: str = "img") -> np.ndarray:
    """uint8 (0-255) or float ([0, 1]) array -> float64 in [0, 1] (no rounding, no clipping)."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float64)
    raise ValueError(f"{name}: expected uint8 (0-255) or float (0-1) image, got dtype {img.dtype}")


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma (MATLAB ``rgb2ycbcr`` Y channel) of an HWC RGB image.

    ``img``: HxWx3 RGB, ``uint8`` in 0-255 or float in [0, 1].
    Returns float64 HxW in [16/255, 235/255]:  Y = (65.481 R + 128.553 G + 24.966 B + 16) / 255
    with R, G, B in [0, 1]. Multiply by 255 for the 0-255 units the metrics use.
    """
    arr = _to_float01(img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"rgb_to_y: expected an HxWx3 RGB image, got shape {arr.shape}")
    return (arr @ _Y_COEFFS + 16.0) / 255.0


def _prepare(img1: np.ndarray, img2: np.ndarray, crop_border: int, y_channel: bool, fn: str):
    """Validate, crop and convert both images to float64 HxWxC in 0-255 units."""
    a = np.asarray(img1)
    b = np.asarray(img2)
    if a.shape != b.shape:
        raise ValueError(f"{fn}: image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3)):
        raise ValueError(f"{fn}: expected HxW, HxWx1 or HxWx3 images, got shape {a.shape}")
    if isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer)) or crop_border < 0:
        raise ValueError(f"{fn}: crop_border must be a non-negative int, got {crop_border!r}")
    crop_border = int(crop_border)
    h, w = a.shape[:2]
    if 2 * crop_border >= h or 2 * crop_border >= w:
        raise ValueError(f"{fn}: crop_border={crop_border} leaves nothing of a {h}x{w} image")
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border, ...]
        b = b[crop_border:-crop_border, crop_border:-crop_border, ...]
    fa = _to_float01(a, f"{fn}: img1")
    fb = _to_float01(b, f"{fn}: img2")
    if fa.ndim == 2:
        fa, fb = fa[..., None], fb[..., None]
    if y_channel and fa.shape[2] == 3:
        # single-channel input is taken as luma already (as BasicSR's to_y_channel does)
        fa, fb = rgb_to_y(fa)[..., None], rgb_to_y(fb)[..., None]
    return fa * 255.0, fb * 255.0


def psnr(img1: np.ndarray, img2: np.ndarray, crop_border: int, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB (peak 255) of two HWC RGB images (uint8 or float [0, 1]).

    ``crop_border`` pixels are removed on each side (the SR convention is ``crop_border = scale``).
    ``y_channel=True`` compares the BT.601 luma, ``False`` all RGB channels. Identical images give
    ``float('inf')``. Raises ``ValueError`` if the shapes differ.
    """
    a, b = _prepare(img1, img2, crop_border, y_channel, "psnr")
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(255.0 * 255.0 / mse)


def gaussian_window(size: int = _SSIM_WIN, sigma: float = _SSIM_SIGMA) -> np.ndarray:
    """1-D Gaussian taps normalised to sum 1 (what ``cv2.getGaussianKernel(size, sigma)`` returns)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _valid_filter(img: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D array with the outer product of ``taps`` with itself."""
    k = taps.size
    h, w = img.shape
    out_h = np.zeros((h - k + 1, w), dtype=np.float64)
    for i, t in enumerate(taps):
        out_h += t * img[i : i + h - k + 1, :]
    out = np.zeros((h - k + 1, w - k + 1), dtype=np.float64)
    for j, t in enumerate(taps):
        out += t * out_h[:, j : j + w - k + 1]
    return out


def _ssim_single(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two 2-D float64 arrays in 0-255 units (BasicSR ``_ssim``)."""
    c1 = (_SSIM_K1 * 255.0) ** 2
    c2 = (_SSIM_K2 * 255.0) ** 2
    taps = gaussian_window()
    mu1 = _valid_filter(a, taps)
    mu2 = _valid_filter(b, taps)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = _valid_filter(a * a, taps) - mu1_sq
    sigma2_sq = _valid_filter(b * b, taps) - mu2_sq
    sigma12 = _valid_filter(a * b, taps) - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return float(ssim_map.mean())


def ssim(img1: np.ndarray, img2: np.ndarray, crop_border: int, y_channel: bool = True) -> float:
    """Structural similarity (Wang et al. 2004, BasicSR/MATLAB settings) of two HWC RGB images.

    Inputs as for :func:`psnr`. After cropping, each side must be at least 11 pixels (one full
    SSIM window). ``y_channel=False`` returns the mean of the three per-channel SSIMs.
    Identical images give exactly 1.0.
    """
    a, b = _prepare(img1, img2, crop_border, y_channel, "ssim")
    h, w = a.shape[:2]
    if h < _SSIM_WIN or w < _SSIM_WIN:
        raise ValueError(f"ssim: images must be at least {_SSIM_WIN}x{_SSIM_WIN} after cropping, got {h}x{w}")
    if np.array_equal(a, b):
        return 1.0
    return float(np.mean([_ssim_single(a[..., c], b[..., c]) for c in range(a.shape[2])]))
