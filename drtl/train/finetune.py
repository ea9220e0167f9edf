"""Few-shot fine-tuning on the K target pairs (also ``scratch`` and ``upper_bound`` training).

The same loop and budget serve every method: a sampler over the K target pairs (random patches,
flips and rotations via :class:`drtl.data.patches.PairSampler`) and ``cfg.iterations`` Adam steps
of the pixel loss on ``cfg.batch`` patches. ``scratch`` = a freshly initialised model;
``upper_bound`` = a sampler over all available target pairs. Batches are NCHW float32 in [0, 1].

Validation (optional, ``val``): strips of the K pairs held out from training
(:func:`drtl.data.patches.split_rows`). Every ``eval_every`` steps (and before the first step) the
L1 loss on them is measured; the weights with the lowest validation loss are kept (so fine-tuning
can never end worse, on held-out pixels of the target camera, than where it started), and with
``patience`` > 0 training stops after that many evaluations without improvement. The test pairs
are never read.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from drtl.device import resolve_device
from drtl.errors import ConfigError
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
    val: list | None = None,
    eval_every: int = 5,
    patience: int = 0,
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

    if not val:
        return run_loop(
            model, step_fn, cfg, gen, kind=kind, ckpt_path=ckpt_path, on_log=on_log, progress=progress, device=device
        )
    if eval_every < 1 or patience < 0:
        raise ConfigError(f"finetune: eval_every={eval_every} must be >= 1 and patience={patience} >= 0")
    best = {"loss": val_loss(model, val, device, cfg.loss), "step": 0, "state": _copy_state(model), "bad": 0}
    curve = [(0, best["loss"])]

    def after_step(done: int) -> bool:
        if done % eval_every and done != cfg.iterations:
            return False
        v = val_loss(model, val, device, cfg.loss)
        curve.append((done, v))
        if v < best["loss"]:
            best.update(loss=v, step=done, state=_copy_state(model), bad=0)
        else:
            best["bad"] += 1
        return patience > 0 and best["bad"] >= patience

    hist = run_loop(
        model, step_fn, cfg, gen, kind=kind, ckpt_path=ckpt_path, on_log=on_log, progress=progress, device=device,
        after_step=after_step, fingerprint={"val": len(val), "eval_every": eval_every, "patience": patience},
    )
    model.load_state_dict(best["state"])
    hist.update(best_step=best["step"], best_val_loss=best["loss"], val_curve=curve)
    return hist


def _copy_state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def val_loss(model: nn.Module, val: list, device, loss: str = "l1") -> float:
    """Mean pixel loss of ``model`` over the validation strips (each a (lr, hr) NCHW pair)."""
    was = model.training
    model.eval()
    try:
        vals = [float(pixel_loss(model(lr.to(device)), hr.to(device), loss)) for lr, hr in val]
    finally:
        model.train(was)
    return sum(vals) / len(vals)


__all__ = ["finetune", "val_loss"]
