"""JPEG compression through Pillow (encode + decode in memory).

uint8 in -> uint8 out; float in -> float64 out (quantised to 8 bits first, as any JPEG codec does).
Pillow's defaults apply (4:2:0 chroma subsampling, standard IJG tables scaled by ``quality``).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from drtl.errors import ConfigError


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Compress ``img`` (HWC RGB or HW gray) at JPEG ``quality`` in 1..100 and decode it again."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ConfigError(f"jpeg quality {quality!r} is invalid; use an integer in 1..100")
    img = np.asarray(img)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise ConfigError(f"jpeg expects an HW or HWC RGB image, got shape {img.shape}")
    if img.dtype == np.uint8:
        u8, as_float = img, False
    elif np.issubdtype(img.dtype, np.floating):
        u8, as_float = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8), True
    else:
        raise ConfigError(f"jpeg expects uint8 or float [0, 1] pixels, got {img.dtype}")
    squeeze = u8.ndim == 3 and u8.shape[2] == 1
    pil = Image.fromarray(u8[:, :, 0] if squeeze else u8)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as dec:
        out = np.asarray(dec.convert(pil.mode)).copy()
    if squeeze:
        out = out[:, :, None]
    return out.astype(np.float64) / 255.0 if as_float else out
