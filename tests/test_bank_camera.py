"""The camera-realistic auxiliary bank: ranged op parameters, the isp / capture / realesrgan
families, and the pinned outputs of the original 29 fixed-parameter tasks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from drtl.degradations import make_pair, task_names
from drtl.degradations.tasks import get_task

GOLDEN = Path(__file__).resolve().parents[1] / "drtl" / "degradations" / "golden" / "bank_golden.json"


def _image(h: int = 48, w: int = 48) -> np.ndarray:
    """A deterministic RGB uint8 image with edges, gradients and texture."""
    rng = np.random.default_rng(123)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 4, yy * 4, (xx + yy) * 2], axis=-1).astype(np.float64) + 20
    base += ndimage.gaussian_filter(rng.normal(0, 40, (h, w, 3)), (1, 1, 0))
    base[10:20, 12:36] = 230
    base[30:34, :] = 15
    return np.clip(np.round(base), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def hr48() -> np.ndarray:
    return _image()


def _digest(hr: np.ndarray, name: str, scale: int) -> str:
    lr, _ = make_pair(hr, get_task(name), scale, np.random.default_rng([scale, 7]))
    return hashlib.sha256(lr.tobytes() + str(lr.shape).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- old bank pinned


def test_original_tasks_bit_identical(hr48):
    golden = json.loads(GOLDEN.read_text())
    assert len(golden) == 29
    for name, by_scale in golden.items():
        for scale, digest in by_scale.items():
            assert _digest(hr48, name, int(scale[1:])) == digest, (name, scale)


def _regenerate_golden() -> None:  # pragma: no cover - run by hand, only for the original 29 tasks
    hr = _image()
    names = task_names()[:29]
    out = {n: {f"x{s}": _digest(hr, n, s) for s in (2, 3, 4)} for n in names}
    GOLDEN.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":  # pragma: no cover
    _regenerate_golden()
