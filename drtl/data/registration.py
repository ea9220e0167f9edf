"""Registration check of LR/HR pairs: is the LR really the HR's scene, at the same place?

For a pair (LR HWC RGB uint8 at HR/scale, HR HWC RGB uint8) the LR is bicubic-upscaled to HR size
(MATLAB-compatible, like the ``bicubic`` method) and compared on the Y channel (BT.601), with a
border of ``2 * scale`` px cropped, with the HR limited to the band an LR can hold (HR bicubic-
downscaled, then upscaled: detail finer than the LR grid is in no LR and must not count):

- **shift**: the sub-pixel translation of the LR content against HR, in HR pixels (dy down, dx
  right), by phase correlation (scikit-image, 1/20 px upsampling) of Hann-windowed,
  mean-free Y images;
- **correlation**: the Pearson correlation of the two Y images at zero shift (photometric
  agreement: 1 = identical up to gain and offset; unrelated images are near 0);
- **psnr_y**: bicubic PSNR-Y of the pair against the full HR (information only);
- **reliable**: False when the pair is too small (< MIN_SIDE_PX after the crop) or too flat (std
  of the reference Y < MIN_TEXTURE: sky, walls) for the numbers to mean anything; such a pair is
  reported but neither warned about nor failed.

Thresholds (HR pixels; |shift| = the Euclidean norm of (dy, dx)):

- import warns when |shift| > :data:`WARN_SHIFT_PX` or correlation < :data:`WARN_CORRELATION`;
- validation (``drtl data validate``) fails when |shift| > :data:`FAIL_SHIFT_PX` or correlation
  < :data:`FAIL_CORRELATION`.

Real registered pairs (City100 iPhone X 001-020, x2) measure |shift| <= 0.25 px and correlation
>= 0.96 (docs/errors.md has the numbers); a 1 LR px misregistration at x2 is 2 HR px.
"""

from __future__ import annotations

import warnings

import numpy as np

WARN_SHIFT_PX = 0.5
FAIL_SHIFT_PX = 1.0
WARN_CORRELATION = 0.85
FAIL_CORRELATION = 0.7
MIN_SIDE_PX = 32       # below this (HR px, after the border crop) a pair is too small to judge
MIN_TEXTURE = 0.02     # std of the reference Y (0-1): flatter pairs (sky, walls) cannot be judged


class RegistrationWarning(UserWarning):
    """An imported pair looks misregistered (shifted LR or unrelated content)."""


def _y(img: np.ndarray) -> np.ndarray:
    from drtl.metrics.psnr_ssim import rgb_to_y

    return rgb_to_y(img.astype(np.float64) / 255.0) if img.dtype == np.uint8 else rgb_to_y(img)


def check_pair(lr: np.ndarray, hr: np.ndarray, scale: int) -> dict:
    """{'shift_y', 'shift_x', 'shift_px', 'correlation', 'psnr_y'} of one pair (see the module doc)."""
    from skimage.registration import phase_cross_correlation

    from drtl.degradations.resize import imresize
    from drtl.metrics import psnr

    up = imresize(lr, scale=float(scale))
    # the reference: HR limited to the band an LR can hold (bicubic down, then up), so detail
    # finer than the LR grid (which no LR has) neither lowers the correlation nor steers the shift
    ref_img = imresize(imresize(hr, scale=1.0 / scale), scale=float(scale))
    b = 2 * scale
    a_y, h_y = _y(up)[b:-b, b:-b], _y(ref_img)[b:-b, b:-b]
    texture = float(h_y.std())
    if min(a_y.shape) < MIN_SIDE_PX or texture < MIN_TEXTURE:
        return {"shift_y": 0.0, "shift_x": 0.0, "shift_px": 0.0, "correlation": float("nan"),
                "psnr_y": round(psnr(up, hr, crop_border=scale), 3), "reliable": False, "texture": round(texture, 4)}
    win = np.outer(np.hanning(a_y.shape[0]), np.hanning(a_y.shape[1]))
    ref, mov = (h_y - h_y.mean()) * win, (a_y - a_y.mean()) * win
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shift, _, _ = phase_cross_correlation(ref, mov, upsample_factor=20, normalization=None)
    dy, dx = -float(shift[0]), -float(shift[1])  # where the LR content sits relative to HR
    sa, sh = a_y.std(), h_y.std()
    corr = float(((a_y - a_y.mean()) * (h_y - h_y.mean())).mean() / (sa * sh)) if sa > 0 and sh > 0 else 0.0
    return {"shift_y": round(dy, 3), "shift_x": round(dx, 3), "shift_px": round(float(np.hypot(dy, dx)), 3),
            "correlation": round(corr, 4), "psnr_y": round(psnr(up, hr, crop_border=scale), 3), "reliable": True,
            "texture": round(texture, 4)}


def verdict(r: dict, fail: bool = False) -> str | None:
    """Why a pair's numbers exceed the warn (or, with ``fail``, the fail) thresholds; None if fine
    (or not judged: ``reliable`` False)."""
    if not r.get("reliable", True):
        return None
    max_shift, min_corr = (FAIL_SHIFT_PX, FAIL_CORRELATION) if fail else (WARN_SHIFT_PX, WARN_CORRELATION)
    why = []
    if r["shift_px"] > max_shift:
        why.append(f"shifted by (dy {r['shift_y']:+.2f}, dx {r['shift_x']:+.2f}) HR px (> {max_shift} px)")
    if not r["correlation"] >= min_corr and r["correlation"] == r["correlation"]:
        why.append(f"correlation with HR {r['correlation']:.3f} (< {min_corr})")
    return "; ".join(why) or None


def warn_if_misregistered(name, lr: np.ndarray, hr: np.ndarray, scale: int) -> dict:
    """Check one pair at import; warn (RegistrationWarning, one line) above the warn thresholds."""
    r = check_pair(lr, hr, scale)
    why = verdict(r) if r["reliable"] else None
    if why:
        warnings.warn(f"{name}: LR looks misregistered against its HR: {why}; bicubic PSNR-Y {r['psnr_y']:.2f} dB",
                      RegistrationWarning, stacklevel=2)
    return r
