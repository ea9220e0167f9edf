"""The camera-fitted degradation (drtl.degradations.fitted): a known linear camera is recovered from
its own pairs, its noise level is measured, and a camera it cannot hold reports a poor fit."""

import numpy as np
import pytest

from drtl.degradations.camera import camera_degradation
from drtl.degradations.fitted import FittedCamera, apply_fitted, default_margin, fit_camera
from drtl.errors import DataError
from drtl.relation.fitted import fitted_pairs
from drtl.metrics import psnr


def _texture(seed: int, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.random((size // 8, size // 8, 3))
    img = np.kron(img, np.ones((8, 8, 1))) * 0.6 + rng.random((size, size, 3)) * 0.4  # edges + fine detail
    return (img * 255).round().astype(np.uint8)


def _known_camera(scale: int = 2, noise_var: float = 0.0) -> FittedCamera:
    m = default_margin(scale)
    n = scale + 2 * m
    k = np.zeros((3, 3, n, n), np.float32)
    r = np.arange(n) - (n - 1) / 2  # centred on the s x s cell (n - s is even)
    blur = np.exp(-0.5 * ((r[:, None] / 1.2) ** 2 + (r[None, :] / 0.7) ** 2 + 0.6 * r[:, None] * r[None, :]))
    gains, cross = (0.9, 1.0, 0.8), 0.05
    for c in range(3):
        for c2 in range(3):
            k[c, c2] = blur / blur.sum() * (gains[c] if c == c2 else cross)
    return FittedCamera(scale, m, k, np.array([0.02, -0.01, 0.03], np.float32),
                        np.array([[noise_var, 0.0]] * 3, np.float32), 0.0, 0)


def test_a_known_linear_camera_is_recovered_from_its_pairs():
    cam = _known_camera()
    pairs = [(apply_fitted(hr, cam), hr) for hr in (_texture(s) for s in range(3))]
    fit = fit_camera(pairs, 2, samples=8000)
    assert fit.kernel.shape == cam.kernel.shape
    assert np.abs(fit.kernel - cam.kernel).max() < 0.02  # gains, cross-talk and blur shape
    assert np.allclose(fit.bias, cam.bias, atol=0.01)
    assert fit.fit_psnr > 45  # only uint8 rounding is left
    held = _texture(9)
    assert psnr(apply_fitted(held, fit), apply_fitted(held, cam), crop_border=4, y_channel=False) > 42
    again = FittedCamera.from_dict(fit.to_dict())
    assert np.array_equal(apply_fitted(held, again), apply_fitted(held, fit))


def test_the_noise_level_is_measured():
    std = 0.02
    cam = _known_camera(noise_var=std ** 2)
    rng = np.random.default_rng(0)
    pairs = [(apply_fitted(hr, cam, rng), hr) for hr in (_texture(s, 128) for s in range(3))]
    fit = fit_camera(pairs, 2, samples=20000)
    measured = np.sqrt(fit.noise[:, 0] + fit.noise[:, 1] * 0.5)
    assert np.allclose(measured, std, rtol=0.2)
    assert np.abs(fit.kernel - cam.kernel).max() < 0.05  # noise does not bias the kernel
    clean = apply_fitted(_texture(9), fit)
    noisy = apply_fitted(_texture(9), fit, np.random.default_rng(1))
    assert 0.5 * std * 255 < np.std(noisy.astype(float) - clean) < 1.5 * std * 255


def test_a_non_linear_camera_fits_worse_than_a_linear_one():
    rng = np.random.default_rng(0)
    hrs = [_texture(s) for s in range(3)]
    linear = fit_camera([(apply_fitted(hr, _known_camera()), hr) for hr in hrs], 2, samples=8000)
    phone = fit_camera([(camera_degradation(hr, 2, rng), hr) for hr in hrs], 2, samples=8000)
    assert phone.fit_psnr < linear.fit_psnr - 5  # JPEG, mosaic and noise: the fit says it is poorer


def test_bad_input_is_refused_in_one_line():
    with pytest.raises(DataError, match="no pairs"):
        fit_camera([], 2)
    hr = _texture(0)
    with pytest.raises(DataError, match="is not 2 x LR"):
        fit_camera([(hr[:10, :10], hr)], 2)
    with pytest.raises(DataError, match="multiple of the scale"):
        apply_fitted(hr[:95, :95], _known_camera())


def test_fitted_pairs_without_noise_repeat_the_same_realisation():
    pairs = fitted_pairs(_known_camera(), [_texture(0)], seed=0, variants=2, noise_scale=0)
    assert len(pairs) == 2 and np.array_equal(pairs[0][0], pairs[1][0])  # no noise: the two realisations agree


def test_the_nonlinear_target_camera_lies_outside_the_bank_and_the_linear_fit():
    from drtl.degradations.tasks import PHONE_BANK, TARGET_CAMERAS, get_target, make_pair, task_bank
    from drtl.errors import ConfigError

    cam = get_target("camera_nonlinear")
    assert cam in TARGET_CAMERAS and cam.name not in {t.name for t in task_bank()}  # never in the bank
    p = cam.ops[0].p
    for key in ("luma_denoise_sigma", "chroma_denoise_sigma", "sharpen_amount", "sharpen_sigma"):
        top = max(max(np.atleast_1d(t.ops[0].p[key])) for t in PHONE_BANK)
        assert p[key] > top, key  # beyond every phone of the bank
    assert p["jpeg_quality"] < 30  # below the bank's lowest JPEG quality (jpeg_q30)
    hrs = [_texture(s) for s in range(3)]
    mid = get_target("phone_mid")  # a bank task is a target too (the positive control)
    rng = np.random.default_rng(0)
    fits = [fit_camera([make_pair(hr, t, 2, rng) for hr in hrs], 2, samples=8000) for t in (mid, cam)]
    assert fits[1].fit_psnr < fits[0].fit_psnr - 1  # the linear fit holds it worse than a bank phone
    with pytest.raises(ConfigError, match="unknown target 'camera_nonlinaer'; did you mean camera_nonlinear"):
        get_target("camera_nonlinaer")
