"""Degradations: blur kernels, resizing (MATLAB bicubic), noise, JPEG, degradation ops, auxiliary
task recipes and the camera-like target degradation. Pure functions of (image, params, rng); numpy
HWC RGB images, uint8 or float64 in [0, 1]."""

from drtl.degradations.camera import CameraParams, camera_degradation, camera_pair
from drtl.degradations.jpeg import jpeg
from drtl.degradations.kernels import (
    KERNEL_TYPES,
    anisotropic_gaussian,
    apply_kernel,
    generalized_gaussian,
    isotropic_gaussian,
    make_kernel,
    plateau,
    sinc,
)
from drtl.degradations.noise import gaussian_noise, poisson_noise
from drtl.degradations.resize import RESIZE_MODES, imresize, resize
from drtl.degradations.ops import Op, apply_ops, blur_op, jpeg_op, modcrop, noise_op, resize_op
from drtl.degradations.tasks import (
    DEFAULT_BANK,
    FAMILIES,
    Task,
    dump_tasks,
    get_task,
    load_tasks,
    make_pair,
    task_bank,
    task_names,
)

__all__ = [
    "CameraParams",
    "camera_degradation",
    "camera_pair",
    "jpeg",
    "KERNEL_TYPES",
    "anisotropic_gaussian",
    "apply_kernel",
    "generalized_gaussian",
    "isotropic_gaussian",
    "make_kernel",
    "plateau",
    "sinc",
    "gaussian_noise",
    "poisson_noise",
    "RESIZE_MODES",
    "imresize",
    "resize",
    "DEFAULT_BANK",
    "FAMILIES",
    "Op",
    "Task",
    "apply_ops",
    "blur_op",
    "dump_tasks",
    "get_task",
    "jpeg_op",
    "load_tasks",
    "make_pair",
    "modcrop",
    "noise_op",
    "resize_op",
    "task_bank",
    "task_names",
]
