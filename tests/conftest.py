from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("DRTL_PROGRESS", "0")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


def shared_dataset(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


def experiment_module(name: str):
    """Import ``experiments/<name>.py`` (stand-alone scripts, not a package) as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rand_img(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth-ish random RGB uint8 image (noise + gradient), HWC."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = (yy[..., None] * 3 + xx[..., None] * 2 + np.array([0, 40, 80])) % 256
    return np.clip(base + rng.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)


def save(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def make_pairs(tmp_path, rng):
    """make_pairs(root, n, scale=2, hr=32) -> root: a valid paired folder with a manifest."""

    def _make(root: Path | None = None, n: int = 3, scale: int = 2, hr: int = 32) -> Path:
        from drtl.data.folder import write_manifest
        from drtl.degradations.resize import imresize

        root = root or tmp_path / "pairs"
        for i in range(n):
            h = rand_img(rng, hr, hr)
            save(root / "HR" / f"{i:03d}.png", h)
            save(root / "LR" / f"{i:03d}.png", imresize(h, scale=1 / scale))
        write_manifest(root, scale)
        return root

    return _make
