"""Auxiliary degradation tasks: named, frozen, YAML-serialisable recipes, and the default bank.

A :class:`Task` is ``(name, family, ops)``; each op is a :class:`drtl.degradations.ops.Op` (the op
kinds and their parameters are listed there). An op parameter is fixed or a ``[lo, hi]`` range
drawn from the rng per realisation (per pair). Families:

- fixed parameters (only noise draws from the rng): ``blur`` (blur kernels, including the
  downsampling kernel itself: clean bicubic, area, torch bicubic), ``noise``, ``jpeg``, ``combo``
  (blur/resize + noise + JPEG) and ``second_order`` (Real-ESRGAN order);
- camera-realistic, parameters drawn per pair: ``isp`` (a phone camera's processing after the
  sensor: lens blur, box sampling, Bayer mosaic + raw shot/read noise + demosaic, denoising smear,
  unsharp-mask sharpening with halos, white-balance/colour and tone jitter, JPEG), ``capture`` (the
  capture chain of zoom datasets such as RealSR / City100: optical blur (defocus disk, lens PSF),
  sensor box sampling, focal-length mismatch, sub-pixel misregistration and the resampling that
  aligns it) and ``realesrgan`` (Real-ESRGAN second-order chains with random kernel, resize, noise
  and JPEG parameters, ranges narrowed for x2).
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import yaml

from drtl.degradations.ops import (
    Op,
    check_scale,
    apply_ops,
    blur_op,
    isp_op,
    jpeg_op,
    modcrop,
    noise_op,
    resize_op,
    to_uint8,
)
from drtl.errors import ConfigError, DataError

FAMILIES = ("blur", "noise", "jpeg", "combo", "second_order", "isp", "capture", "realesrgan", "phone")


@dataclass(frozen=True)
class Task:
    """A named auxiliary degradation recipe (frozen, hashable, YAML-serialisable)."""

    name: str
    family: str
    ops: tuple[Op, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or "/" in self.name:
            raise ConfigError(f"task name {self.name!r} must be a non-empty string without '/'")
        if self.family not in FAMILIES:
            raise ConfigError(f"task {self.name}: family {self.family!r}; choose one of {', '.join(FAMILIES)}")
        ops = tuple(op if isinstance(op, Op) else Op.from_dict(op) for op in self.ops)
        object.__setattr__(self, "ops", ops)
        fractions = [op.p["fraction"] for op in ops if op.kind == "resize"]
        if fractions and not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
            raise ConfigError(
                f"task {self.name}: resize fractions {fractions} must sum to 1 (one total downscale)"
            )
        kinds = [op.kind for op in ops]
        if "phone" in kinds and (kinds.index("phone") != 0 or kinds.count("phone") > 1 or "resize" in kinds
                                 or "rescale" in kinds):
            raise ConfigError(f"task {self.name}: a phone op downscales by itself: it must be the first op, "
                              "once, with no resize/rescale op")
        if "rescale" in kinds and (
            "resize" not in kinds or max(i for i, k in enumerate(kinds) if k == "rescale")
            > max(i for i, k in enumerate(kinds) if k == "resize")
        ):
            raise ConfigError(f"task {self.name}: a rescale op must be followed by a resize op (to land on HR/scale)")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "ops": [op.to_dict() for op in self.ops]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Task":
        if not isinstance(d, dict) or not {"name", "family", "ops"} <= set(d):
            raise ConfigError(f"task {d!r} must be a mapping with name, family and ops")
        extra = sorted(set(d) - {"name", "family", "ops"})
        if extra:
            raise ConfigError(f"task {d.get('name')!r}: unknown key(s) {extra}")
        if not isinstance(d["ops"], (list, tuple)):
            raise ConfigError(f"task {d['name']!r}: ops must be a list")
        return cls(d["name"], d["family"], tuple(Op.from_dict(o) for o in d["ops"]))

    def resolved_ops(self) -> tuple[Op, ...]:
        """The ops as executed: a MATLAB-bicubic downscale is inserted after the leading blurs when
        the recipe has no resize op."""
        if any(op.kind in ("resize", "phone") for op in self.ops):
            return self.ops
        i = 0
        while i < len(self.ops) and self.ops[i].kind == "blur":
            i += 1
        return self.ops[:i] + (resize_op("matlab"),) + self.ops[i:]


def make_pair(hr: np.ndarray, task: Task, scale: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Degrade a clean HR image with ``task``: returns ``(lr_uint8, hr_uint8_modcropped)``.

    ``hr``: HWC RGB uint8. The LR image is exactly ``(H // scale, W // scale, 3)`` of the mod-cropped HR.
    """
    hr = np.asarray(hr)
    if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise DataError(f"make_pair expects an HWC RGB uint8 HR image, got {hr.dtype} {hr.shape}")
    if not isinstance(task, Task):
        raise ConfigError(f"make_pair needs a Task (see get_task), got {type(task).__name__}")
    if not isinstance(rng, np.random.Generator):
        raise ConfigError("make_pair needs rng=numpy.random.default_rng(seed)")
    scale = check_scale(scale)
    hr = np.ascontiguousarray(modcrop(hr, scale))
    x = apply_ops(hr.astype(np.float64) / 255.0, task.resolved_ops(), scale, rng, quantised=True)
    lr = to_uint8(x)
    assert lr.shape == (hr.shape[0] // scale, hr.shape[1] // scale, 3)
    return lr, hr


# ----------------------------------------------------------------------------- YAML


def dump_tasks(tasks: Iterable[Task], path: str | os.PathLike) -> None:
    """Write tasks to a YAML file (``{tasks: [...]}``), atomically."""
    from drtl.io import write_text

    tasks = list(tasks)
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"duplicate task names in {names}")
    text = yaml.safe_dump({"tasks": [t.to_dict() for t in tasks]}, sort_keys=False, default_flow_style=None)
    write_text(path, text)


def load_tasks(path: str | os.PathLike) -> list[Task]:
    """Read tasks written by :func:`dump_tasks` (a ``tasks:`` list or a bare list)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: task file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc.__class__.__name__}); fix the file") from None
    if isinstance(data, dict):
        data = data.get("tasks")
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a 'tasks:' list of task mappings")
    try:
        tasks = [Task.from_dict(d) for d in data]
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: duplicate task names")
    return tasks


# ----------------------------------------------------------------------------- default bank


def _iso(s):
    return blur_op("iso", sigma=s)


def _aniso(sx, sy, t):
    return blur_op("aniso", sigma_x=sx, sigma_y=sy, theta_deg=t)


def _gen(b, s=1.5, size=15):
    return blur_op("gen_gauss", size=size, sigma_x=s, beta=b)


def _plat(b, s=1.5, size=15):
    return blur_op("plateau", size=size, sigma_x=s, beta=b)


def _sinc(w, size=17):
    return blur_op("sinc", size=size, omega_c=w)


def _g(level, gray=False):
    return noise_op("gaussian", level, gray)


def _p(level, gray=False):
    return noise_op("poisson", level, gray)


_DOWN = resize_op("matlab")

FIXED_BANK: tuple[Task, ...] = (
    # blur family: blur kernel, then MATLAB bicubic downscale; plus the downsampling kernels alone
    Task("clean_bicubic", "blur", (_DOWN,)),
    Task("area_down", "blur", (resize_op("area"),)),
    # torch bilinear without antialias equals area at exactly x2, so the third pure-resize task is
    # torch bicubic (a = -0.75, no antialias: aliased, sharpened); bilinear appears in a combo
    Task("bicubic_noaa_down", "blur", (resize_op("bicubic"),)),
    Task("iso_blur_s1.2", "blur", (_iso(1.2), _DOWN)),
    Task("iso_blur_s1.6", "blur", (_iso(1.6), _DOWN)),
    Task("iso_blur_s2.4", "blur", (_iso(2.4), _DOWN)),
    Task("aniso_blur_s2.0x0.8_t45", "blur", (_aniso(2.0, 0.8, 45.0), _DOWN)),
    Task("aniso_blur_s3.0x1.0_t120", "blur", (_aniso(3.0, 1.0, 120.0), _DOWN)),
    Task("gen_gauss_blur_b0.7", "blur", (_gen(0.7), _DOWN)),
    Task("gen_gauss_blur_b3.0", "blur", (_gen(3.0), _DOWN)),
    Task("plateau_blur_b1.5", "blur", (_plat(1.5), _DOWN)),
    Task("sinc_blur_w1.2", "blur", (_sinc(1.2), _DOWN)),
    # noise family: clean bicubic downscale, then noise
    Task("gauss_noise5", "noise", (_DOWN, _g(5))),
    Task("gauss_noise15", "noise", (_DOWN, _g(15))),
    Task("gauss_noise30", "noise", (_DOWN, _g(30))),
    Task("gauss_noise_gray25", "noise", (_DOWN, _g(25, gray=True))),
    Task("poisson_noise2", "noise", (_DOWN, _p(2.0))),
    Task("poisson_noise_gray1", "noise", (_DOWN, _p(1.0, gray=True))),
    # jpeg family
    Task("jpeg_q30", "jpeg", (_DOWN, jpeg_op(30))),
    Task("jpeg_q60", "jpeg", (_DOWN, jpeg_op(60))),
    Task("jpeg_q85", "jpeg", (_DOWN, jpeg_op(85))),
    # combos (classic order: blur -> downscale -> noise -> jpeg)
    Task("iso_blur_s1.2+gauss_noise10+jpeg_q50", "combo", (_iso(1.2), _DOWN, _g(10), jpeg_op(50))),
    Task(
        "aniso_blur_s2.0x0.8_t45+poisson_noise1+jpeg_q70",
        "combo",
        (_aniso(2.0, 0.8, 45.0), _DOWN, _p(1.0), jpeg_op(70)),
    ),
    Task("gen_gauss_blur_b0.7+gauss_noise_gray15+jpeg_q40", "combo", (_gen(0.7), _DOWN, _g(15, True), jpeg_op(40))),
    Task("bilinear_down+gauss_noise10+jpeg_q70", "combo", (resize_op("bilinear"), _g(10), jpeg_op(70))),
    Task("area_down+poisson_noise1+jpeg_q60", "combo", (resize_op("area"), _p(1.0), jpeg_op(60))),
    # second order (Real-ESRGAN style): blur -> downscale -> noise -> blur2 -> noise2 -> jpeg
    Task(
        "2nd_iso_blur_s1.6+gauss_noise10+iso_blur_s0.8+gauss_noise5+jpeg_q60",
        "second_order",
        (_iso(1.6), _DOWN, _g(10), _iso(0.8), _g(5), jpeg_op(60)),
    ),
    Task(
        "2nd_aniso_blur_s2.0x0.8_t45+poisson_noise1+gen_gauss_blur_b0.7+gauss_noise_gray8+jpeg_q50",
        "second_order",
        (_aniso(2.0, 0.8, 45.0), _DOWN, _p(1.0), _gen(0.7, s=0.8, size=7), _g(8, True), jpeg_op(50)),
    ),
    Task(
        "2nd_plateau_blur_b1.5+area_half+gauss_noise8+iso_blur_s1.0+bilinear_half+sinc_blur_w2.0+jpeg_q70",
        "second_order",
        (
            _plat(1.5),
            resize_op("area", 0.5),
            _g(8),
            _iso(1.0),
            resize_op("bilinear", 0.5),
            _sinc(2.0, size=9),
            jpeg_op(70),
        ),
    ),
)

# --- camera-realistic families: parameters given as [lo, hi] are drawn per pair. Sizes are in the
# pixels the op sees (HR before the resize, LR after it).
_AREA = resize_op("area")  # sensor sampling: box integration over each LR pixel
_LENS = blur_op("iso", size=7, sigma=[0.5, 1.0])  # mild lens blur ahead of the sensor
_SHIFT = dict(dx=[-0.5, 0.5], dy=[-0.5, 0.5])
_SINC = blur_op("sinc", size=13, omega_c=[1.05, 3.14])  # Real-ESRGAN final sinc, omega in [pi/3, pi]


def _isp(kind, **p):
    return isp_op(kind, **p)


def _q(lo, hi):
    return jpeg_op([lo, hi])


CAMERA_BANK: tuple[Task, ...] = (
    # isp: lens + sensor, then a phone ISP on the LR raw (the order of drtl.degradations.camera)
    Task("isp_mild", "isp", (
        _LENS, _AREA, _isp("mosaic", shot=[0.0005, 0.002], read=[0.001, 0.003]),
        _isp("denoise", luma_sigma=0.4, chroma_sigma=[0.8, 1.5]), _isp("sharpen", amount=[0.5, 1.0], radius=1.0),
        _isp("tone", gamma=[0.9, 1.1]), _q(85, 95))),
    Task("isp_sharpen_halo", "isp", (
        _LENS, _AREA, _isp("mosaic", shot=[0.0005, 0.002], read=0.002), _isp("denoise", chroma_sigma=1.2),
        _isp("sharpen", amount=[1.5, 2.5], radius=[1.2, 2.0]), _q(75, 90))),
    Task("isp_heavy_denoise", "isp", (
        _LENS, _AREA, _isp("mosaic", shot=[0.003, 0.008], read=[0.004, 0.01]),
        _isp("denoise", luma_sigma=[1.0, 2.0], chroma_sigma=[1.5, 3.0], range_sigma=[0.05, 0.12]),
        _isp("sharpen", amount=[0.6, 1.2], radius=1.0, threshold=0.01), _q(70, 90))),
    Task("isp_wb_tone_jitter", "isp", (
        _LENS, _AREA, _isp("mosaic", shot=0.001, read=0.002, demosaic="mhc"),
        _isp("color", r_gain=[0.85, 1.2], b_gain=[0.85, 1.2], saturation=[0.8, 1.3]),
        _isp("tone", gamma=[0.8, 1.25], contrast=[-0.2, 0.5]), _isp("denoise", chroma_sigma=1.0),
        _isp("sharpen", amount=[0.3, 0.8], radius=1.0), _q(80, 95))),
    Task("isp_low_light", "isp", (
        _LENS, _AREA, _isp("tone", gamma=[1.3, 1.7]),  # under-exposure, then digital gain
        _isp("mosaic", shot=[0.004, 0.01], read=[0.006, 0.012], demosaic="mhc"),
        _isp("tone", gamma=[0.6, 0.77]), _isp("denoise", luma_sigma=0.8, chroma_sigma=[2.0, 3.0]),
        _isp("sharpen", amount=0.5, radius=1.0), _q(60, 80))),
    # capture: optics, sensor box sampling, misregistration + resampling (no ISP)
    Task("capture_defocus_shift", "capture", (
        _isp("defocus", radius=[0.8, 2.0]), _AREA, _isp("shift", **_SHIFT, order=3), noise_op("gaussian", [1, 3]))),
    Task("capture_aniso_psf_bilinear", "capture", (
        blur_op("aniso", size=13, sigma_x=[0.8, 1.8], sigma_y=[0.4, 1.0], theta_deg=[0, 180]), _AREA,
        _isp("shift", **_SHIFT, order=1), noise_op("poisson", [0.2, 0.6]))),
    Task("capture_zoom_mismatch", "capture", (
        blur_op("iso", size=9, sigma=[0.6, 1.4]), _isp("rescale", factor=[0.92, 1.08], mode="bicubic"), _AREA,
        _isp("shift", **_SHIFT, order=3))),
    Task("capture_two_stage_resample", "capture", (
        _isp("defocus", radius=[0.5, 1.2]), resize_op("area", 0.5), _isp("shift", **_SHIFT, order=1),
        resize_op("bicubic", 0.5), _q(88, 95))),
    # realesrgan: blur -> random resize -> noise -> JPEG, twice; final sinc (ranges milder than Real-ESRGAN's)
    Task("realesrgan_iso_gauss", "realesrgan", (
        blur_op("iso", size=13, sigma=[0.2, 2.0]), _isp("rescale", factor=[0.6, 1.3], mode="bilinear"),
        resize_op("area", 0.5), noise_op("gaussian", [1, 15]), _q(50, 95),
        blur_op("iso", size=7, sigma=[0.2, 1.0]), _isp("rescale", factor=[0.8, 1.2], mode="bicubic"),
        resize_op("bilinear", 0.5), noise_op("gaussian", [1, 10]), _SINC, _q(60, 95))),
    Task("realesrgan_aniso_poisson", "realesrgan", (
        blur_op("aniso", size=13, sigma_x=[0.2, 2.0], sigma_y=[0.2, 2.0], theta_deg=[0, 180]),
        _isp("rescale", factor=[0.6, 1.3], mode="area"), resize_op("bicubic", 0.5), noise_op("poisson", [0.05, 1.5]),
        _q(50, 95), blur_op("aniso", size=7, sigma_x=[0.2, 1.0], sigma_y=[0.2, 1.0], theta_deg=[0, 180]),
        _isp("rescale", factor=[0.8, 1.2], mode="bilinear"), resize_op("area", 0.5),
        noise_op("poisson", [0.05, 1.0]), _q(60, 95), _SINC)),
    Task("realesrgan_gen_gauss_gray", "realesrgan", (
        blur_op("gen_gauss", size=13, sigma_x=[0.2, 2.0], beta=[0.5, 4.0]),
        _isp("rescale", factor=[0.6, 1.3], mode="bicubic"), resize_op("bilinear", 0.5),
        noise_op("gaussian", [1, 15], gray=True), _q(50, 95),
        blur_op("gen_gauss", size=7, sigma_x=[0.2, 1.0], beta=[0.5, 4.0]), resize_op("bicubic", 0.5),
        noise_op("gaussian", [1, 10], gray=True), _SINC, _q(60, 95))),
    Task("realesrgan_plateau_mixed", "realesrgan", (
        blur_op("plateau", size=13, sigma_x=[0.2, 2.0], beta=[1.0, 2.0]),
        _isp("rescale", factor=[0.6, 1.3], mode="area"), resize_op("area", 0.5),
        noise_op("poisson", [0.05, 1.5], gray=True), _q(50, 95), blur_op("iso", size=7, sigma=[0.2, 1.0]),
        resize_op("bicubic", 0.5), noise_op("gaussian", [1, 10]), _q(60, 95), _SINC)),
    Task("realesrgan_sinc_first", "realesrgan", (
        _SINC, _isp("rescale", factor=[0.6, 1.3], mode="bicubic"), resize_op("bilinear", 0.5),
        noise_op("gaussian", [1, 15]), _q(50, 95),
        blur_op("aniso", size=7, sigma_x=[0.2, 1.0], sigma_y=[0.2, 1.0], theta_deg=[0, 180]),
        resize_op("area", 0.5), noise_op("poisson", [0.05, 1.0]), _SINC, _q(60, 95))),
)

def _phone(**ranges):
    return isp_op("phone", **ranges)


# phone: the whole camera simulator of drtl.degradations.camera with its parameters drawn per pair,
# five kinds of phone. The built-in sample's target camera (CameraParams' defaults) lies inside
# phone_mid's ranges: on the sample the bank holds the target's kind of degradation (see docs/method.md).
_PHONE_MID = dict(lens_sigma_x=[0.4, 0.7], lens_sigma_y=[0.25, 0.45], lens_theta_deg=[0, 180],
                  defocus_radius=[0.2, 0.5], r_gain=[1.6, 2.2], b_gain=[1.3, 1.8], shot_noise=[0.0008, 0.0025],
                  read_noise=[0.001, 0.003], chroma_denoise_sigma=[0.8, 1.6], luma_denoise_sigma=[0.3, 0.7],
                  sharpen_amount=[0.6, 1.2], sharpen_sigma=[0.9, 1.5], jpeg_quality=[80, 92])
PHONE_BANK: tuple[Task, ...] = (
    Task("phone_mid", "phone", (_phone(**_PHONE_MID),)),
    Task("phone_soft", "phone", (_phone(**{**_PHONE_MID, "lens_sigma_x": [0.8, 1.3], "lens_sigma_y": [0.6, 1.0],
                                           "defocus_radius": [0.5, 1.0], "sharpen_amount": [0.0, 0.4]}),)),
    Task("phone_sharp", "phone", (_phone(**{**_PHONE_MID, "lens_sigma_x": [0.2, 0.4], "lens_sigma_y": [0.1, 0.3],
                                            "defocus_radius": [0.0, 0.2], "sharpen_amount": [1.5, 2.5]}),)),
    Task("phone_low_light", "phone", (_phone(**{**_PHONE_MID, "shot_noise": [0.004, 0.01],
                                                "read_noise": [0.004, 0.008], "luma_denoise_sigma": [0.8, 1.4],
                                                "chroma_denoise_sigma": [1.6, 2.6], "jpeg_quality": [70, 85]}),)),
    Task("phone_clean", "phone", (_phone(**{**_PHONE_MID, "shot_noise": [0.0, 0.0005], "read_noise": [0.0, 0.001],
                                            "luma_denoise_sigma": [0.0, 0.3], "chroma_denoise_sigma": [0.3, 0.8],
                                            "sharpen_amount": [0.2, 0.6], "jpeg_quality": [92, 98]}),)),
)

# the default bank: the fixed-parameter families first (their order and outputs are unchanged),
# then the camera-realistic ones
DEFAULT_BANK: tuple[Task, ...] = FIXED_BANK + CAMERA_BANK + PHONE_BANK

_REGISTRY: dict[str, Task] = {t.name: t for t in DEFAULT_BANK}
assert len(_REGISTRY) == len(DEFAULT_BANK), "duplicate names in DEFAULT_BANK"

# Target cameras that are not in the bank (`drtl data target NAME`): fixed parameters, no ranges.
# camera_nonlinear: a phone whose LR the camera-fitted task (a linear filter + noise) cannot
# reproduce: strong raw noise, a heavy denoising smear (luma 2.0 / chroma 3.5 LR px; the bank's
# phones stop at 1.4 / 2.6), strong wide sharpening halos (amount 3.0, radius 2.0; the bank stops at
# 2.5 / 1.5) and JPEG quality 25 (the bank's lowest is 30), each outside the bank's ranges.
TARGET_CAMERAS: tuple[Task, ...] = (
    Task("camera_nonlinear", "phone", (_phone(
        lens_sigma_x=0.5, lens_sigma_y=0.4, lens_theta_deg=60.0, defocus_radius=0.3, r_gain=1.8, b_gain=1.5,
        shot_noise=0.006, read_noise=0.006, luma_denoise_sigma=2.0, chroma_denoise_sigma=3.5,
        sharpen_amount=3.0, sharpen_sigma=2.0, jpeg_quality=25),)),
)
_TARGETS: dict[str, Task] = {t.name: t for t in TARGET_CAMERAS}
assert not set(_TARGETS) & set(_REGISTRY), "a target camera shares a name with a bank task"


def task_names() -> list[str]:
    """Names of the default bank, in bank order."""
    return [t.name for t in DEFAULT_BANK]


def get_task(name: str) -> Task:
    """The default-bank task called ``name``."""
    return _lookup(name, _REGISTRY, "auxiliary task", "; see drtl.degradations.task_names()")


def get_target(name: str) -> Task:
    """A target degradation for ``drtl data target``: a bank task (a positive control) or one of
    :data:`TARGET_CAMERAS`."""
    return _lookup(name, {**_REGISTRY, **_TARGETS}, "target",
                   f"; a bank task or a target camera ({', '.join(_TARGETS)})")


def _lookup(name: str, table: dict[str, Task], what: str, otherwise: str) -> Task:
    """``table[name]``, else a one-line ConfigError naming the close matches (or ``otherwise``)."""
    try:
        return table[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(table), n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else otherwise
        raise ConfigError(f"unknown {what} {name!r}{hint}") from None


def task_bank(names: Iterable[str] | None = None, families: Iterable[str] | None = None) -> list[Task]:
    """A subset of the default bank by names and/or families (bank order; both filters apply)."""
    tasks = list(DEFAULT_BANK) if names is None else [get_task(n) for n in names]
    if families is not None:
        families = [families] if isinstance(families, str) else list(families)
        bad = sorted(set(families) - set(FAMILIES))
        if bad:
            raise ConfigError(f"unknown task families {bad}; choose from {', '.join(FAMILIES)}")
        tasks = [t for t in tasks if t.family in families]
    if not tasks:
        raise ConfigError("the task selection is empty; check names/families")
    return tasks
