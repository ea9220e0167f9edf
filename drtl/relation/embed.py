"""Embedding LR images with a trained DRN: the target embedding and the held-out accuracy.

The target embedding (:func:`embed_images`) is the L2-normalised mean embedding of a regular grid of
crops of the K target LR images (numpy HWC uint8). Only the K shots' LR images are ever passed in;
the test pairs are never touched. :func:`evaluate_drn` measures how well the DRN tells held-out
auxiliary tasks apart, per patch and per image (embedded the same way as the target).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from drtl.errors import ConfigError, DataError, DRTLError
from drtl.archs.drn import drn_input
from drtl.relation.drn import MemoryBank, _check_samplers, _crop_to, _embed, _eval_mode, _module_device, sample_input


# ----------------------------------------------------------------------------------------------
# target embedding
# ----------------------------------------------------------------------------------------------
def grid_offsets(size: int, patch: int, n: int) -> list[int]:
    """``n`` evenly spaced crop offsets covering [0, size - patch] (duplicates when size is small)."""
    if size < patch:
        raise DataError(f"LR image side {size} is smaller than lr_patch={patch}; lower lr_patch")
    if n == 1:
        return [(size - patch) // 2]
    return [int(round(v)) for v in np.linspace(0, size - patch, n)]


def _image_to_tensor(img, i: int) -> torch.Tensor:
    """numpy HWC (uint8 or float [0,1]) or torch CHW float [0,1] -> CHW float32 tensor."""
    if isinstance(img, torch.Tensor):
        if img.ndim != 3 or img.shape[0] != 3:
            raise DataError(f"target LR image {i}: expected a CHW RGB tensor, got shape {tuple(img.shape)}")
        return img.float()
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"target LR image {i}: expected HWC RGB, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255.0)
    elif np.issubdtype(arr.dtype, np.floating):
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    else:
        raise DataError(f"target LR image {i}: unsupported dtype {arr.dtype}; expected uint8 or float in [0, 1]")
    return t.permute(2, 0, 1)


def _whole(encoder: nn.Module, lr, hr, i: int) -> torch.Tensor:
    """One image as the encoder embeds it (CHW): the LR image, or LR + reference for a reference DRN."""
    x = _image_to_tensor(lr, i)
    if not getattr(encoder, "reference", False):
        return x
    if hr is None:
        raise ConfigError("this DRN embeds LR/HR pairs (reference: true): pass the shots' HR images too")
    h = _image_to_tensor(hr, i)
    if h.shape[-2] % x.shape[-2] or h.shape[-1] % x.shape[-1]:
        raise DataError(f"target pair {i}: HR {tuple(h.shape[-2:])} is not a multiple of LR {tuple(x.shape[-2:])}")
    return drn_input(encoder, x[None], h[None])[0]


def _crops(img: torch.Tensor, p: int, n: int, gen: torch.Generator | None, mode: str) -> torch.Tensor:
    """(k, C, p, p) crops of one CHW image: a g x g grid (g = ceil(sqrt(n))) or n random crops."""
    h, w = img.shape[-2:]
    if h < p or w < p:
        raise DataError(f"LR image {h}x{w} is smaller than lr_patch={p}; lower lr_patch")
    if mode == "grid":
        g = max(1, math.ceil(math.sqrt(n)))
        ys, xs = grid_offsets(h, p, g), grid_offsets(w, p, g)
        return torch.stack([img[:, y : y + p, x : x + p] for y in ys for x in xs])
    if mode == "random":
        if gen is None:
            raise ConfigError("random crop mode needs a torch.Generator; pass gen or use mode='grid'")
        ys = torch.randint(h - p + 1, (n,), generator=gen).tolist()
        xs = torch.randint(w - p + 1, (n,), generator=gen).tolist()
        return torch.stack([img[:, y : y + p, x : x + p] for y, x in zip(ys, xs)])
    raise ConfigError(f"unknown crop mode {mode!r}; use 'grid' or 'random'")


def _image_embeddings(
    encoder: nn.Module,
    images: Sequence,
    lr_patch: int,
    patches_per_image: int,
    device: torch.device,
    batch: int = 256,
    gen: torch.Generator | None = None,
    mode: str = "grid",
    hr_images: Sequence | None = None,
) -> torch.Tensor:
    """(K, D) unit embeddings, one per image (normalised mean over its crops)."""
    out = []
    for i, img in enumerate(images):
        hr = None if hr_images is None else hr_images[i]
        crops = _crops(_whole(encoder, img, hr, i), lr_patch, patches_per_image, gen, mode)
        embs = torch.cat([_embed(encoder, crops[j : j + batch].to(device)) for j in range(0, len(crops), batch)])
        out.append(embs.mean(0))
    return F.normalize(torch.stack(out), dim=1)


@torch.no_grad()
def embed_images(
    encoder: nn.Module,
    lr_images: Sequence[np.ndarray],
    lr_patch: int,
    patches_per_image: int = 16,
    gen: torch.Generator | None = None,
    mode: str = "grid",
    batch: int = 256,
    hr_images: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Target embedding: (D,) float64 unit vector = normalised mean DRN embedding of the K LR images.

    lr_images: the K target shots' LR images only (numpy HWC RGB uint8, or float in [0, 1]).
    hr_images: their HR images, required by a reference DRN (``encoder.reference``), else unused.
    mode 'grid' (default, deterministic; ``gen`` unused): a g x g regular grid of crops per image with
    g = ceil(sqrt(patches_per_image)); mode 'random': ``patches_per_image`` random crops drawn with
    ``gen``. Every image contributes the same number of crops, so each shot weighs the same.
    """
    if len(lr_images) == 0:
        raise DataError("no target LR images given; the target embedding needs at least one shot")
    if hr_images is not None and len(hr_images) != len(lr_images):
        raise DataError(f"{len(lr_images)} target LR images but {len(hr_images)} HR images")
    if int(lr_patch) != lr_patch or lr_patch < 1:
        raise ConfigError(f"lr_patch={lr_patch!r} must be a positive integer")
    if int(patches_per_image) != patches_per_image or patches_per_image < 1:
        raise ConfigError(f"patches_per_image={patches_per_image!r} must be a positive integer")
    device = _module_device(encoder)
    with _eval_mode(encoder):
        sums = None
        count = 0
        for i, img in enumerate(lr_images):
            hr = None if hr_images is None else hr_images[i]
            crops = _crops(_whole(encoder, img, hr, i), int(lr_patch), int(patches_per_image), gen, mode)
            for j in range(0, len(crops), batch):
                e = _embed(encoder, crops[j : j + batch].to(device)).double().sum(0)
                sums = e if sums is None else sums + e
            count += len(crops)
    mean = (sums / count).cpu().numpy()
    norm = np.linalg.norm(mean)
    if not np.isfinite(norm) or norm < 1e-12:
        raise DRTLError("target embedding is degenerate (mean of crop embeddings is ~0); retrain the DRN")
    return mean / norm

# ----------------------------------------------------------------------------------------------
# held-out evaluation
# ----------------------------------------------------------------------------------------------
def _classify(bank: MemoryBank, emb: torch.Tensor) -> torch.Tensor:
    return (F.normalize(emb, dim=1) @ bank.normalized().t()).argmax(1)


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, T: int) -> np.ndarray:
    cm = np.zeros((T, T), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def _summary(cm: np.ndarray) -> tuple[float, list[float]]:
    totals = cm.sum(1)
    per = [float(cm[i, i] / totals[i]) if totals[i] else float("nan") for i in range(cm.shape[0])]
    acc = float(np.trace(cm) / max(1, cm.sum()))
    return acc, per


@torch.no_grad()
def evaluate_drn(
    encoder: nn.Module,
    bank: MemoryBank,
    samplers: Sequence,
    n_per_task: int,
    lr_patch: int,
    gen: torch.Generator,
    patches_per_image: int = 9,
    group_size: int = 8,
    batch: int = 256,
) -> dict:
    """Held-out nearest-prototype accuracy of the DRN.

    samplers: held-out samplers (built from HR images not used in training), one per task in the
    bank's task order.

    Patch level: ``n_per_task`` random LR patches per task, each classified on its own.
    Aggregated level (mirrors the target embedding, which is a mean too): when a sampler exposes its
    LR images (``PairSampler.lr``, CHW tensors), each image is embedded like :func:`embed_images`
    (mean over a grid of ``patches_per_image`` crops) and classified; otherwise groups of
    ``group_size`` random patches of the same task are averaged.

    Returns a JSON-serialisable dict: accuracy, per_task_accuracy, confusion (list of lists, rows =
    true task, columns = predicted), aggregated_accuracy, aggregated_per_task_accuracy,
    aggregated_confusion, aggregated_mode ('image' or 'group'), n_per_task, n_aggregated_per_task.
    """
    _check_samplers(samplers, "held-out")
    T = len(samplers)
    if bank.num_tasks != T:
        raise ConfigError(f"memory bank has {bank.num_tasks} prototypes but {T} held-out samplers were given")
    if int(n_per_task) != n_per_task or n_per_task < 1:
        raise ConfigError(f"n_per_task={n_per_task!r} must be a positive integer")
    device = _module_device(encoder)
    bank = bank.to(device)
    with _eval_mode(encoder, bank):
        # patch level
        y_true, y_pred = [], []
        for t, s in enumerate(samplers):
            done = 0
            while done < n_per_task:
                k = min(batch, n_per_task - done)
                x = _crop_to(sample_input(encoder, s, k, gen), lr_patch, gen).to(device)
                y_pred.append(_classify(bank, _embed(encoder, x)).cpu().numpy())
                y_true.append(np.full(k, t))
                done += k
        cm = _confusion(np.concatenate(y_true), np.concatenate(y_pred), T)
        acc, per = _summary(cm)

        # aggregated level
        use_images = all(hasattr(s, "lr") and len(getattr(s, "lr")) > 0 for s in samplers)
        a_true, a_pred, counts = [], [], []
        for t, s in enumerate(samplers):
            if use_images:
                embs = _image_embeddings(encoder, list(s.lr), lr_patch, patches_per_image, device, batch,
                                         hr_images=getattr(s, "hr", None))
            else:
                n_groups = max(1, n_per_task // max(1, group_size))
                x = _crop_to(sample_input(encoder, s, n_groups * group_size, gen), lr_patch, gen).to(device)
                e = _embed(encoder, x).reshape(n_groups, group_size, -1).mean(1)
                embs = F.normalize(e, dim=1)
            a_pred.append(_classify(bank, embs).cpu().numpy())
            a_true.append(np.full(embs.shape[0], t))
            counts.append(int(embs.shape[0]))
        acm = _confusion(np.concatenate(a_true), np.concatenate(a_pred), T)
        aacc, aper = _summary(acm)
    return {
        "accuracy": acc,
        "per_task_accuracy": per,
        "confusion": cm.tolist(),
        "aggregated_accuracy": aacc,
        "aggregated_per_task_accuracy": aper,
        "aggregated_confusion": acm.tolist(),
        "aggregated_mode": "image" if use_images else "group",
        "n_per_task": int(n_per_task),
        "n_aggregated_per_task": counts,
    }
