"""Random paired patches with flips and rotations (the training-time view of a paired dataset).

Inputs are lists of numpy HWC RGB uint8 pairs (LR, HR) with HR = scale x LR. Outputs are torch
NCHW float32 tensors in [0, 1]. All randomness comes from the ``torch.Generator`` passed in, so the
same seed gives the same batches on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from drtl.errors import DataError


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC uint8 -> CHW float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)


def augment(lr: torch.Tensor, hr: torch.Tensor, code: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply one of the 8 dihedral transforms (code 0..7) identically to CHW or NCHW LR and HR."""
    if code & 1:
        lr, hr = lr.flip(-1), hr.flip(-1)
    if code & 2:
        lr, hr = lr.flip(-2), hr.flip(-2)
    if code & 4:
        lr, hr = lr.transpose(-1, -2), hr.transpose(-1, -2)
    return lr, hr


class PairSampler:
    """Draws batches of aligned random crops from a fixed list of (LR, HR) pairs.

    Parameters
    ----------
    pairs: sequence of (lr, hr) numpy HWC RGB uint8 arrays, ``hr.shape[:2] == scale * lr.shape[:2]``.
    scale: integer SR factor.
    lr_patch: LR crop size in pixels (HR crop = ``scale * lr_patch``).
    augment: random flips/rotations (the 8 dihedral transforms).
    """

    def __init__(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]], scale: int, lr_patch: int, augment: bool = True):
        if not pairs:
            raise DataError("PairSampler: no pairs given; check the dataset folder is not empty")
        self.scale, self.lr_patch, self.augment = int(scale), int(lr_patch), bool(augment)
        self.lr, self.hr = [], []
        for i, (lr, hr) in enumerate(pairs):
            if hr.shape[0] != lr.shape[0] * scale or hr.shape[1] != lr.shape[1] * scale:
                raise DataError(f"pair {i}: HR {hr.shape[:2]} is not {scale} x LR {lr.shape[:2]}")
            if lr.shape[0] < lr_patch or lr.shape[1] < lr_patch:
                raise DataError(f"pair {i}: LR {lr.shape[:2]} is smaller than the patch size {lr_patch}; lower lr_patch")
            self.lr.append(_to_tensor(lr))
            self.hr.append(_to_tensor(hr))

    def __len__(self) -> int:
        return len(self.lr)

    def sample(self, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (lr, hr) NCHW float32 tensors of shape (batch, 3, p, p) and (batch, 3, s*p, s*p)."""
        p, s = self.lr_patch, self.scale
        idx = torch.randint(len(self.lr), (batch,), generator=gen).tolist()
        codes = torch.randint(8, (batch,), generator=gen).tolist() if self.augment else [0] * batch
        lrs, hrs = [], []
        for i, code in zip(idx, codes):
            lr, hr = self.lr[i], self.hr[i]
            y = int(torch.randint(lr.shape[1] - p + 1, (1,), generator=gen))
            x = int(torch.randint(lr.shape[2] - p + 1, (1,), generator=gen))
            lp = lr[:, y : y + p, x : x + p]
            hp = hr[:, y * s : (y + p) * s, x * s : (x + p) * s]
            lp, hp = augment(lp, hp, code)
            lrs.append(lp)
            hrs.append(hp)
        return torch.stack(lrs).contiguous(), torch.stack(hrs).contiguous()

    def sample_lr(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        """LR crops only (for the distortion relation network)."""
        return self.sample(batch, gen)[0]


def strip_cut(rows: int, fraction: float, min_rows: int) -> int | None:
    """The first held-out LR row of a pair with ``rows`` LR rows (:func:`split_rows`), or None when
    the pair gives no validation strip (``fraction`` 0, or a top part under ``min_rows``)."""
    cut = rows - int(round(rows * fraction))
    return None if fraction <= 0 or cut < min_rows or cut >= rows else cut


def split_rows(pairs: Sequence[tuple[np.ndarray, np.ndarray]], scale: int, fraction: float, min_rows: int):
    """Hold out the bottom ``fraction`` of every pair's LR rows (and the matching HR rows) for
    validation: returns ``(train_pairs, val)`` with ``val`` a list of (lr, hr) NCHW float32 tensors.
    A pair whose remaining top part would have fewer than ``min_rows`` LR rows (the patch size) keeps
    all its rows for training and gives no validation strip; ``fraction`` 0 gives no validation."""
    train, val = [], []
    for lr, hr in pairs:
        cut = strip_cut(lr.shape[0], fraction, min_rows)
        if cut is None:
            train.append((lr, hr))
            continue
        train.append((lr[:cut], hr[: cut * scale]))
        val.append((_to_tensor(lr[cut:])[None], _to_tensor(hr[cut * scale:])[None]))
    return train, val
