"""The camera-realistic auxiliary bank: ranged op parameters, the isp / capture / realesrgan
families, and the pinned outputs of the original 29 fixed-parameter tasks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from drtl.degradations import (
    DEFAULT_BANK,
    FAMILIES,
    Op,
    Task,
    apply_ops,
    blur_op,
    dump_tasks,
    get_task,
    isp_op,
    jpeg_op,
    load_tasks,
    make_pair,
    resize_op,
    task_bank,
    task_names,
)
from drtl.degradations import isp
from drtl.degradations.camera import _mosaic_masks
from drtl.degradations.tasks import CAMERA_BANK, FIXED_BANK
from drtl.errors import ConfigError

NEW_FAMILIES = ("isp", "capture", "realesrgan")

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


# ----------------------------------------------------------------------------- the bank


def test_bank_composition():
    from drtl.degradations.tasks import PHONE_BANK

    assert len(DEFAULT_BANK) <= 50 and DEFAULT_BANK == FIXED_BANK + CAMERA_BANK + PHONE_BANK
    assert [t.name for t in FIXED_BANK] == list(json.loads(GOLDEN.read_text()))  # order unchanged
    assert set(NEW_FAMILIES) <= set(FAMILIES)
    for family in NEW_FAMILIES:
        tasks = task_bank(families=family)
        assert 4 <= len(tasks) <= 6, family
        assert all(any(op.ranged for op in t.ops) for t in tasks), family  # drawn per pair
    assert {t.family for t in task_bank()} == set(FAMILIES)  # the default selection includes them
    kinds = {op.kind for t in CAMERA_BANK for op in t.ops}
    assert set(isp.SPECS) - {"phone"} <= kinds  # phone: the simulator family, tested below
    assert {op.p["demosaic"] for t in CAMERA_BANK for op in t.ops if op.kind == "mosaic"} == {"bilinear", "mhc"}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_camera_tasks_shapes_dtype(hr48, scale):
    for task in CAMERA_BANK:
        for h, w in ((48, 48), (47, 46)):
            lr, hr = make_pair(hr48[:h, :w], task, scale, np.random.default_rng(scale))
            assert lr.dtype == np.uint8 and lr.shape == (h // scale, w // scale, 3), task.name
            assert hr.shape == (h // scale * scale, w // scale * scale, 3)
        lr, _ = make_pair(hr48[:scale, :scale], task, scale, np.random.default_rng(0))  # a 1x1 LR image
        assert lr.shape == (1, 1, 3), task.name


def test_camera_tasks_deterministic_per_seed(hr48):
    for task in CAMERA_BANK:
        a, _ = make_pair(hr48, task, 2, np.random.default_rng(7))
        b, _ = make_pair(hr48, task, 2, np.random.default_rng(7))
        c, _ = make_pair(hr48, task, 2, np.random.default_rng(8))
        np.testing.assert_array_equal(a, b)
        assert np.abs(a.astype(int) - c).mean() > 0.1, task.name
    # noise-free: the realisations differ through the drawn parameters alone
    assert not any(op.kind in ("noise", "mosaic") for op in get_task("capture_zoom_mismatch").ops)


def test_ranges_drawn_in_bounds_and_vary():
    for task in CAMERA_BANK:
        for op in task.ops:
            ranges = {k: v for k, v in op.params if isinstance(v, tuple)}
            if not ranges:
                continue
            rng = np.random.default_rng(0)
            draws = [op.draw(rng) for _ in range(50)]
            for key, (lo, hi) in ranges.items():
                vals = np.array([d[key] for d in draws])
                assert vals.min() >= lo and vals.max() <= hi, (task.name, key)
                assert len(np.unique(vals)) > 5, (task.name, key)
                if op.kind == "jpeg":
                    assert all(isinstance(d[key], int) for d in draws)
            fixed = {k: v for k, v in op.params if not isinstance(v, tuple)}
            assert all(d[k] == v for d in draws for k, v in fixed.items())
    # a fixed op draws nothing: the rng is untouched and old recipes give old pairs
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    assert get_task("jpeg_q30").ops[-1].draw(rng) == {"quality": 30}
    assert rng.bit_generator.state == state


def test_ranged_blur_draws_per_pair(hr48):
    ranged = Task("r", "blur", (blur_op("iso", sigma=[0.5, 2.5]), resize_op("matlab")))
    outs = [make_pair(hr48, ranged, 2, np.random.default_rng(s))[0] for s in range(4)]
    assert len({o.tobytes() for o in outs}) == 4
    assert ranged.ops[0].p["size"] == 17  # auto size covers the top of the range
    with pytest.raises(ConfigError, match="draw"):
        ranged.ops[0].kernel()
    # jpeg quality range: the pair equals the fixed quality it drew
    rng = np.random.default_rng(11)
    q = Op("jpeg", (("quality", (20, 40)),)).draw(np.random.default_rng(11))["quality"]
    a, _ = make_pair(hr48, Task("q", "jpeg", (resize_op("area"), jpeg_op([20, 40]))), 2, rng)
    b, _ = make_pair(hr48, Task("q", "jpeg", (resize_op("area"), jpeg_op(q))), 2, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)


def test_yaml_round_trip_camera_tasks(tmp_path):
    path = tmp_path / "tasks.yaml"
    dump_tasks(CAMERA_BANK, path)
    text = path.read_text()
    assert "!!python" not in text and "[0.5, 1.0]" in text and "mosaic" in text
    loaded = load_tasks(path)
    assert tuple(loaded) == CAMERA_BANK
    assert [hash(t) for t in loaded] == [hash(t) for t in CAMERA_BANK]
    for t in CAMERA_BANK:
        assert Task.from_dict(t.to_dict()) == t
    hand = tmp_path / "hand.yaml"
    hand.write_text("tasks:\n  - name: mine\n    family: isp\n    ops:\n      - {kind: resize, mode: area}\n"
                    "      - {kind: sharpen, amount: [1, 2]}\n      - {kind: jpeg, quality: [70, 90]}\n")
    (mine,) = load_tasks(hand)
    assert mine.ops[1].p == {"amount": (1, 2), "radius": 1.0, "threshold": 0.0} and mine.ops[2].ranged


BAD_OPS = [
    ({"kind": "sharpen"}, "missing parameter 'amount'"),
    ({"kind": "sharpen", "amount": 1, "halo": 2}, "unknown parameter"),
    ({"kind": "tone", "gamma": [2.0, 1.0]}, "lo <= hi"),
    ({"kind": "tone", "gamma": [1.0, 2.0, 3.0]}, "range"),
    ({"kind": "tone", "gamma": "strong"}, "finite number"),
    ({"kind": "tone", "gamma": True}, "finite number"),
    ({"kind": "color", "r_gain": 5}, "out of bounds"),
    ({"kind": "color", "saturation": [0.5, 4.0]}, "out of bounds"),
    ({"kind": "mosaic", "demosaic": "vng"}, "choose one of bilinear, mhc"),
    ({"kind": "shift", "order": 2}, "choose one of"),
    ({"kind": "shift", "order": True}, "choose one of"),
    ({"kind": "rescale", "factor": [0.1, 1.0]}, "out of bounds"),
    ({"kind": "rescale", "factor": 1.1, "mode": "lanczos"}, "choose one of"),
    ({"kind": "defocus"}, "missing parameter 'radius'"),
    ({"kind": "denoise", "luma_sigma": float("nan")}, "finite number"),
    ({"kind": "jpeg", "quality": [10, 101]}, "out of bounds"),
    ({"kind": "jpeg", "quality": [10.5, 90]}, "integer"),
    ({"kind": "jpeg"}, "missing parameter 'quality'"),
    ({"kind": "noise", "type": "gaussian", "level": [-1, 3]}, "out of bounds"),
    ({"kind": "blur", "kernel": "iso", "size": 9, "sigma": [0, 1]}, "sigma"),
    ({"kind": "blur", "kernel": "sinc", "size": 9, "omega_c": [1, 4]}, "pi"),
    ({"kind": "blur", "kernel": "iso", "size": [7, 9], "sigma": 1}, "odd integer"),
    ({"kind": "resize", "fraction": [0.5, 1.0]}, "must be fixed"),
    ({"kind": "warp"}, "unknown op kind"),
]


@pytest.mark.parametrize("op,match", BAD_OPS)
def test_bad_parameters_one_line_config_error(op, match):
    with pytest.raises(ConfigError, match=match) as exc:
        Op.from_dict(op)
    assert "\n" not in str(exc.value)


def test_bad_task_and_file(tmp_path):
    with pytest.raises(ConfigError, match="followed by a resize"):
        Task("x", "capture", (isp_op("rescale", factor=1.1), blur_op("iso", sigma=1.0)))
    with pytest.raises(ConfigError, match="followed by a resize"):
        Task("x", "capture", (resize_op("area"), isp_op("rescale", factor=1.1)))
    with pytest.raises(ConfigError, match="isp_op"):
        isp_op("blur", sigma=1.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  - {name: a, family: isp, ops: [{kind: tone, gamma: [3, 1]}]}\n")
    with pytest.raises(ConfigError, match="bad.yaml.*gamma") as exc:
        load_tasks(bad)
    assert "\n" not in str(exc.value)


# ----------------------------------------------------------------------------- the steps


@pytest.mark.parametrize("kind", sorted(set(isp.SPECS) - {"phone"}))  # phone downscales: tested below
def test_isp_steps_float_in_unit_range(kind):
    rng = np.random.default_rng(0)
    x = np.clip(_image(32, 30) / 255.0 + rng.normal(0, 0.05, (32, 30, 3)), 0, 1)
    spec = isp.SPECS[kind]
    # every numeric parameter at its top (the strongest setting), choices at their default
    params = {k: (r[0] if len(r) == 2 else r[2]) for k, r in spec.items()}
    out = isp.OPS[kind](x, np.random.default_rng(1), **params)
    assert out.dtype == np.float64 and out.ndim == 3 and out.shape[2] == 3
    assert np.all(np.isfinite(out)) and out.min() >= 0.0 and out.max() <= 1.0
    if kind != "rescale":
        assert out.shape == x.shape
    # a whole recipe of these steps (ranges drawn) stays in [0, 1] too
    ops = [isp_op("mosaic", shot=[0, 0.01], read=0.01), isp_op("sharpen", amount=[2, 5]),
           isp_op("tone", gamma=[0.3, 3])]
    y = apply_ops(x[:30, :30], [resize_op("area"), *ops], 2, np.random.default_rng(2))
    assert y.shape == (15, 15, 3) and y.min() >= 0.0 and y.max() <= 1.0


def test_isp_steps_behave():
    rng = np.random.default_rng(0)
    flat = np.full((16, 16, 3), 0.4)
    for demosaic in ("bilinear", "mhc"):  # no noise: a flat grey survives the raw round trip
        np.testing.assert_allclose(isp.mosaic(flat, rng, 0.0, 0.0, demosaic), 0.4, atol=1e-12)
    yy, xx = np.mgrid[0:24, 0:24] / 23.0
    ramp = np.stack([xx, yy, (xx + yy) / 2], -1) * 0.8 + 0.1
    raw = (ramp * _mosaic_masks(24, 24)).sum(2)
    np.testing.assert_allclose(isp.mhc_demosaic(raw)[2:-2, 2:-2], ramp[2:-2, 2:-2], atol=1e-12)
    noisy = isp.mosaic(flat, np.random.default_rng(1), 0.002, 0.003, "bilinear")
    assert 0.005 < noisy.std() < 0.05
    # sharpening overshoots a step edge (halo); denoising by bilateral keeps the edge, Gaussian does not
    step = np.zeros((16, 16, 3))
    step[:, 8:] = 0.6
    step += 0.2
    sharp = isp.sharpen(step, rng, 1.5, 1.5, 0.0)
    assert sharp.max() > 0.85 and sharp.min() < 0.15
    tex = step + np.random.default_rng(2).normal(0, 0.03, (16, 16, 1))  # luma-only noise
    bil = isp.denoise(tex, rng, 2.0, 0.0, 0.1)
    gau = isp.denoise(tex, rng, 2.0, 0.0, 0.0)
    edge = lambda img: np.abs(img[:, 8] - img[:, 7]).mean()  # noqa: E731
    assert edge(bil) > 0.5 and edge(gau) < 0.4
    assert bil[:, :6].std() < tex[:, :6].std() / 2
    # shift by one whole pixel = translation; colour gains and tone curve
    img = _image(16, 16) / 255.0
    np.testing.assert_allclose(isp.shift(img, rng, 1.0, 0.0, 1)[:, 1:], img[:, :-1], atol=1e-12)
    np.testing.assert_allclose(isp.color(flat, rng, 1.2, 0.8, 1.0)[0, 0], [0.48, 0.4, 0.32], atol=1e-12)
    assert np.all(np.diff(isp.tone(np.linspace(0, 1, 11)[None, :, None].repeat(3, 2), rng, 0.7, 0.5)[0, :, 0]) > 0)
    assert isp.rescale(img, rng, 1.25, "bicubic").shape == (20, 20, 3)
    assert isp.defocus(img, rng, 0.3) is img  # below half a pixel: a delta


if __name__ == "__main__":  # pragma: no cover
    _regenerate_golden()


# ---------------------------------------------------------------- the phone family (camera simulator)
def test_phone_op_is_the_camera_simulator_with_its_defaults():
    from drtl.degradations.camera import camera_degradation
    from drtl.degradations.ops import apply_ops, isp_op

    hr = (np.random.default_rng(4).random((48, 40, 3)) * 255).astype(np.uint8)
    ours = apply_ops(hr / 255.0, [isp_op("phone")], 2, np.random.default_rng(7), quantised=True)
    ref = camera_degradation(hr, 2, np.random.default_rng(7)) / 255.0
    assert ours.shape == (24, 20, 3) and np.array_equal(ours, ref)


def test_phone_tasks_draw_per_pair_and_must_come_first():
    from drtl.degradations.ops import isp_op, resize_op
    from drtl.degradations.tasks import Task, get_task, make_pair

    hr = (np.random.default_rng(5).random((64, 64, 3)) * 255).astype(np.uint8)
    t = get_task("phone_mid")
    a, _ = make_pair(hr, t, 2, np.random.default_rng(1))
    b, _ = make_pair(hr, t, 2, np.random.default_rng(2))
    c, _ = make_pair(hr, t, 2, np.random.default_rng(1))
    assert a.shape == (32, 32, 3) and np.array_equal(a, c) and not np.array_equal(a, b)
    with pytest.raises(ConfigError, match="phone op downscales by itself"):
        Task("bad", "phone", (isp_op("phone"), resize_op("area")))
    with pytest.raises(ConfigError):
        isp_op("phone", jpeg_quality=[90, 120])
