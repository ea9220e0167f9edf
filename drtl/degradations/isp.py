"""Camera-pipeline (ISP) and capture-chain steps: the image functions behind the op kinds
``rescale``, ``defocus``, ``shift``, ``mosaic``, ``denoise``, ``sharpen``, ``tone`` and ``color``
of :mod:`drtl.degradations.ops`, and their parameter specifications.

Every function takes a float HWC RGB image in [0, 1], the rng and the op's (drawn) parameters, and
returns float64 in [0, 1]. Sizes are in pixels of the image the op sees (HR pixels before the
recipe's resize, LR pixels after it). The colour conversions, Bayer masks, bilinear demosaic and
the disk PSF are those of the camera target degradation (:mod:`drtl.degradations.camera`).

- ``rescale``: resize by ``factor`` (relative to the current size; ``mode`` as the resize op), e.g.
  a zoom-lens focal-length mismatch or Real-ESRGAN's random intermediate resize. The next resize op
  still lands on its fixed target, so a rescale must be followed by one.
- ``defocus``: disk (pillbox) PSF of ``radius`` pixels, anti-aliased.
- ``shift``: sub-pixel translation by ``(dx, dy)`` pixels with spline interpolation of ``order`` 1
  (bilinear) or 3 (cubic), mirrored borders: misregistration and the resampling that aligns it.
- ``mosaic``: sRGB -> linear, RGGB Bayer sampling, Poisson-Gaussian raw noise (``shot`` gain:
  variance = shot * value; ``read`` std, linear units), demosaic (``bilinear`` normalised
  convolution, or ``mhc``: Malvar-He-Cutler 5x5 gradient-corrected), linear -> sRGB.
- ``denoise``: in YCbCr (BT.601): Gaussian smear of luma (``luma_sigma``) and chroma
  (``chroma_sigma``); ``range_sigma > 0`` makes the luma filter bilateral (edge-preserving,
  "waxy" texture loss) with that intensity range.
- ``sharpen``: unsharp mask of luma, ``y + amount * (y - G_radius * y)`` (detail below
  ``threshold`` untouched): the halos of phone sharpening.
- ``tone``: ``x ** gamma`` then an S-curve blended in by ``contrast`` (negative flattens).
- ``phone``: the whole camera simulator of :mod:`drtl.degradations.camera` (it downscales by the
  task's scale itself, so it is a recipe's first and only HR-space op); parameters are
  :class:`~drtl.degradations.camera.CameraParams`' fields, white balance as ``r_gain`` / ``b_gain``.
- ``color``: white-balance error (``r_gain``, ``b_gain`` relative to green) and ``saturation``
  about BT.601 luma.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from drtl.degradations.camera import (
    _RGB2YCC,
    _YCC2RGB,
    _gauss,
    _mosaic_masks,
    _pillbox,
    bilinear_demosaic,
    linear_to_srgb,
    srgb_to_linear,
)
from drtl.degradations.kernels import apply_kernel
from drtl.degradations.resize import RESIZE_MODES, resize

REQUIRED = object()  # spec default of a parameter without one

# kind -> parameter -> (default, lo, hi) for a number in [lo, hi] (a scalar or a [lo, hi] range
# sampled per realisation), or (default, choices) for a fixed choice.
SPECS: dict[str, dict[str, tuple]] = {
    "rescale": {"factor": (REQUIRED, 0.25, 4.0), "mode": ("bicubic", RESIZE_MODES)},
    "defocus": {"radius": (REQUIRED, 0.0, 10.0)},
    "shift": {"dx": (0.0, -4.0, 4.0), "dy": (0.0, -4.0, 4.0), "order": (3, (1, 3))},
    "mosaic": {"shot": (0.0, 0.0, 0.1), "read": (0.0, 0.0, 0.1), "demosaic": ("bilinear", ("bilinear", "mhc"))},
    "denoise": {"luma_sigma": (0.0, 0.0, 3.0), "chroma_sigma": (0.0, 0.0, 5.0), "range_sigma": (0.0, 0.0, 1.0)},
    "sharpen": {"amount": (REQUIRED, 0.0, 5.0), "radius": (1.0, 0.3, 5.0), "threshold": (0.0, 0.0, 0.5)},
    "tone": {"gamma": (1.0, 0.3, 3.0), "contrast": (0.0, -1.0, 1.0)},
    "color": {"r_gain": (1.0, 0.5, 2.0), "b_gain": (1.0, 0.5, 2.0), "saturation": (1.0, 0.0, 3.0)},
    # the whole phone simulator of drtl.degradations.camera (HR -> LR, it does the downscale itself);
    # defaults = camera.CameraParams (the built-in sample's target camera); sizes in LR pixels
    "phone": {"lens_sigma_x": (0.55, 0.0, 3.0), "lens_sigma_y": (0.35, 0.0, 3.0), "lens_theta_deg": (30.0, 0.0, 180.0),
              "defocus_radius": (0.35, 0.0, 3.0), "r_gain": (1.9, 0.3, 4.0), "b_gain": (1.5, 0.3, 4.0),
              "shot_noise": (0.0015, 0.0, 0.05), "read_noise": (0.002, 0.0, 0.05),
              "chroma_denoise_sigma": (1.2, 0.0, 5.0), "luma_denoise_sigma": (0.5, 0.0, 3.0),
              "sharpen_amount": (0.9, 0.0, 5.0), "sharpen_sigma": (1.2, 0.3, 5.0), "jpeg_quality": (85, 1, 100)},
}


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0)


def rescale(x: np.ndarray, rng: np.random.Generator, factor: float, mode: str) -> np.ndarray:
    h, w = x.shape[:2]
    target = (max(1, round(h * factor)), max(1, round(w * factor)))
    return x if target == (h, w) else _clip(resize(x, target, mode))


def defocus(x: np.ndarray, rng: np.random.Generator, radius: float) -> np.ndarray:
    k = _pillbox(radius)
    return x if k.shape[0] == 1 else _clip(apply_kernel(x, k))


def shift(x: np.ndarray, rng: np.random.Generator, dx: float, dy: float, order: int) -> np.ndarray:
    if dx == 0 and dy == 0:
        return x
    out = [ndimage.shift(x[:, :, c], (dy, dx), order=order, mode="mirror") for c in range(x.shape[2])]
    return _clip(np.stack(out, axis=2))


# Malvar-He-Cutler (2004) demosaicking filters (x 1/8): green at red/blue; red at green in a red
# row (blue at green in a blue row); its transpose for the other green; red at blue (and back).
_MHC_G = np.array([[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]]) / 8
_MHC_ROW = np.array([[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0],
                     [0, 0, 0.5, 0, 0]]) / 8
_MHC_DIAG = np.array([[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0],
                      [0, 0, -1.5, 0, 0]]) / 8


def mhc_demosaic(raw: np.ndarray) -> np.ndarray:
    """Malvar-He-Cutler demosaic of an RGGB raw plane (mirrored borders keep the Bayer phase)."""
    f = {name: ndimage.correlate(raw, k, mode="mirror")
         for name, k in (("g", _MHC_G), ("row", _MHC_ROW), ("col", _MHC_ROW.T), ("diag", _MHC_DIAG))}
    out = np.empty(raw.shape + (3,))
    # per channel: the source at each RGGB site (R at (0, 0), Gr at (0, 1), Gb at (1, 0), B at (1, 1))
    for c, srcs in ((0, (raw, f["row"], f["col"], f["diag"])), (1, (f["g"], raw, raw, f["g"])),
                    (2, (f["diag"], f["col"], f["row"], raw))):
        for (i, j), src in zip(((0, 0), (0, 1), (1, 0), (1, 1)), srcs):
            out[i::2, j::2, c] = src[i::2, j::2]
    return out


def mosaic(x: np.ndarray, rng: np.random.Generator, shot: float, read: float, demosaic: str) -> np.ndarray:
    masks = _mosaic_masks(*x.shape[:2])
    raw = np.sum(srgb_to_linear(x) * masks, axis=2)
    if shot > 0:
        raw = rng.poisson(raw / shot) * shot
    if read > 0:
        raw = raw + rng.normal(0.0, read, raw.shape)
    raw = _clip(raw)
    rgb = bilinear_demosaic(raw, masks) if demosaic == "bilinear" else mhc_demosaic(raw)
    return linear_to_srgb(_clip(rgb))


def _bilateral(y: np.ndarray, sigma_s: float, sigma_r: float) -> np.ndarray:
    r = max(1, int(math.ceil(2.0 * sigma_s)))
    h, w = y.shape
    pad = np.pad(y, r, mode="reflect")
    num, den = np.zeros_like(y), np.zeros_like(y)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            nb = pad[r + dy : r + dy + h, r + dx : r + dx + w]
            wgt = math.exp(-(dy * dy + dx * dx) / (2.0 * sigma_s**2)) * np.exp(-((nb - y) ** 2) / (2.0 * sigma_r**2))
            num += wgt * nb
            den += wgt
    return num / den


def _ycc(x: np.ndarray) -> np.ndarray:
    return x @ _RGB2YCC.T


def _rgb(ycc: np.ndarray) -> np.ndarray:
    return _clip(ycc @ _YCC2RGB.T)


def denoise(x: np.ndarray, rng: np.random.Generator, luma_sigma: float, chroma_sigma: float,
            range_sigma: float) -> np.ndarray:
    ycc = _ycc(x)
    y = ycc[:, :, 0]
    if luma_sigma > 0:
        ycc[:, :, 0] = _bilateral(y, luma_sigma, range_sigma) if range_sigma > 0 else _gauss(y, luma_sigma)
    for c in (1, 2):
        ycc[:, :, c] = _gauss(ycc[:, :, c], chroma_sigma)
    return _rgb(ycc)


def sharpen(x: np.ndarray, rng: np.random.Generator, amount: float, radius: float, threshold: float) -> np.ndarray:
    ycc = _ycc(x)
    y = ycc[:, :, 0]
    detail = y - _gauss(y, radius)
    if threshold > 0:
        detail = np.where(np.abs(detail) >= threshold, detail, 0.0)
    ycc[:, :, 0] = y + amount * detail
    return _rgb(ycc)


def tone(x: np.ndarray, rng: np.random.Generator, gamma: float, contrast: float) -> np.ndarray:
    y = _clip(x) ** gamma
    if contrast:
        y = y + contrast * (y * y * (3.0 - 2.0 * y) - y)
    return _clip(y)


def color(x: np.ndarray, rng: np.random.Generator, r_gain: float, b_gain: float, saturation: float) -> np.ndarray:
    y = x * np.array([r_gain, 1.0, b_gain])
    if saturation != 1:
        luma = (y @ _RGB2YCC[0])[:, :, None]
        y = luma + saturation * (y - luma)
    return _clip(y)


def phone(x: np.ndarray, rng: np.random.Generator, scale: int, r_gain: float, b_gain: float, jpeg_quality: float,
          **params) -> np.ndarray:
    """The camera simulator (:func:`drtl.degradations.camera.camera_degradation`) on an HR image:
    lens PSF, area sampling by ``scale``, Bayer raw noise, demosaic, denoise, sharpening, JPEG."""
    from drtl.degradations.camera import CameraParams, camera_degradation

    cam = CameraParams(wb_gains=(r_gain, 1.0, b_gain), jpeg_quality=int(round(jpeg_quality)), **params)
    u8 = np.clip(np.floor(x * 255.0 + 0.5), 0, 255).astype(np.uint8)
    return camera_degradation(u8, scale, rng, cam).astype(np.float64) / 255.0


OPS = {"rescale": rescale, "defocus": defocus, "shift": shift, "mosaic": mosaic, "denoise": denoise,
       "sharpen": sharpen, "tone": tone, "color": color, "phone": phone}
assert set(OPS) == set(SPECS)
