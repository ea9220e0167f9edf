"""The target's own distortion as an auxiliary task, and a relation measured on the K pairs.

With the K paired shots the relation stage can do two things the DRN cannot:

- **a camera-fitted task** (``relation.fitted``): :func:`drtl.degradations.fitted.fit_camera` on the
  K shots, applied to the bank's training HR images, joins the bank as one more task,
  :data:`FITTED_TASK`, with its own relation weight. The relation stage saves the camera
  (``fitted/<k>_s<seed>.json``) and the weighted training runs rebuild the task's pairs from it.
- **a reproduction relation** (``relation.similarity: reproduction``): each task's similarity to
  the target is how well it reproduces the shots' real LR from their HR (PSNR, RGB, dB), and the
  weights are ``softmax(psnr / relation.tau_db)``, a direct measurement of the distortion instead
  of the DRN's appearance cosine. The fitted task, fitted on these shots, is scored on them too.

Both read the K shots of the pool only, never the test pairs.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from drtl.errors import DataError

FITTED_TASK = "fitted"  # the task name of the camera-fitted task in weights.json and the recipes
FITTED_FAMILY = "fitted"


def camera_path(relation_dir: str | Path, key: str) -> Path:
    return Path(relation_dir) / "fitted" / f"{key}.json"


def fit_shots(shots, scale: int, seed: int):
    """The camera fitted to the (name, lr, hr) shots."""
    from drtl.degradations.fitted import fit_camera

    return fit_camera([(lr, hr) for _, lr, hr in shots], scale, seed=seed)


def save_camera(path: str | Path, cam, noise_scale: float) -> None:
    """The camera and the noise scale its task's pairs are made with (``relation.fitted_noise``)."""
    from drtl.io import write_text

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps({**cam.to_dict(), "noise_scale": float(noise_scale)}) + "\n")


def load_camera(path: str | Path):
    """(camera, noise scale) from :func:`save_camera`'s file."""
    from drtl.degradations.fitted import FittedCamera

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no fitted camera; rerun `drtl relation` with relation.fitted: true")
    d = json.loads(path.read_text())
    return FittedCamera.from_dict(d), float(d.get("noise_scale", 0.0))


def train_hrs(pairs) -> list[np.ndarray]:
    """The distinct HR images of one task's (lr, hr) pairs (every bank task shares them)."""
    return list({id(h): h for _, h in pairs}.values())


def fitted_pairs(cam, hrs, seed: int, noise_scale: float = 0.0, variants: int = 1) -> list[tuple]:
    """(lr, hr) pairs of the fitted task: each HR degraded by ``cam`` (``variants`` noise draws)."""
    from drtl.degradations.fitted import apply_fitted

    rng = np.random.default_rng(seed)
    return [(apply_fitted(hr, cam, rng, noise_scale), hr) for hr in hrs for _ in range(variants)]


PSNR_CAP = 60.0  # dB: a reproduction this close is exact up to 8-bit rounding (identical images give inf)


def _psnr_rgb(a: np.ndarray, b: np.ndarray, scale: int) -> float:
    from drtl.metrics import psnr

    return min(float(psnr(a, b, crop_border=2 * scale, y_channel=False)), PSNR_CAP)


def reproduction_scores(tasks, shots, scale: int, cache: dict | None = None) -> np.ndarray:
    """Mean PSNR (dB, RGB, border 2 s) of each bank task's LR of the shots' HR against their real LR.

    Each (task, image) draws its random parameters from a seed of their names, so an image scores
    the same in every (K, seed) that holds it; ``cache`` keeps those scores across calls."""
    from drtl.degradations.tasks import make_pair

    cache = {} if cache is None else cache
    out = []
    for t in tasks:
        v = []
        for name, lr, hr in shots:
            key = (t.name, name)
            if key not in cache:
                rng = np.random.default_rng(zlib.crc32(f"{t.name}/{name}".encode()))
                cache[key] = _psnr_rgb(make_pair(hr, t, scale, rng)[0], lr, scale)
            v.append(cache[key])
        out.append(float(np.mean(v)))
    return np.asarray(out, dtype=np.float64)


def fitted_score(cam, shots, scale: int) -> float:
    """The fitted camera's (noise-free) reproduction PSNR on the shots it was fitted to."""
    from drtl.degradations.fitted import apply_fitted

    return float(np.mean([_psnr_rgb(apply_fitted(hr, cam), lr, scale) for _, lr, hr in shots]))


def task_pairs(cam, hrs, seed: int, noise_scale: float) -> list[tuple]:
    """The fitted task's pairs as the relation stage embeds them and the training runs use them."""
    return fitted_pairs(cam, hrs, seed=1000 + int(seed), noise_scale=noise_scale, variants=1 if noise_scale == 0 else 2)


def with_fitted(tasks, pairs: list, w_all: dict, relation_dir, key: str,
                seed: int) -> tuple[list[str], list, list[float]]:
    """(names, pairs, weights) of the bank's ``tasks`` in order, from this key's weights (``w_all``,
    every task's weight in ``weights.json``), plus the fitted task when it has a weight, then the
    composed tasks (:mod:`drtl.relation.composed`) when they have weights."""
    from drtl.relation.composed import all_composed_pairs, is_composed

    names = [t.name for t in tasks]
    weights = [w_all[n] for n in names]
    if FITTED_TASK not in w_all:
        return names, pairs, weights
    cam, noise_scale = load_camera(camera_path(relation_dir, key))
    hrs = train_hrs(pairs[0])
    names, pairs = names + [FITTED_TASK], pairs + [task_pairs(cam, hrs, seed, noise_scale)]
    weights = weights + [float(w_all[FITTED_TASK])]
    wanted = [n for n in w_all if is_composed(n)]
    if wanted:
        c_names, c_pairs = all_composed_pairs(cam, hrs, tasks, seed, noise_scale)
        if c_names != wanted:
            raise DataError(f"{relation_dir}: its composed tasks are not those of this bank's tasks; "
                            "rerun `drtl relation` after `drtl synthesize`")
        names, pairs = names + c_names, pairs + c_pairs
        weights = weights + [float(w_all[n]) for n in c_names]
    return names, pairs, weights
