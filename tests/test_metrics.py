"""Golden tests for drtl.metrics (PSNR / SSIM with SR-literature conventions).

Expected values are either derived analytically or produced by a second, independent
implementation written here (BasicSR-faithful: float32 Y conversion, 2-D window, scipy
correlate with OpenCV's default BORDER_REFLECT_101 then [5:-5, 5:-5] crop; and a
scipy.signal.convolve2d 'valid' version), so the tests compare genuinely different computations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage, signal

from drtl.metrics import psnr, rgb_to_y, ssim

C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def golden_pair():
    """Deterministic 40x40 RGB uint8 pair: a smooth-ish image and a noisy, slightly shifted copy."""
    rng = np.random.default_rng(2111)
    coarse = rng.integers(0, 256, size=(5, 5, 3)).astype(np.float64)
    base = ndimage.zoom(coarse, (8, 8, 1), order=3, mode="nearest")
    a = np.clip(np.round(base + rng.normal(0, 6, base.shape)), 0, 255).astype(np.uint8)
    b = np.clip(np.round(a.astype(np.float64) + 3 + rng.normal(0, 10, a.shape)), 0, 255).astype(np.uint8)
    return a, b


# ---------------------------------------------------------------- independent reference (BasicSR style)
def ref_y_basicsr(img_rgb_uint8):
    """BasicSR to_y_channel on an RGB image: float32 /255, bgr2ycbcr(y_only) on the BGR view, *255."""
    bgr = img_rgb_uint8[..., ::-1].astype(np.float32) / 255.0
    y = np.dot(bgr, np.array([24.966, 128.553, 65.481], dtype=np.float32)) + 16.0
    y = (y / 255.0).astype(np.float32)
    return (y * 255.0).astype(np.float64)


def ref_window():
    # cv2.getGaussianKernel(11, 1.5), outer product
    k = np.array([math.exp(-((i - 5) ** 2) / (2 * 1.5**2)) for i in range(11)])
    k /= k.sum()
    return np.outer(k, k)


def ref_ssim_reflect101(a, b):
    """BasicSR _ssim with cv2.filter2D emulated by scipy correlate (mode 'mirror' == REFLECT_101)."""
    w = ref_window()

    def f(x):
        return ndimage.correlate(x, w, mode="mirror")[5:-5, 5:-5]

    mu1, mu2 = f(a), f(b)
    s1 = f(a * a) - mu1**2
    s2 = f(b * b) - mu2**2
    s12 = f(a * b) - mu1 * mu2
    m = ((2 * mu1 * mu2 + C1) * (2 * s12 + C2)) / ((mu1**2 + mu2**2 + C1) * (s1 + s2 + C2))
    return m.mean()


def ref_ssim_convolve2d(a, b):
    w = ref_window()[::-1, ::-1]  # convolution flips; the window is symmetric anyway

    def f(x):
        return signal.convolve2d(x, w, mode="valid")

    mu1, mu2 = f(a), f(b)
    s1 = f(a * a) - mu1**2
    s2 = f(b * b) - mu2**2
    s12 = f(a * b) - mu1 * mu2
    m = ((2 * mu1 * mu2 + C1) * (2 * s12 + C2)) / ((mu1**2 + mu2**2 + C1) * (s1 + s2 + C2))
    return m.mean()


def ref_psnr_loop(a, b):
    h, w = a.shape
    total = 0.0
    for i in range(h):
        for j in range(w):
            total += (a[i, j] - b[i, j]) ** 2
    return 10 * math.log10(255.0**2 / (total / (h * w)))


# ---------------------------------------------------------------- analytic cases
@pytest.mark.parametrize("offset", [1, 5, 20])
def test_psnr_constant_offset_y_and_rgb(offset):
    rng = np.random.default_rng(offset)
    a = rng.integers(0, 200, size=(24, 20, 3), dtype=np.uint8)
    b = a + np.uint8(offset)
    # R=G=B offset d moves Y (0-255 units) by (65.481 + 128.553 + 24.966) * d / 255 = 219 d / 255
    dy = 219.0 * offset / 255.0
    assert psnr(a, b, 0) == pytest.approx(20 * math.log10(255.0 / dy), abs=1e-9)
    assert psnr(a, b, 0, y_channel=False) == pytest.approx(20 * math.log10(255.0 / offset), abs=1e-9)
    assert psnr(a, b, 3) == pytest.approx(20 * math.log10(255.0 / dy), abs=1e-9)


def test_rgb_to_y_values():
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    y = rgb_to_y(img)
    assert y.shape == (1, 5) and y.dtype == np.float64
    expected = np.array([[16, 235, 65.481 + 16, 128.553 + 16, 24.966 + 16]]) / 255.0
    np.testing.assert_allclose(y, expected, atol=1e-12)
    np.testing.assert_allclose(rgb_to_y(img.astype(np.float64) / 255.0), expected, atol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        rgb_to_y(np.zeros((4, 4), np.uint8))


def test_ssim_constant_images_analytic():
    # flat images: sigma terms vanish, SSIM = (2 mu1 mu2 + C1) / (mu1^2 + mu2^2 + C1)
    p, q = 100, 110
    a = np.full((16, 16, 3), p, np.uint8)
    b = np.full((16, 16, 3), q, np.uint8)
    yp, yq = 219 * p / 255 + 16, 219 * q / 255 + 16
    expect_y = (2 * yp * yq + C1) / (yp**2 + yq**2 + C1)
    expect_rgb = (2 * p * q + C1) / (p**2 + q**2 + C1)
    assert ssim(a, b, 0) == pytest.approx(expect_y, abs=1e-12)
    assert ssim(a, b, 2, y_channel=False) == pytest.approx(expect_rgb, abs=1e-12)


def test_identical_images():
    a, _ = golden_pair()
    assert psnr(a, a, 4) == float("inf")
    assert psnr(a, a.copy(), 0, y_channel=False) == float("inf")
    assert ssim(a, a, 4) == 1.0
    assert ssim(a, a, 0, y_channel=False) == 1.0


# ---------------------------------------------------------------- golden values vs. reference
def test_golden_matches_independent_reference():
    a, b = golden_pair()
    for crop in (0, 2, 4):
        ac = a[crop : a.shape[0] - crop, crop : a.shape[1] - crop]
        bc = b[crop : b.shape[0] - crop, crop : b.shape[1] - crop]
        ya, yb = ref_y_basicsr(ac), ref_y_basicsr(bc)
        # float32 Y (BasicSR) vs float64 Y (ours): differences ~1e-6 dB / 1e-8 SSIM
        assert psnr(a, b, crop) == pytest.approx(ref_psnr_loop(ya, yb), abs=1e-4)
        assert ssim(a, b, crop) == pytest.approx(ref_ssim_reflect101(ya, yb), abs=1e-6)
        assert ssim(a, b, crop) == pytest.approx(ref_ssim_convolve2d(ya, yb), abs=1e-6)
        af, bf = ac.astype(np.float64), bc.astype(np.float64)
        ref_rgb_ssim = np.mean([ref_ssim_convolve2d(af[..., c], bf[..., c]) for c in range(3)])
        assert ssim(a, b, crop, y_channel=False) == pytest.approx(ref_rgb_ssim, abs=1e-10)
        ref_rgb_psnr = 10 * math.log10(255.0**2 / np.mean((af - bf) ** 2))
        assert psnr(a, b, crop, y_channel=False) == pytest.approx(ref_rgb_psnr, abs=1e-10)


# pinned from drtl.metrics; the test above ties them to the independent reference
@pytest.mark.parametrize(
    "crop, y_channel, exp_psnr, exp_ssim",
    [
        (0, True, 32.30952389847389, 0.8788220735573976),
        (0, False, 27.915284394656258, 0.8577036180316814),
        (2, True, 32.25959181682586, 0.8785617490255632),
        (2, False, 27.90599377653031, 0.8512275704185613),
        (4, True, 32.183353306986504, 0.8759326426132023),
        (4, False, 27.88331003734035, 0.846361567292527),
    ],
)
def test_golden_pinned(crop, y_channel, exp_psnr, exp_ssim):
    a, b = golden_pair()
    assert psnr(a, b, crop, y_channel=y_channel) == pytest.approx(exp_psnr, abs=1e-9)
    assert ssim(a, b, crop, y_channel=y_channel) == pytest.approx(exp_ssim, abs=1e-9)


def test_skimage_gaussian_ssim_agrees_exactly():
    """skimage's gaussian_weights SSIM truncates at 3.5 sigma (11 taps) and crops 5 px after
    reflect-padded filtering, i.e. it averages exactly our 'valid' map: agreement to 1e-10."""
    from skimage.metrics import structural_similarity

    a, b = golden_pair()
    for crop in (0, 4):
        ya = rgb_to_y(a[crop : 40 - crop, crop : 40 - crop]) * 255.0
        yb = rgb_to_y(b[crop : 40 - crop, crop : 40 - crop]) * 255.0
        sk = structural_similarity(ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
        assert ssim(a, b, crop) == pytest.approx(sk, abs=1e-10)


# ---------------------------------------------------------------- behaviour
def test_crop_border_equivalence_and_effect():
    a, b = golden_pair()
    for c in (1, 3):
        assert psnr(a, b, c) == psnr(a[c:-c, c:-c], b[c:-c, c:-c], 0)
        assert ssim(a, b, c) == ssim(a[c:-c, c:-c], b[c:-c, c:-c], 0)
    # damage confined to a 2-pixel frame disappears with crop_border=2
    c = a.copy()
    c[:2], c[-2:], c[:, :2], c[:, -2:] = 0, 0, 0, 0
    assert psnr(a, c, 2) == float("inf") and ssim(a, c, 2) == 1.0
    assert psnr(a, c, 1) < 30 and ssim(a, c, 1) < 1.0


def test_symmetry_and_float_input():
    a, b = golden_pair()
    assert psnr(a, b, 2) == psnr(b, a, 2)
    assert ssim(a, b, 2) == pytest.approx(ssim(b, a, 2), abs=1e-15)
    af, bf = a.astype(np.float32) / 255.0, b.astype(np.float64) / 255.0
    assert psnr(af, bf, 2) == pytest.approx(psnr(a, b, 2), abs=1e-5)
    assert ssim(af, bf, 2) == pytest.approx(ssim(a, b, 2), abs=1e-7)
    # HxW (already luma) input is accepted
    ya, yb = a[..., 0], b[..., 0]
    assert psnr(ya, yb, 0) == pytest.approx(psnr(a[..., :1], b[..., :1], 0))


def test_rgb_ssim_is_channel_mean():
    a, b = golden_pair()
    per_channel = [ssim(a[..., k], b[..., k], 3) for k in range(3)]
    assert ssim(a, b, 3, y_channel=False) == pytest.approx(np.mean(per_channel), abs=1e-14)


def test_errors():
    a = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError, match=r"\(20, 20, 3\) vs \(20, 21, 3\)"):
        psnr(a, np.zeros((20, 21, 3), np.uint8), 0)
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(a, np.zeros((21, 20, 3), np.uint8), 0)
    with pytest.raises(ValueError, match="crop_border"):
        psnr(a, a, 10)
    with pytest.raises(ValueError, match="crop_border"):
        psnr(a, a, -1)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a, a, 5)
    with pytest.raises(ValueError, match="dtype"):
        psnr(a.astype(np.int32), a.astype(np.int32), 0)
