"""MATLAB-compatible bicubic imresize and the torch-style resize modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from drtl.degradations.resize import imresize, resize
from drtl.errors import ConfigError

GOLDEN = Path(__file__).resolve().parents[1] / "drtl" / "degradations" / "golden" / "imresize_golden.npz"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SET5 = SHARED / "set5"


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as g:
        return {k: g[k] for k in g.files}


def _call(img, key):
    kind, how, arg = key.split("_", 2)
    if how == "scale":
        s = {"x1_2": 1 / 2, "x1_3": 1 / 3, "x1_4": 1 / 4, "x2": 2, "x3": 3}[arg]
        return imresize(img, s)
    h, w = (int(v) for v in arg.split("x"))
    return imresize(img, output_shape=(h, w))


def test_golden_uint8(golden):
    img = golden["input"]
    keys = [k for k in golden if k.startswith("u8_")]
    assert len(keys) == 7
    for key in keys:
        out = _call(img, key)
        assert out.dtype == np.uint8, key
        assert out.shape == golden[key].shape, key
        np.testing.assert_array_equal(out, golden[key], err_msg=key)


def test_golden_float(golden):
    img = golden["input"].astype(np.float64) / 255.0
    keys = [k for k in golden if k.startswith("f64_")]
    assert keys
    for key in keys:
        out = _call(img, key)
        assert out.dtype == np.float64
        np.testing.assert_allclose(out, golden[key], rtol=0, atol=1e-12, err_msg=key)


@pytest.mark.shared_data
@pytest.mark.skipif(not SET5.is_dir(), reason="../shared/datasets/set5 is absent")
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_set5_matlab_lr_files(scale):
    from drtl.io import read_image

    names = sorted(p.stem for p in (SET5 / "HR").glob("*.png"))
    assert names
    for name in names:
        hr = read_image(SET5 / "HR" / f"{name}.png")
        h, w = hr.shape[:2]
        hr = hr[: h - h % scale, : w - w % scale]
        ref = read_image(SET5 / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png")
        out = imresize(hr, 1 / scale)
        assert out.shape == ref.shape
        diff = np.abs(out.astype(int) - ref.astype(int))
        assert diff.max() == 0, f"{name} x{scale}: {np.count_nonzero(diff)} pixels differ (max {diff.max()})"


def test_shapes_and_roundtrip():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (36, 48, 3), dtype=np.uint8)
    for s in (2, 3, 4):
        small = imresize(img, 1 / s)
        assert small.shape == (36 // s, 48 // s, 3)
        assert imresize(small, s).shape == img.shape
    assert imresize(img, output_shape=(17, 5)).shape == (17, 5, 3)
    gray = img[:, :, 0]
    assert imresize(gray, 0.5).shape == (18, 24)
    # non-multiple sizes: MATLAB ceil
    assert imresize(img[:35, :47], 1 / 2).shape == (18, 24, 3)
    # identity at scale 1
    np.testing.assert_array_equal(imresize(img, 1.0), img)


def test_float_vs_uint8_consistency():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:32, 0:32]
    smooth = (60 + 3 * yy + 2 * xx)[:, :, None] + rng.normal(0, 4, (32, 32, 3)).cumsum(axis=1) / 4
    img = np.clip(np.round(smooth), 0, 255).astype(np.uint8)
    for s in (0.5, 1 / 3, 2):
        u8 = imresize(img, s).astype(np.float64)
        fl = imresize(img.astype(np.float64) / 255.0, s) * 255.0  # no intermediate rounding, no clip
        diff = np.abs(u8 - fl)
        assert diff.max() <= 1.25 and diff.mean() < 0.4, (s, diff.max(), diff.mean())
    # float output is unclipped: overshoot at a hard edge
    edge = np.zeros((16, 16), dtype=np.float64)
    edge[:, 8:] = 1.0
    up = imresize(edge, 2)
    assert up.max() > 1.0 and up.min() < 0.0
    up8 = imresize((edge * 255).astype(np.uint8), 2)
    assert up8.dtype == np.uint8 and up8.max() == 255 and up8.min() == 0


def test_shrink_antialiases_checkerboard():
    yy, xx = np.mgrid[0:64, 0:64]
    board = ((yy + xx) % 2).astype(np.float64)
    for s in (2, 3, 4):
        out = imresize(board, 1 / s)
        core = out[2:-2, 2:-2]
        assert abs(core.mean() - 0.5) < 0.02
        assert core.std() < 0.02, s
    # without the widened kernel (plain bicubic sampling) the pattern would alias; torch bicubic does
    alias = resize(board, (21, 21), "bicubic")
    assert alias[2:-2, 2:-2].std() > 0.1


def test_bad_arguments():
    img = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ConfigError):
        imresize(img)
    with pytest.raises(ConfigError):
        imresize(img, 0.5, output_shape=(4, 4))
    with pytest.raises(ConfigError):
        imresize(img, -1)
    with pytest.raises(ConfigError):
        imresize(img, output_shape=(0, 4))
    with pytest.raises(ConfigError):
        imresize(img.astype(np.int32), 0.5)
    with pytest.raises(ConfigError):
        resize(img, (4, 4), "lanczos")


@pytest.mark.parametrize("mode", ["area", "bilinear", "bicubic"])
@pytest.mark.parametrize("size", [(16, 12), (13, 7), (40, 50)])
def test_resize_matches_torch(mode, size):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    img = rng.random((32, 24, 3))
    ours = resize(img, size, mode)
    t = torch.from_numpy(img.transpose(2, 0, 1)[None])
    kw = {} if mode == "area" else {"align_corners": False}
    ref = torch.nn.functional.interpolate(t, size=size, mode=mode, **kw)[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_resize_uint8_and_matlab_mode():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    for mode in ("area", "bilinear", "bicubic", "matlab"):
        out = resize(img, (12, 12), mode)
        assert out.dtype == np.uint8 and out.shape == (12, 12, 3)
    np.testing.assert_array_equal(resize(img, (12, 12), "matlab"), imresize(img, 0.5))


def _regenerate_golden() -> None:  # pragma: no cover - run by hand: python tests/test_imresize.py
    """Rewrite the golden file (only after re-verifying imresize against the Set5 MATLAB files)."""
    rng = np.random.default_rng(20211126)
    h, w = 24, 20
    yy, xx = np.mgrid[0:h, 0:w]
    grad = np.stack([xx / (w - 1), yy / (h - 1), (xx + yy) / (h + w - 2)], -1) * 200
    img = np.clip(np.round(grad + rng.normal(0, 25, (h, w, 3)) + 20), 0, 255).astype(np.uint8)
    img[8:12, 6:14] = 255
    img[16:20, 2:6] = 0
    out = {"input": img}
    for key in ("u8_scale_x1_2", "u8_scale_x1_3", "u8_scale_x1_4", "u8_scale_x2", "u8_scale_x3",
                "u8_shape_7x11", "u8_shape_13x31"):
        out[key] = _call(img, key)
    for key in ("f64_scale_x1_3", "f64_shape_7x11"):
        out[key] = _call(img.astype(np.float64) / 255.0, key)
    np.savez_compressed(GOLDEN, **out)


if __name__ == "__main__":  # pragma: no cover
    _regenerate_golden()
