"""Multi-task pre-training over auxiliary distortions: uniform (baseline) or relation-weighted (DRTL-Pre).

Per step, ``tasks_per_step`` tasks are drawn i.i.d. with probability ``w`` (with replacement; see
:func:`drtl.train.common.draw_tasks`), each gives one batch of ``task_batch`` patches (default
``cfg.batch``: *per task*, so a step sees ``tasks_per_step * task_batch`` patches), and the update
follows the gradient of the plain mean of their losses,

    L = (1/m) sum_{j=1..m} L_{i_j},   i_j ~ w,     L_i = mean pixel loss of task i's batch,

an unbiased estimate of ``sum_i w_i L_i``, with ``w`` the relation weights (``None`` = uniform
1/N, the ``pretrain`` baseline: the same estimator). Tasks with weight 0 are never drawn (with
one-hot weights this is exactly single-task training).

Fast path: when every task's batch has the same shape and the model has no BatchNorm (samples are
processed independently), the drawn batches are concatenated into one forward pass and the loss is
the weighted sum of per-task means of the per-sample losses; this equals the per-task loop up to
float rounding (``batched=False`` forces the loop).

Inputs from samplers are NCHW float32 in [0, 1] on the CPU; they are moved to the config's device.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from torch import nn

from drtl.device import resolve_device
from drtl.errors import ConfigError
from drtl.train.common import draw_tasks, per_sample_loss, pixel_loss, run_loop, validate_weights
from drtl.train.config import TrainConfig, make_generator

Batch = tuple[int, torch.Tensor, torch.Tensor]  # (task index, lr NCHW, hr NCHW)


def has_batch_coupling(model: nn.Module) -> bool:
    """True when samples in a batch influence each other (BatchNorm in training mode)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def sample_task_batches(samplers: Sequence, tasks: Sequence[int], batch: int, gen: torch.Generator) -> list[Batch]:
    """One ``(task, lr, hr)`` batch per task, drawn in the given order from ``gen``."""
    return [(i, *samplers[i].sample(batch, gen)) for i in tasks]


def weighted_task_loss(
    model: nn.Module,
    batches: Sequence[Batch],
    task_weights: torch.Tensor | Sequence[float] | None,
    loss: str = "l1",
    batched: bool | None = None,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_i w_i L_i / sum_i w_i`` over the given batches, and the per-task losses (detached, shape (m,)).

    task_weights: one weight per batch (``None`` = uniform). batched: ``None`` = fast path when
    possible, ``True`` = force it (raises ConfigError if shapes differ), ``False`` = per-task loop.
    """
    if not batches:
        raise ConfigError("weighted_task_loss: no task batches given")
    if device is None:
        device = next(iter(model.parameters())).device
    m = len(batches)
    if task_weights is None:
        w = torch.ones(m, dtype=torch.float32, device=device)
    else:
        w = torch.as_tensor(task_weights, dtype=torch.float32).to(device).flatten()
        if w.numel() != m:
            raise ConfigError(f"weighted_task_loss: {w.numel()} weights for {m} batches")
    wn = w / w.sum()
    same = len({(tuple(lr.shape), tuple(hr.shape)) for _, lr, hr in batches}) == 1
    if batched is None:
        batched = same and not has_batch_coupling(model)
    elif batched and not same:
        raise ConfigError("weighted_task_loss: batched=True needs equal batch shapes for every task")
    if batched:
        lr = torch.cat([b[1] for b in batches]).to(device, non_blocking=True)
        hr = torch.cat([b[2] for b in batches]).to(device, non_blocking=True)
        per_task = per_sample_loss(model(lr), hr, loss).view(m, -1).mean(1)
    else:
        per_task = torch.stack(
            [pixel_loss(model(lr.to(device, non_blocking=True)), hr.to(device, non_blocking=True), loss) for _, lr, hr in batches]
        )
    total = per_task[0] if m == 1 else (per_task * wn).sum()
    return total, per_task.detach()


def pretrain(
    model: nn.Module,
    samplers: Sequence,
    weights: Sequence[float] | torch.Tensor | None,
    cfg: TrainConfig,
    gen: torch.Generator | None = None,
    tasks_per_step: int | None = None,
    ckpt_path: str | os.PathLike | None = None,
    on_log: Callable[[dict], None] | None = None,
    *,
    task_batch: int | None = None,
    batched: bool | None = None,
    progress=None,
) -> dict:
    """Pre-train ``model`` on auxiliary tasks (in place); return the history (see :func:`run_loop`).

    samplers: one per auxiliary task, each with ``.sample(batch, gen) -> (lr, hr)``.
    weights: relation weights (>= 0, one per task; normalised here) or ``None`` for uniform.
    tasks_per_step: tasks drawn per step, with replacement (default: the number of tasks with positive weight).
    task_batch: patches per drawn task (default ``cfg.batch``).
    gen: CPU ``torch.Generator``; ``None`` = seeded from ``cfg.seed``.
    Log entries carry ``n_tasks`` and ``loss_task<i>`` for the tasks drawn at that step.
    """
    n = len(samplers)
    w = validate_weights(weights, n)
    m = (n if w is None else int((w > 0).sum())) if tasks_per_step is None else int(tasks_per_step)
    if m < 1:
        raise ConfigError(f"tasks_per_step={tasks_per_step} must be >= 1")
    b = cfg.batch if task_batch is None else int(task_batch)
    if b < 1:
        raise ConfigError(f"task_batch={task_batch} must be >= 1")
    gen = make_generator(cfg.seed) if gen is None else gen
    device = resolve_device(cfg.device)
    model.to(device)

    def step_fn(step: int):
        tasks = draw_tasks(w, n, m, gen)
        batches = sample_task_batches(samplers, tasks, b, gen)
        total, per_task = weighted_task_loss(model, batches, None, cfg.loss, batched, device)
        extras = {"n_tasks": len(tasks)}
        extras.update({f"loss_task{i}": per_task[j] for j, i in enumerate(tasks)})
        return total, extras

    fingerprint = {
        "n_tasks": n,
        "weights": None if w is None else w.tolist(),
        "tasks_per_step": m,
        "task_batch": b,
        "sampler": "weighted_with_replacement",
    }
    kind = "pretrain" if w is None else "drtl_pre"
    return run_loop(
        model, step_fn, cfg, gen, kind=kind, ckpt_path=ckpt_path, on_log=on_log, progress=progress,
        device=device, fingerprint=fingerprint,
    )


__all__ = ["pretrain", "weighted_task_loss", "sample_task_batches", "has_batch_coupling"]
