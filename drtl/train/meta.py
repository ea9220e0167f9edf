"""MAML / first-order MAML over auxiliary distortions, plain or relation-weighted (DRTL-Meta).

Built on :func:`torch.func.functional_call` with explicit parameter dicts (no learn2learn/higher).

Per meta-step: ``meta_batch`` tasks are drawn i.i.d. with probability ``w`` (with replacement;
uniform 1/N for plain MAML; tasks of weight 0 are never drawn); each task gives a support batch and a query batch (support first, then query, task
by task, from ``gen``). Inner loop: ``inner_steps`` plain SGD steps on the *unweighted* support
loss, starting from the current parameters. Outer loss of task i: the query loss L_i^q at the
adapted parameters. The plain mean of the drawn tasks' query losses is an unbiased estimate of
the meta-objective

    sum_i w_i L_i^q      (w = 1/N for plain MAML, relation weights for DRTL-Meta),

minimised by Adam on the original parameters.

first_order=True (FOMAML): inner gradients are taken on detached copies without ``create_graph``,
so the adapted parameters are ``theta - a * g`` with ``g`` constant and the meta-gradient is the
query-loss gradient at the adapted parameters. first_order=False: ``create_graph=True`` and the
meta-gradient flows through the inner loop (second-order MAML).

Parameters that do not require grad (e.g. a frozen mean-shift conv) and buffers are passed to
``functional_call`` unchanged and never adapted.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from drtl.device import resolve_device
from drtl.errors import ConfigError
from drtl.train.common import draw_tasks, pixel_loss, run_loop, validate_weights
from drtl.train.config import TrainConfig, make_generator

Params = dict[str, torch.Tensor]
MetaTask = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # support lr, hr, query lr, hr


@dataclass(frozen=True)
class MetaConfig:
    """inner_steps: SGD steps on the support batch; inner_lr: their step size; meta_batch: tasks per
    meta-step; first_order: FOMAML (True) or full second-order MAML; support_batch / query_batch:
    patches per task for the inner and the outer loss."""

    inner_steps: int = 1
    inner_lr: float = 1e-2
    meta_batch: int = 4
    first_order: bool = True
    support_batch: int = 8
    query_batch: int = 8

    def __post_init__(self):
        if int(self.inner_steps) < 0:
            raise ConfigError(f"MetaConfig: inner_steps={self.inner_steps} must be >= 0")
        if not (self.inner_lr >= 0):
            raise ConfigError(f"MetaConfig: inner_lr={self.inner_lr} must be >= 0")
        for name in ("meta_batch", "support_batch", "query_batch"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"MetaConfig: {name}={getattr(self, name)} must be >= 1")

    @classmethod
    def from_dict(cls, d: Mapping | None) -> "MetaConfig":
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"MetaConfig: unknown key(s) {unknown}; known keys are {sorted(names)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def model_params(model: nn.Module) -> Params:
    """The trainable parameters (``requires_grad``) by name: the tensors MAML adapts."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def model_buffers(model: nn.Module) -> Params:
    return dict(model.named_buffers())


def _forward(model: nn.Module, params: Params, buffers: Params | None, x: torch.Tensor) -> torch.Tensor:
    return functional_call(model, (params, buffers or {}), (x,))


def inner_adapt(
    model: nn.Module,
    params: Params,
    lr: torch.Tensor,
    hr: torch.Tensor,
    steps: int,
    inner_lr: float,
    first_order: bool,
    buffers: Params | None = None,
    loss: str = "l1",
) -> Params:
    """``steps`` plain SGD steps ``p <- p - inner_lr * grad`` of the support loss; returns the adapted dict.

    Second-order: gradients with ``create_graph=True``, so the result is differentiable (through the
    inner loop) w.r.t. ``params``. First-order: gradients of detached copies, so d(adapted)/d(params)
    is the identity. ``buffers`` default to the model's own. Gradients are enabled inside even
    under ``torch.no_grad()`` (test-time adaptation).
    """
    buffers = model_buffers(model) if buffers is None else buffers
    cur = dict(params)
    names = list(cur)
    for _ in range(int(steps)):
        with torch.enable_grad():  # the inner loop needs gradients even when called under no_grad
            cur = _sgd_step(model, cur, names, buffers, lr, hr, inner_lr, first_order, loss)
    return cur


def _sgd_step(model, cur, names, buffers, lr, hr, inner_lr, first_order, loss) -> Params:
    """One SGD step of the support loss on the params dict ``cur`` (see :func:`inner_adapt`)."""
    if first_order:
        leaf = {n: t.detach().requires_grad_(True) for n, t in cur.items()}
        support = pixel_loss(_forward(model, leaf, buffers, lr), hr, loss)
        grads = torch.autograd.grad(support, [leaf[n] for n in names], allow_unused=True)
    else:
        cur = {n: (t if t.requires_grad else t.detach().requires_grad_(True)) for n, t in cur.items()}
        support = pixel_loss(_forward(model, cur, buffers, lr), hr, loss)
        grads = torch.autograd.grad(support, [cur[n] for n in names], create_graph=True, allow_unused=True)
    return {n: (cur[n] if g is None else cur[n] - inner_lr * g) for n, g in zip(names, grads)}


def task_query_loss(
    model: nn.Module,
    params: Params,
    task: MetaTask,
    meta_cfg: MetaConfig,
    buffers: Params | None = None,
    loss: str = "l1",
) -> torch.Tensor:
    """Query loss of one task after adapting ``params`` on its support batch."""
    s_lr, s_hr, q_lr, q_hr = task
    buffers = model_buffers(model) if buffers is None else buffers
    adapted = inner_adapt(
        model, params, s_lr, s_hr, meta_cfg.inner_steps, meta_cfg.inner_lr, meta_cfg.first_order, buffers, loss
    )
    return pixel_loss(_forward(model, adapted, buffers, q_lr), q_hr, loss)


def meta_loss(
    model: nn.Module,
    params: Params,
    tasks: Sequence[MetaTask],
    weights: torch.Tensor | Sequence[float] | None,
    meta_cfg: MetaConfig,
    buffers: Params | None = None,
    loss: str = "l1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Meta-objective ``sum_i w_i L_i^q / sum_i w_i`` over ``tasks`` and the per-task query losses (detached).

    weights: one per task (``None`` = uniform). Its gradient w.r.t. ``params`` is the (FO)MAML
    meta-gradient.
    """
    if not tasks:
        raise ConfigError("meta_loss: no tasks given")
    buffers = model_buffers(model) if buffers is None else buffers
    losses = torch.stack([task_query_loss(model, params, t, meta_cfg, buffers, loss) for t in tasks])
    if weights is None:
        w = torch.ones(len(tasks), dtype=losses.dtype, device=losses.device)
    else:
        w = torch.as_tensor(weights, dtype=losses.dtype).to(losses.device).flatten()
        if w.numel() != len(tasks):
            raise ConfigError(f"meta_loss: {w.numel()} weights for {len(tasks)} tasks")
    total = losses[0] if len(tasks) == 1 else (losses * (w / w.sum())).sum()
    return total, losses.detach()


def sample_meta_tasks(samplers: Sequence, tasks: Sequence[int], meta_cfg: MetaConfig, gen: torch.Generator,
                      device: torch.device | str = "cpu") -> list[MetaTask]:
    """Support then query batch for each task in order, drawn from ``gen`` and moved to ``device``."""
    out = []
    for i in tasks:
        s_lr, s_hr = samplers[i].sample(meta_cfg.support_batch, gen)
        q_lr, q_hr = samplers[i].sample(meta_cfg.query_batch, gen)
        out.append(tuple(t.to(device, non_blocking=True) for t in (s_lr, s_hr, q_lr, q_hr)))
    return out


def maml_train(
    model: nn.Module,
    samplers: Sequence,
    weights: Sequence[float] | torch.Tensor | None,
    cfg: TrainConfig,
    meta_cfg: MetaConfig,
    gen: torch.Generator | None = None,
    ckpt_path: str | os.PathLike | None = None,
    on_log: Callable[[dict], None] | None = None,
    *,
    progress=None,
) -> dict:
    """Meta-train ``model`` (in place) for ``cfg.iterations`` meta-steps; return the history.

    ``weights=None`` is plain (FO)MAML, relation weights give DRTL-Meta. ``cfg.batch`` is unused
    here (``meta_cfg.support_batch`` / ``query_batch`` set the batch sizes); ``cfg.lr`` is the outer
    (Adam) learning rate. Log entries carry ``n_tasks`` and ``loss_task<i>`` (query losses).
    """
    n = len(samplers)
    w = validate_weights(weights, n)
    m = int(meta_cfg.meta_batch)
    gen = make_generator(cfg.seed) if gen is None else gen
    device = resolve_device(cfg.device)
    model.to(device)

    def step_fn(step: int):
        tasks = draw_tasks(w, n, m, gen)  # i.i.d. ~ w, with replacement: the mean is unbiased for sum_i w_i L_i^q
        batch = sample_meta_tasks(samplers, tasks, meta_cfg, gen, device)
        total, per_task = meta_loss(model, model_params(model), batch, None, meta_cfg, model_buffers(model), cfg.loss)
        extras = {"n_tasks": len(tasks)}
        extras.update({f"loss_task{i}": per_task[j] for j, i in enumerate(tasks)})
        return total, extras

    fingerprint = {"n_tasks": n, "weights": None if w is None else w.tolist(), "meta": meta_cfg.to_dict(),
                   "sampler": "weighted_with_replacement"}
    kind = ("fomaml" if meta_cfg.first_order else "maml") if w is None else "drtl_meta"
    return run_loop(
        model, step_fn, cfg, gen, kind=kind, ckpt_path=ckpt_path, on_log=on_log, progress=progress,
        device=device, fingerprint=fingerprint,
    )


__all__ = [
    "MetaConfig",
    "maml_train",
    "inner_adapt",
    "meta_loss",
    "task_query_loss",
    "sample_meta_tasks",
    "model_params",
    "model_buffers",
]
