"""Kernels, noise, JPEG, task recipes and the camera target degradation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from drtl.degradations import (
    DEFAULT_BANK,
    FAMILIES,
    CameraParams,
    Op,
    Task,
    anisotropic_gaussian,
    apply_kernel,
    blur_op,
    camera_degradation,
    camera_pair,
    dump_tasks,
    gaussian_noise,
    generalized_gaussian,
    get_task,
    imresize,
    isotropic_gaussian,
    jpeg,
    jpeg_op,
    load_tasks,
    make_kernel,
    make_pair,
    noise_op,
    plateau,
    poisson_noise,
    resize_op,
    sinc,
    task_bank,
)
from drtl.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def hr48() -> np.ndarray:
    """A deterministic 48x48 RGB uint8 image with edges, gradients and texture."""
    rng = np.random.default_rng(123)
    yy, xx = np.mgrid[0:48, 0:48]
    base = np.stack([xx * 4, yy * 4, (xx + yy) * 2], axis=-1).astype(np.float64) + 20
    base += ndimage.gaussian_filter(rng.normal(0, 40, (48, 48, 3)), (1, 1, 0))
    base[10:20, 12:36] = 230
    base[30:34, :] = 15
    return np.clip(np.round(base), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- kernels


ALL_KERNELS = [
    ("iso", dict(sigma=1.6)),
    ("aniso", dict(sigma_x=2.0, sigma_y=0.8, theta_deg=45.0)),
    ("gen_gauss", dict(sigma_x=1.5, beta=0.7)),
    ("plateau", dict(sigma_x=1.5, beta=1.5)),
    ("sinc", dict(omega_c=1.2)),
]


@pytest.mark.parametrize("kind,params", ALL_KERNELS)
@pytest.mark.parametrize("size", [7, 13, 21])
def test_kernels_sum_to_one_and_shape(kind, params, size):
    k = make_kernel(kind, size, **params)
    assert k.shape == (size, size)
    assert math.isclose(k.sum(), 1.0, abs_tol=1e-12)
    assert np.all(np.isfinite(k))
    # all these kernels are point-symmetric
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-15)


def test_isotropic_kernels_are_symmetric():
    for k in (isotropic_gaussian(11, 1.3), generalized_gaussian(11, 1.3, 2.0), plateau(11, 1.3, 1.0), sinc(11, 1.5)):
        np.testing.assert_allclose(k, k.T, atol=1e-15)
        np.testing.assert_allclose(k, k[::-1], atol=1e-15)
        np.testing.assert_allclose(k, k[:, ::-1], atol=1e-15)
        assert k.argmax() == k.size // 2
    # isotropic Gaussian == anisotropic with equal sigmas, any angle
    np.testing.assert_allclose(isotropic_gaussian(9, 1.1), anisotropic_gaussian(9, 1.1, 1.1, 0.7), atol=1e-15)


def test_anisotropic_orientation():
    k = anisotropic_gaussian(15, 3.0, 0.5, 0.0)  # long along x
    assert k[7, :].sum() > k[:, 7].sum() * 2
    k90 = anisotropic_gaussian(15, 3.0, 0.5, math.pi / 2)
    np.testing.assert_allclose(k90, k.T, atol=1e-12)


@pytest.mark.parametrize("size", [5, 8, 23, 0, 9.0, "9", None])
def test_kernel_size_validation(size):
    with pytest.raises(ConfigError, match="odd integer in 7..21"):
        isotropic_gaussian(size, 1.0)


def test_kernel_param_validation():
    with pytest.raises(ConfigError):
        isotropic_gaussian(9, 0.0)
    with pytest.raises(ConfigError):
        sinc(9, 4.0)
    with pytest.raises(ConfigError):
        make_kernel("box", 9, sigma=1.0)
    with pytest.raises(ConfigError):
        make_kernel("iso", 9)
    with pytest.raises(ConfigError):
        make_kernel("iso", 9, sigma=1.0, beta=2.0)


@pytest.mark.parametrize("kind,params", ALL_KERNELS)
def test_apply_kernel_matches_reference(kind, params):
    rng = np.random.default_rng(5)
    img = rng.random((20, 27, 3))
    k = make_kernel(kind, 9, **params)
    ref = np.stack([ndimage.correlate(img[:, :, c], k, mode="mirror") for c in range(3)], axis=-1)
    np.testing.assert_allclose(apply_kernel(img, k), ref, atol=1e-12)
    np.testing.assert_allclose(apply_kernel(img[:, :, 0], k), ref[:, :, 0], atol=1e-12)
    # a flat image stays flat (kernel sums to 1, reflect borders)
    np.testing.assert_allclose(apply_kernel(np.full((12, 12, 3), 0.3), k), 0.3, atol=1e-12)


# ----------------------------------------------------------------------------- noise, jpeg


def test_gaussian_noise_statistics():
    flat = np.full((64, 64, 3), 0.5)
    rng = np.random.default_rng(0)
    out = gaussian_noise(flat, 15, False, rng)
    assert out.dtype == np.float64 and out.shape == flat.shape
    assert abs((out - flat).std() - 15 / 255) < 0.003
    assert abs((out - flat).mean()) < 0.002
    # independent channels
    assert not np.allclose(out[:, :, 0], out[:, :, 1])
    gray = gaussian_noise(flat, 25, True, np.random.default_rng(0))
    np.testing.assert_array_equal(gray[:, :, 0], gray[:, :, 1])
    np.testing.assert_array_equal(gray[:, :, 0], gray[:, :, 2])
    assert abs((gray - flat).std() - 25 / 255) < 0.004
    # clipped to [0, 1]
    assert gaussian_noise(np.ones((8, 8, 3)), 50, False, rng).max() <= 1.0
    # uint8 input accepted
    assert gaussian_noise(np.full((8, 8, 3), 128, np.uint8), 5, False, rng).dtype == np.float64


def test_poisson_noise():
    rng = np.random.default_rng(1)
    ramp = np.tile(np.linspace(0, 1, 256)[None, :, None], (64, 1, 3))
    out = poisson_noise(ramp, 1.0, False, rng)
    assert out.shape == ramp.shape and out.min() >= 0 and out.max() <= 1
    d = out - ramp
    # shot noise grows with intensity: std ~ sqrt(x / 256)
    lo, hi = d[:, 20:60].std(), d[:, 150:200].std()
    assert hi > lo * 1.5
    assert abs(hi - math.sqrt(0.68 / 256)) < 0.01
    assert np.std(poisson_noise(ramp, 2.0, False, np.random.default_rng(1)) - ramp) > d.std() * 1.5
    gray = poisson_noise(ramp, 1.0, True, rng)
    np.testing.assert_allclose(gray[:, :, 0] - ramp[:, :, 0], gray[:, :, 2] - ramp[:, :, 2], atol=1e-12)


def test_noise_validation():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError):
        gaussian_noise(np.zeros((4, 4, 3)), -1, False, rng)
    with pytest.raises(ConfigError):
        poisson_noise(np.zeros((4, 4, 3)), 1.0, False, None)


def test_jpeg_quality_monotonic(hr48):
    errs = []
    for q in (10, 30, 60, 90):
        out = jpeg(hr48, q)
        assert out.dtype == np.uint8 and out.shape == hr48.shape
        errs.append(np.abs(out.astype(float) - hr48).mean())
    assert errs == sorted(errs, reverse=True) and errs[0] > errs[-1] * 2
    f = jpeg(hr48 / 255.0, 50)
    assert f.dtype == np.float64 and f.max() <= 1.0
    np.testing.assert_array_equal(np.round(f * 255).astype(np.uint8), jpeg(hr48, 50))
    for bad in (0, 101, 50.0, True):
        with pytest.raises(ConfigError, match="1..100"):
            jpeg(hr48, bad)


# ----------------------------------------------------------------------------- tasks


def test_bank_covers_families():
    assert len(DEFAULT_BANK) >= 16
    assert {t.family for t in DEFAULT_BANK} == set(FAMILIES)
    names = [t.name for t in DEFAULT_BANK]
    assert len(set(names)) == len(names)
    for must in ("clean_bicubic", "iso_blur_s1.6", "aniso_blur_s2.0x0.8_t45", "gen_gauss_blur_b0.7",
                 "plateau_blur_b1.5", "sinc_blur_w1.2", "gauss_noise15", "gauss_noise_gray25",
                 "poisson_noise2", "jpeg_q30", "jpeg_q60", "iso_blur_s1.2+gauss_noise10+jpeg_q50"):
        assert must in names
    modes = {op.p["mode"] for t in DEFAULT_BANK for op in t.ops if op.kind == "resize"}
    assert {"matlab", "area", "bilinear", "bicubic"} <= modes
    kernels = {op.p["kernel"] for t in DEFAULT_BANK for op in t.ops if op.kind == "blur"}
    assert kernels == {"iso", "aniso", "gen_gauss", "plateau", "sinc"}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_every_task_exact_shape(hr48, scale):
    rng = np.random.default_rng(scale)
    for task in DEFAULT_BANK:
        lr, hr = make_pair(hr48, task, scale, rng)
        assert lr.dtype == np.uint8 and hr.dtype == np.uint8, task.name
        assert lr.shape == (48 // scale, 48 // scale, 3), task.name
        assert hr.shape == (48 // scale * scale, 48 // scale * scale, 3)


def test_modcrop_and_odd_sizes(hr48):
    lr, hr = make_pair(hr48[:47, :46], get_task("iso_blur_s1.2+gauss_noise10+jpeg_q50"), 3, np.random.default_rng(0))
    assert hr.shape == (45, 45, 3) and lr.shape == (15, 15, 3)
    with pytest.raises(DataError):
        make_pair(hr48[:2, :2], get_task("clean_bicubic"), 4, np.random.default_rng(0))
    with pytest.raises(ConfigError):
        make_pair(hr48, get_task("clean_bicubic"), 2.5, np.random.default_rng(0))
    with pytest.raises(DataError):
        make_pair(hr48 / 255.0, get_task("clean_bicubic"), 2, np.random.default_rng(0))


def test_clean_bicubic_is_imresize(hr48):
    lr, hr = make_pair(hr48, get_task("clean_bicubic"), 4, np.random.default_rng(0))
    np.testing.assert_array_equal(lr, imresize(hr48, 1 / 4))


def test_determinism(hr48):
    noisy = [t.name for t in DEFAULT_BANK if t.family == "second_order"][:1] + ["gauss_noise15", "poisson_noise2"]
    for name in noisy:
        task = get_task(name)
        a, _ = make_pair(hr48, task, 2, np.random.default_rng(7))
        b, _ = make_pair(hr48, task, 2, np.random.default_rng(7))
        c, _ = make_pair(hr48, task, 2, np.random.default_rng(8))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c), name
    # noise-free tasks do not depend on the seed
    blur = get_task("aniso_blur_s2.0x0.8_t45")
    np.testing.assert_array_equal(
        make_pair(hr48, blur, 2, np.random.default_rng(1))[0], make_pair(hr48, blur, 2, np.random.default_rng(2))[0]
    )


def test_tasks_differ_from_each_other(hr48):
    outs = {t.name: make_pair(hr48, t, 2, np.random.default_rng(0))[0].astype(int) for t in DEFAULT_BANK}
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.abs(outs[a] - outs[b]).mean() > 0.2, (a, b)


def test_yaml_round_trip(tmp_path):
    path = tmp_path / "tasks.yaml"
    dump_tasks(DEFAULT_BANK, path)
    loaded = load_tasks(path)
    assert tuple(loaded) == DEFAULT_BANK
    assert [hash(t) for t in loaded] == [hash(t) for t in DEFAULT_BANK]
    for t in DEFAULT_BANK:
        assert Task.from_dict(t.to_dict()) == t
    text = path.read_text()
    assert "clean_bicubic" in text and "!!python" not in text


def test_task_validation_and_lookup(tmp_path):
    with pytest.raises(ConfigError, match="did you mean"):
        get_task("iso_blur_s1.7")
    assert [t.family for t in task_bank(families=["jpeg"])] == ["jpeg"] * len(task_bank(families="jpeg"))
    sub = task_bank(names=["jpeg_q30", "gauss_noise15"], families=["noise"])
    assert [t.name for t in sub] == ["gauss_noise15"]
    with pytest.raises(ConfigError):
        task_bank(families=["weather"])
    with pytest.raises(ConfigError):
        Task("x", "blur", (resize_op("area", 0.5),))  # fractions must sum to 1
    with pytest.raises(ConfigError):
        Task("x", "colour", ())
    with pytest.raises(ConfigError):
        Op("warp", ())
    with pytest.raises(ConfigError, match="odd integer"):
        blur_op("iso", size=8, sigma=1.0)
    with pytest.raises(ConfigError):
        noise_op("speckle", 3)
    with pytest.raises(ConfigError):
        jpeg_op(0)
    with pytest.raises(ConfigError):
        Op.from_dict({"kind": "resize", "mode": "lanczos"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  - {name: a, family: blur, ops: [{kind: blur, kernel: iso, size: 9}]}\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_tasks(bad)


def test_recipe_without_resize_and_split_resize(hr48):
    # no resize op: a MATLAB downscale is inserted after the leading blurs
    t = Task("blur_noise", "combo", (blur_op("iso", sigma=1.0), noise_op("gaussian", 0.0)))
    ref = Task("ref", "blur", (blur_op("iso", sigma=1.0), resize_op("matlab")))
    np.testing.assert_array_equal(
        make_pair(hr48, t, 2, np.random.default_rng(0))[0], make_pair(hr48, ref, 2, np.random.default_rng(0))[0]
    )
    # two partial resizes still land exactly on HR/scale
    split = Task("split", "second_order", (resize_op("area", 0.5), resize_op("bilinear", 0.5)))
    assert make_pair(hr48[:45, :45], split, 3, np.random.default_rng(0))[0].shape == (15, 15, 3)


# ----------------------------------------------------------------------------- camera


def test_camera_shape_determinism_and_distinct(hr48):
    for scale in (2, 3, 4):
        lr = camera_degradation(hr48[:47], scale, np.random.default_rng(0))
        assert lr.dtype == np.uint8 and lr.shape == (47 // scale, 48 // scale, 3)
    a = camera_degradation(hr48, 2, np.random.default_rng(3))
    b = camera_degradation(hr48, 2, np.random.default_rng(3))
    c = camera_degradation(hr48, 2, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    for task in DEFAULT_BANK:
        lr, _ = make_pair(hr48, task, 2, np.random.default_rng(3))
        assert np.abs(lr.astype(int) - a).mean() > 1.0, task.name
    lr, hr = camera_pair(hr48[:45, :46], 3, np.random.default_rng(0))
    assert hr.shape == (45, 45, 3) and lr.shape == (15, 15, 3)


def test_camera_params():
    p = CameraParams()
    assert p.jpeg_quality == 85
    with pytest.raises(ConfigError):
        CameraParams(jpeg_quality=0)
    with pytest.raises(ConfigError):
        CameraParams(read_noise=-1.0)
    with pytest.raises(ConfigError, match="unknown camera parameter"):
        camera_degradation(np.zeros((8, 8, 3), np.uint8), 2, np.random.default_rng(0), iso=100)
    img = np.full((16, 16, 3), 128, np.uint8)
    quiet = camera_degradation(img, 2, np.random.default_rng(0), shot_noise=0.0, read_noise=0.0, jpeg_quality=100)
    assert np.abs(quiet.astype(int) - 128).max() <= 2  # a flat grey stays grey without noise
