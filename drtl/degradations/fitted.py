"""A degradation fitted to the target camera's own K pairs (a "camera-fitted" auxiliary task).

With paired shots the camera's degradation can be *measured* rather than guessed: every LR pixel
is regressed (ridge least squares) on the HR pixels of its footprint in all three channels,

    LR[c, y, x] ~ sum_{c', i, j} K[c, c', i, j] * HR[c', s*y - m + i, s*x - m + j] + b[c],

a strided linear filter of ``n = s + 2m`` HR pixels (m = ceil(2.5 s): +-3 LR pixels) that absorbs the
optical blur, the sensor sampling, sub-pixel misregistration, linear sharpening, the colour
matrix and the exposure / white-balance gains. The residual's variance, fitted as ``a + b * mean``
per channel, gives a signal-dependent noise level. :func:`apply_fitted` then degrades any clean
HR image the way the camera does, so the bank can hold pairs made like the target's from images
the target never saw.

What it cannot hold: non-linear processing (tone curves beyond their linear part, JPEG blocks,
denoising that depends on content) and spatially varying blur; the fit reports its own
``fit_psnr`` on the shots so a poor fit shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from drtl.errors import DataError


@dataclass(frozen=True)
class FittedCamera:
    scale: int
    margin: int  # m: HR pixels the footprint extends beyond the s x s cell on each side
    kernel: np.ndarray  # (3, 3, n, n) float32, output channel x input channel x HR window
    bias: np.ndarray  # (3,) float32, in [0, 1] units
    noise: np.ndarray  # (3, 2): per channel variance = a + b * mean, [0, 1] units
    fit_psnr: float  # PSNR (dB, RGB) of the fitted LR against the real LR on the fitting pixels
    n_samples: int

    def to_dict(self) -> dict:
        return {"scale": self.scale, "margin": self.margin, "kernel": self.kernel.tolist(),
                "bias": self.bias.tolist(), "noise": self.noise.tolist(), "fit_psnr": self.fit_psnr,
                "n_samples": self.n_samples}

    @classmethod
    def from_dict(cls, d: dict) -> FittedCamera:
        return cls(int(d["scale"]), int(d["margin"]), np.asarray(d["kernel"], np.float32),
                   np.asarray(d["bias"], np.float32), np.asarray(d["noise"], np.float32),
                   float(d["fit_psnr"]), int(d["n_samples"]))


def default_margin(scale: int) -> int:
    return int(math.ceil(2.5 * scale))


def _windows(hr: np.ndarray, scale: int, margin: int) -> np.ndarray:
    """(H/s, W/s, 3, n, n) view: the HR footprint of every LR pixel (reflect-padded)."""
    n = scale + 2 * margin
    pad = np.pad(hr, ((margin, margin), (margin, margin), (0, 0)), mode="reflect")
    win = np.lib.stride_tricks.sliding_window_view(pad, (n, n), axis=(0, 1))  # (H', W', 3, n, n)
    return win[::scale, ::scale][: hr.shape[0] // scale, : hr.shape[1] // scale]


def fit_camera(pairs, scale: int, margin: int | None = None, samples: int = 60_000, ridge: float = 1e-3,
               seed: int = 0) -> FittedCamera:
    """Fit :class:`FittedCamera` to (lr, hr) uint8 pairs (``hr`` = ``scale`` x ``lr``)."""
    pairs = list(pairs)
    if not pairs:
        raise DataError("fit_camera: no pairs given")
    m = default_margin(scale) if margin is None else int(margin)
    rng = np.random.default_rng(seed)
    sizes = [lr.shape[0] * lr.shape[1] for lr, _ in pairs]
    per = [max(1, int(round(samples * k / sum(sizes)))) for k in sizes]
    xs, ys = [], []
    for (lr, hr), k in zip(pairs, per):
        if hr.shape[0] != lr.shape[0] * scale or hr.shape[1] != lr.shape[1] * scale:
            raise DataError(f"fit_camera: HR {hr.shape[:2]} is not {scale} x LR {lr.shape[:2]}")
        win = _windows(hr.astype(np.float32) / 255.0, scale, m)
        h, w = win.shape[:2]
        # keep away from the reflected border, where the window is not the camera's
        yy = rng.integers(m // scale + 1, h - m // scale - 1, size=k)
        xx = rng.integers(m // scale + 1, w - m // scale - 1, size=k)
        xs.append(win[yy, xx].reshape(k, -1))
        ys.append(lr[yy, xx].astype(np.float32) / 255.0)
    x = np.concatenate(xs).astype(np.float64)
    y = np.concatenate(ys).astype(np.float64)
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    gram = xc.T @ xc
    gram[np.diag_indices_from(gram)] += ridge * np.trace(gram) / len(gram)  # ridge x the mean feature variance
    beta = np.linalg.solve(gram, xc.T @ yc)  # (3 n n, 3)
    bias = ym - xm @ beta
    pred = x @ beta + bias
    res = y - pred
    noise = np.zeros((3, 2))
    for c in range(3):  # variance = a + b * level, least squares on the squared residuals
        a_mat = np.stack([np.ones(len(pred)), np.clip(pred[:, c], 0, 1)], 1)
        coef = np.linalg.lstsq(a_mat, res[:, c] ** 2, rcond=None)[0]
        noise[c] = np.clip(coef, 0.0, None)
    n = scale + 2 * m
    kernel = beta.T.reshape(3, 3, n, n).astype(np.float32)
    mse = float(np.mean(res ** 2))
    return FittedCamera(int(scale), m, kernel, bias.astype(np.float32), noise.astype(np.float32),
                        float(10 * np.log10(1.0 / max(mse, 1e-12))), int(len(x)))


def apply_fitted(hr: np.ndarray, cam: FittedCamera, rng: np.random.Generator | None = None,
                 noise_scale: float = 1.0) -> np.ndarray:
    """Degrade an HR uint8 image (H, W multiples of the scale) with the fitted camera -> LR uint8."""
    import torch
    import torch.nn.functional as F

    s, m = cam.scale, cam.margin
    if hr.shape[0] % s or hr.shape[1] % s:
        raise DataError(f"apply_fitted: HR {hr.shape[:2]} is not a multiple of the scale {s}; mod-crop it first")
    x = torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    x = F.pad(x, (m, m, m, m), mode="reflect")
    with torch.no_grad():
        lr = F.conv2d(x, torch.from_numpy(cam.kernel), torch.from_numpy(cam.bias), stride=s)[0]
    lr = lr.permute(1, 2, 0).numpy().astype(np.float64)
    if rng is not None and noise_scale > 0:
        var = cam.noise[:, 0] + cam.noise[:, 1] * np.clip(lr, 0, 1)
        lr = lr + noise_scale * np.sqrt(np.clip(var, 0, None)) * rng.standard_normal(lr.shape)
    return np.clip(np.round(lr * 255.0), 0, 255).astype(np.uint8)
