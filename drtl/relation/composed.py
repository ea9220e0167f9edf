"""Composed tasks: the camera-fitted filter followed by each bank task's non-linear tail.

The camera-fitted task (:mod:`drtl.relation.fitted`) is a linear filter fitted to the K shots: it
reproduces the camera's blur and downsampling, but not what a camera does after them (noise, JPEG,
denoising, sharpening). With ``relation.composed`` the relation stage adds, for every bank task whose
recipe does something after its last resize, a task ``fitted+<task>``: the fitted filter (with the
fitted noise, ``relation.fitted_noise``), then that task's ops after its last resize, run on the LR
image. These are near neighbours of the camera: the relation chooses among them and the fitted task
instead of between the camera and distant guesses.

The composed tasks form one family, :data:`COMPOSED_FAMILY`; the expert relation scores it with one
expert per (K, seed), trained on all of them (:meth:`drtl.stages.expert.Experts.scores`). A phone
task (one op that goes from HR to LR) and a task that ends with its resize have no tail.
"""

from __future__ import annotations

import zlib

import numpy as np

COMPOSED_FAMILY = "composed"
PREFIX = "fitted+"  # a composed task's name is PREFIX + the bank task's name


def tail_ops(task) -> tuple:
    """The ops ``task`` runs after its last resize (empty for a phone task or one ending with it)."""
    ops = task.resolved_ops()
    last = max((i for i, op in enumerate(ops) if op.kind in ("resize", "phone")), default=None)
    return () if last is None else tuple(ops[last + 1:])


def composed_tasks(tasks) -> list[tuple[str, tuple]]:
    """(name, tail ops) of the composed task of every task with a tail; one per distinct tail."""
    out, seen = [], set()
    for t in tasks:
        tail = tail_ops(t)
        if tail and tail not in seen:
            seen.add(tail)
            out.append((PREFIX + t.name, tail))
    return out


def is_composed(name: str) -> bool:
    return name.startswith(PREFIX)


def composed_pairs(cam, hrs, tail, name: str, seed: int, noise_scale: float) -> list[tuple]:
    """(lr, hr) pairs of one composed task: each HR through the fitted camera, then ``tail`` at LR
    size. The noise draws are seeded by the task name and ``seed``, so the relation stage and the
    weighted training runs make the same pairs."""
    from drtl.degradations.fitted import apply_fitted
    from drtl.degradations.ops import apply_ops, to_uint8

    rng = np.random.default_rng([zlib.crc32(name.encode()), 1000 + int(seed)])
    out = []
    for hr in hrs:
        lr = apply_fitted(hr, cam, rng, noise_scale)
        out.append((to_uint8(apply_ops(lr.astype(np.float64) / 255.0, tail, 1, rng, quantised=True)), hr))
    return out


def all_composed_pairs(cam, hrs, tasks, seed: int, noise_scale: float) -> tuple[list[str], list[list]]:
    """(names, pairs per task) of the composed tasks of ``tasks`` (the bank's, in order)."""
    names, pairs = [], []
    for name, tail in composed_tasks(tasks):
        names.append(name)
        pairs.append(composed_pairs(cam, hrs, tail, name, seed, noise_scale))
    return names, pairs
