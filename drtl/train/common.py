"""The one training loop every trainer shares, and the loss and task-drawing helpers.

``run_loop(model, step_fn, cfg, gen, kind=...)`` owns everything that is not the loss: device and
AMP, the Adam optimizer, the learning-rate schedule, checkpoint/resume, progress display and the
loss history. Trainers (:mod:`drtl.train.pretrain`, :mod:`drtl.train.meta`,
:mod:`drtl.train.finetune`) only supply ``step_fn(step) -> loss`` (a scalar tensor whose gradient
with respect to the optimised parameters is the update direction). Its configuration is
:class:`drtl.train.config.TrainConfig`.

Tensors are NCHW float32 in [0, 1]. All randomness comes from the ``torch.Generator`` passed in
(a CPU generator: samplers draw on the CPU, batches are then moved to the device).

Checkpoints (:mod:`drtl.train.checkpoint`) are plain ``torch.save`` dicts of tensors / dicts /
lists / numbers / strings, written atomically (temp file + ``os.replace``) and read with
``torch.load(..., weights_only=True)``. They hold the model and optimizer states, the step, the
generator state and the loss history, so a run that is killed and rerun with the same ``ckpt_path``
resumes at the saved step and, on CPU, ends with weights bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from drtl.device import resolve_device
from drtl.optim import Adam
from drtl.errors import ConfigError, DRTLError, ModelError
from drtl.progress import StepProgress
from drtl.train.checkpoint import CHECKPOINT_FORMAT, check_resumable, cpu_state, load_checkpoint, save_checkpoint
from drtl.train.config import TrainConfig, lr_at


def per_sample_loss(sr: torch.Tensor, hr: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Pixel loss averaged over C, H, W: shape (N,), in at least float32 (safe under bf16 autocast)."""
    if sr.shape != hr.shape:
        raise ModelError(
            f"model output {tuple(sr.shape)} does not match the HR batch {tuple(hr.shape)}; check the model's scale"
        )
    dt = torch.promote_types(torch.promote_types(sr.dtype, hr.dtype), torch.float32)  # bf16 -> f32, f64 stays
    d = sr.to(dt) - hr.to(dt)
    d = d.abs() if kind == "l1" else d * d
    return d.flatten(1).mean(1)


def pixel_loss(sr: torch.Tensor, hr: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Scalar pixel loss (mean over every element)."""
    return per_sample_loss(sr, hr, kind).mean()


def validate_weights(weights, n_tasks: int) -> torch.Tensor | None:
    """Check relation weights: one finite value >= 0 per task, positive sum. Returns float64 normalised to sum 1.

    ``None`` stays ``None`` (uniform). Raises ConfigError otherwise.
    """
    if n_tasks < 1:
        raise ConfigError("no auxiliary tasks given; synthesize at least one task before training")
    if weights is None:
        return None
    w = torch.as_tensor(weights, dtype=torch.float64).flatten().cpu()
    if w.numel() != n_tasks:
        raise ConfigError(f"got {w.numel()} relation weights for {n_tasks} tasks; give one weight per task (or None)")
    if not torch.isfinite(w).all():
        raise ConfigError("relation weights contain NaN/inf; recompute the relation graph")
    if (w < 0).any():
        raise ConfigError(f"relation weights must be >= 0, got min {float(w.min()):.4g}")
    total = float(w.sum())
    if total <= 0:
        raise ConfigError("relation weights sum to 0; at least one task needs a positive weight")
    return w / total


def draw_tasks(w: torch.Tensor | None, n_tasks: int, m: int, gen: torch.Generator) -> list[int]:
    """``m`` task indices drawn i.i.d. with probability ``w`` (``None`` = uniform 1/n), with replacement.

    The plain mean of the drawn tasks' losses is then an unbiased estimate of ``sum_i w_i L_i``
    (the full relation-weighted objective): a task's expected share of the gradient is exactly its
    weight, whatever ``m`` is. Tasks with weight 0 are never drawn. Uniform training is the same
    estimator with ``w = 1/n``. (Drawing without replacement and renormalising ``w`` inside the draw
    would pull every weight towards uniform: with City100's weights, 4 of 29 tasks gave the top
    task 0.12 of the gradient instead of 0.31.) When one task holds all the weight no randomness is
    consumed, so one-hot weights train exactly like a single-task loop.
    """
    if m < 1:
        raise ConfigError(f"draw_tasks: m={m} must be >= 1")
    p = torch.full((n_tasks,), 1.0 / n_tasks, dtype=torch.float64) if w is None else w.to(torch.float64).cpu()
    positive = torch.nonzero(p > 0).flatten().tolist()
    if len(positive) == 1:
        return positive * m
    return torch.multinomial(p, m, replacement=True, generator=gen).tolist()


# ----------------------------------------------------------------------------------------------
# the loop

def _new_history(kind: str, cfg: TrainConfig) -> dict:
    return {"kind": kind, "iterations": int(cfg.iterations), "loss": [], "log": [], "resumed_from": [], "wall_s": 0.0}


def run_loop(
    model: nn.Module,
    step_fn: Callable[[int], StepOutput],
    cfg: TrainConfig,
    gen: torch.Generator,
    *,
    kind: str,
    ckpt_path: str | os.PathLike | None = None,
    on_log: Callable[[dict], None] | None = None,
    progress: bool | Callable[[int, int, float | None], None] | None = None,
    params: Iterable[nn.Parameter] | None = None,
    device: torch.device | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    after_step: Callable[[int], bool] | None = None,
) -> dict:
    """Run ``cfg.iterations`` Adam steps of ``step_fn`` on ``model``; return the history dict.

    ``after_step(done)`` (optional) is called after every optimizer step with the number of steps
    done; returning True stops the loop there (early stopping; ``history["stopped_at"]``).

    step_fn(step) is called with the 0-based step index inside the AMP context and returns the loss
    to minimise (a scalar tensor), or ``(loss, extras)`` with a dict of floats/0-dim tensors that is
    copied into the log entry of a log step. It must take its randomness from ``gen`` only.

    Resume: when ``ckpt_path`` exists it must come from the same ``kind``, an equivalent config
    (``log_every``, ``checkpoint_every`` and ``device`` may differ) and an equal ``fingerprint``
    (trainer-specific settings as plain numbers/strings/lists, e.g. weights or the meta config);
    model, optimizer, generator and history are restored and the loop continues at the saved step. A checkpoint is written every
    ``cfg.checkpoint_every`` steps and at the end (so a finished run reruns as a no-op).

    History: ``{"kind", "iterations", "loss": [per-step loss, len == steps done], "log": [{"step",
    "loss" (mean since last log), "lr", "elapsed_s", **extras}], "resumed_from": [steps], "wall_s"}``.
    ``on_log(entry)`` is called with each log entry (e.g. to log to MLflow).

    progress: None = a bar only on a terminal (:mod:`drtl.progress`); True/False force it; a callable gets
    ``(step, total, last_logged_loss_or_None)`` after every step.
    """
    device = resolve_device(cfg.device) if device is None else device
    model.to(device)
    model.train()
    params = [p for p in (model.parameters() if params is None else params) if p.requires_grad]
    if not params:
        raise ModelError("the model has no trainable parameters")
    opt = Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    amp = bool(cfg.amp) and device.type == "cuda"

    history = _new_history(kind, cfg)
    start = 0
    if ckpt_path is not None and Path(ckpt_path).exists():
        state = load_checkpoint(ckpt_path)
        check_resumable(state, kind, cfg, ckpt_path, fingerprint)
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
        except Exception as exc:
            raise ModelError(
                f"{ckpt_path}: checkpoint does not fit this model/optimizer ({exc}); delete it to start afresh"
            ) from None
        gen.set_state(state["gen"])
        history = state["history"]
        start = int(state["step"])
        history["resumed_from"].append(start)

    def checkpoint(step: int):
        if ckpt_path is None:
            return
        save_checkpoint(
            ckpt_path,
            {
                "format": CHECKPOINT_FORMAT,
                "kind": kind,
                "step": int(step),
                "config": cfg.to_dict(),
                "fingerprint": dict(fingerprint or {}),
                "model": cpu_state(model.state_dict()),
                "optimizer": cpu_state(opt.state_dict()),
                "gen": gen.get_state(),
                "history": history,
            },
        )

    bar = StepProgress(progress, cfg.iterations, start, kind)
    pending: list[torch.Tensor] = []  # detached per-step losses not yet copied to the host
    t0 = time.perf_counter()
    wall0 = float(history.get("wall_s", 0.0))
    last_logged: float | None = None
    last_log_step = history["log"][-1]["step"] if history["log"] else 0

    def flush():
        if pending:
            vals = torch.stack(pending).float().cpu().tolist()
            pending.clear()
            bad = [v for v in vals if not math.isfinite(v)]
            if bad:
                at = len(history["loss"]) + next(i for i, v in enumerate(vals) if not math.isfinite(v)) + 1
                raise DRTLError(
                    f"{kind}: loss became {bad[0]} at step {at}; lower the learning rate, set grad_clip or disable amp"
                )
            history["loss"].extend(vals)

    try:
        for step in range(start, cfg.iterations):
            lr = lr_at(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                out = step_fn(step)
            loss, extras = (out if isinstance(out, tuple) else (out, None))
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            pending.append(loss.detach())
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.iterations:
                flush()
                recent = history["loss"][last_log_step:done]
                entry = {
                    "step": done,
                    "loss": float(sum(recent) / max(len(recent), 1)),
                    "lr": float(lr),
                    "elapsed_s": float(wall0 + time.perf_counter() - t0),
                }
                last_log_step = done
                if extras:
                    for k, v in extras.items():
                        entry[k] = float(v.detach().float().cpu()) if isinstance(v, torch.Tensor) else v
                history["log"].append(entry)
                last_logged = entry["loss"]
                if on_log is not None:
                    on_log(dict(entry))
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.iterations:
                flush()
                history["wall_s"] = wall0 + time.perf_counter() - t0
                checkpoint(done)
            bar.update(done, cfg.iterations, last_logged)
            if after_step is not None and after_step(done):
                history["stopped_at"] = done
                break
        flush()
        history["wall_s"] = wall0 + time.perf_counter() - t0
        if start < cfg.iterations:
            checkpoint(cfg.iterations)
    finally:
        bar.close()
    return history


__all__ = [
    "StepOutput",
    "per_sample_loss",
    "pixel_loss",
    "validate_weights",
    "draw_tasks",
    "run_loop",
]
