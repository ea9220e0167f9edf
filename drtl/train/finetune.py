"""Few-shot fine-tuning on the K target pairs (also ``scratch`` and ``upper_bound`` training).

The same loop and budget serve every method: a sampler over the K target pairs (random patches,
flips and rotations via :class:`drtl.data.patches.PairSampler`) and ``cfg.iterations`` Adam steps
of the pixel loss on ``cfg.batch`` patches. ``scratch`` = a freshly initialised model;
``upper_bound`` = a sampler over all available target pairs. Batches are NCHW float32 in [0, 1].
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from drtl.device import resolve_device
from drtl.train.common import pixel_loss, run_loop
from drtl.train.config import TrainConfig, make_generator


def finetune(
    model: nn.Module,
    sampler,
    cfg: TrainConfig,
    gen: torch.Generator | None = None,
    ckpt_path: str | os.PathLike | None = None,
    on_log: Callable[[dict], None] | None = None,
    *,
    progress=None,
    kind: str = "finetune",
) -> dict:
    """Train ``model`` (in place) on ``sampler``'s pairs for ``cfg.iterations`` steps; return the history.

    gen: CPU ``torch.Generator``; ``None`` = seeded from ``cfg.seed``. ``kind`` only labels the
    history/checkpoint (e.g. ``"scratch"``, ``"upper_bound"``) so checkpoints are not mixed up.
    """
    gen = make_generator(cfg.seed) if gen is None else gen
    device = resolve_device(cfg.device)
    model.to(device)

    def step_fn(step: int):
        lr, hr = sampler.sample(cfg.batch, gen)
        return pixel_loss(model(lr.to(device, non_blocking=True)), hr.to(device, non_blocking=True), cfg.loss)

    return run_loop(
        model, step_fn, cfg, gen, kind=kind, ckpt_path=ckpt_path, on_log=on_log, progress=progress, device=device
    )


__all__ = ["finetune"]
