"""Degradations: blur kernels, resizing (MATLAB bicubic), noise, JPEG, camera-pipeline / capture
steps (``isp``), degradation ops, auxiliary task recipes and the camera-like target degradation.
Pure functions of (image, params, rng); numpy HWC RGB images, uint8 or float64 in [0, 1].

The names below load on first use (module-level ``__getattr__``): importing one submodule, e.g.
``drtl.degradations.resize`` for ``imresize``, does not import the others (``camera`` and
``kernels`` pull in scipy.ndimage/fft/special). Every public name stays importable from here."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# ``jpeg`` and ``resize`` are both submodules and functions: bind the functions now, as the eager
# package did (later imports of the submodules leave these bindings alone). They import only numpy,
# PIL and scipy.sparse.
from drtl.degradations.jpeg import jpeg
from drtl.degradations.resize import RESIZE_MODES, imresize, resize

_LAZY = {
    "camera": ("CameraParams", "camera_degradation", "camera_pair"),
    "kernels": ("KERNEL_TYPES", "anisotropic_gaussian", "apply_kernel", "generalized_gaussian",
                "isotropic_gaussian", "make_kernel", "plateau", "sinc"),
    "noise": ("gaussian_noise", "poisson_noise"),
    "ops": ("Op", "apply_ops", "blur_op", "isp_op", "jpeg_op", "modcrop", "noise_op", "resize_op"),
    "tasks": ("DEFAULT_BANK", "FAMILIES", "Task", "dump_tasks", "get_task", "load_tasks", "make_pair",
              "task_bank", "task_names"),
}
_WHERE = {name: mod for mod, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # static analysis sees the eager imports
    from drtl.degradations.camera import CameraParams, camera_degradation, camera_pair  # noqa: F401
    from drtl.degradations.kernels import (KERNEL_TYPES, anisotropic_gaussian, apply_kernel,  # noqa: F401
                                           generalized_gaussian, isotropic_gaussian, make_kernel, plateau, sinc)
    from drtl.degradations.noise import gaussian_noise, poisson_noise  # noqa: F401
    from drtl.degradations.ops import (Op, apply_ops, blur_op, isp_op, jpeg_op, modcrop, noise_op,  # noqa: F401
                                       resize_op)
    from drtl.degradations.tasks import (DEFAULT_BANK, FAMILIES, Task, dump_tasks, get_task,  # noqa: F401
                                         load_tasks, make_pair, task_bank, task_names)

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
    "isp_op",
    "jpeg_op",
    "load_tasks",
    "make_pair",
    "modcrop",
    "noise_op",
    "resize_op",
    "task_bank",
    "task_names",
]
