"""The one training loop every trainer shares, plus its configuration and checkpoints.

``run_loop(model, step_fn, cfg, gen, kind=...)`` owns everything that is not the loss: device and
AMP, the Adam optimizer, the learning-rate schedule, checkpoint/resume, progress display and the
loss history. Trainers (:mod:`drtl.train.pretrain`, :mod:`drtl.train.meta`,
:mod:`drtl.train.finetune`) only supply ``step_fn(step) -> loss`` (a scalar tensor whose gradient
with respect to the optimised parameters is the update direction).

Tensors are NCHW float32 in [0, 1]. All randomness comes from the ``torch.Generator`` passed in
(a CPU generator: samplers draw on the CPU, batches are then moved to the device).

Checkpoints are plain ``torch.save`` dicts of tensors / dicts / lists / numbers / strings, written
atomically (temp file + ``os.replace``) and read with ``torch.load(..., weights_only=True)``. They
hold the model and optimizer states, the step, the generator state and the loss history, so a run
that is killed and rerun with the same ``ckpt_path`` resumes at the saved step and, on CPU, ends
with weights bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from drtl.errors import ConfigError, DRTLError, ModelError
from drtl.io import atomic_path

CHECKPOINT_FORMAT = 1
SCHEDULES = ("constant", "step", "cosine")
LOSSES = ("l1", "l2")

# Fields that may change between a run and its resumption without changing the trajectory.
_RESUME_FREE_FIELDS = {"log_every", "checkpoint_every", "device"}


@dataclass(frozen=True)
class TrainConfig:
    """Budget and optimiser settings shared by pre-training, meta-training and fine-tuning.

    iterations: optimiser steps (meta-steps for MAML).
    batch: patches per step (per drawn task in pre-training; see :func:`drtl.train.pretrain.pretrain`).
    lr_patch: LR patch size; used by whoever builds the samplers (a sampler fixes its own size).
    lr, betas, weight_decay: Adam.
    schedule: ``"constant"``, ``"step"`` (multiply by ``gamma`` at each of ``milestones``) or
        ``"cosine"`` (from ``lr`` to ``lr * min_lr_ratio`` over ``iterations``).
    loss: ``"l1"`` (the paper's) or ``"l2"``; per-pixel mean.
    grad_clip: clip the global gradient norm to this value (0 = off).
    log_every: steps between history log entries / ``on_log`` calls (the per-step curve is always kept).
    checkpoint_every: steps between checkpoints when a ``ckpt_path`` is given (0 = only at the end).
    device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when present, else CPU).
    amp: bf16 autocast for the forward passes on CUDA; ignored on CPU.
    seed: seeds the generator when a trainer is called with ``gen=None``.
    """

    iterations: int = 1000
    batch: int = 16
    lr_patch: int = 48
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.5
    min_lr_ratio: float = 0.0
    loss: str = "l1"
    grad_clip: float = 0.0
    log_every: int = 50
    checkpoint_every: int = 0
    device: str = "cpu"
    amp: bool = False
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        def bad(msg):
            raise ConfigError(f"TrainConfig: {msg}")
        if int(self.iterations) < 0:
            bad(f"iterations={self.iterations} must be >= 0")
        if int(self.batch) < 1:
            bad(f"batch={self.batch} must be >= 1")
        if int(self.lr_patch) < 1:
            bad(f"lr_patch={self.lr_patch} must be >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            bad(f"lr={self.lr} must be a positive number")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            bad(f"betas={self.betas} must be two numbers in [0, 1)")
        if self.weight_decay < 0:
            bad(f"weight_decay={self.weight_decay} must be >= 0")
        if self.schedule not in SCHEDULES:
            bad(f"schedule={self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if list(self.milestones) != sorted(self.milestones) or any(m < 1 for m in self.milestones):
            bad(f"milestones={self.milestones} must be increasing positive step numbers")
        if not (self.gamma > 0):
            bad(f"gamma={self.gamma} must be > 0")
        if not (0.0 <= self.min_lr_ratio <= 1.0):
            bad(f"min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        if self.loss not in LOSSES:
            bad(f"loss={self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.grad_clip < 0:
            bad(f"grad_clip={self.grad_clip} must be >= 0 (0 = off)")
        if int(self.log_every) < 1:
            bad(f"log_every={self.log_every} must be >= 1")
        if int(self.checkpoint_every) < 0:
            bad(f"checkpoint_every={self.checkpoint_every} must be >= 0 (0 = only at the end)")
        if not isinstance(self.device, str) or not (
            self.device in ("cpu", "cuda", "auto") or (self.device.startswith("cuda:") and self.device[5:].isdigit())
        ):
            bad(f"device={self.device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "TrainConfig":
        """Build from a params mapping (e.g. a YAML section); unknown keys raise ConfigError."""
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"TrainConfig: unknown key(s) {unknown}; known keys are {sorted(names)}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"TrainConfig: {exc}") from None

    def to_dict(self) -> dict:
        """Plain dict (tuples as lists): YAML/JSON/checkpoint friendly."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def resolve_device(name: str | torch.device = "cpu") -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cuda"`` without CUDA raises ConfigError."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (isinstance(name, str) and name.startswith("cuda:")):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name!r} but CUDA is not available here; use device 'cpu' or 'auto'")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device={name!r} but only {torch.cuda.device_count()} CUDA device(s) are visible")
        return dev
    raise ConfigError(f"device={name!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'")


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (samplers draw on the CPU)."""
    return torch.Generator().manual_seed(int(seed))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate used for 0-based optimiser step ``step`` (a pure function: resume needs no state)."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "step":
        n = sum(1 for m in cfg.milestones if step >= m)
        return cfg.lr * cfg.gamma**n
    t = min(step / max(cfg.iterations, 1), 1.0)  # cosine
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t)))


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


def eligible_tasks(w: torch.Tensor | None, n_tasks: int) -> list[int]:
    """Tasks that can be drawn: all of them for uniform, those with positive weight otherwise."""
    if w is None:
        return list(range(n_tasks))
    return [i for i in range(n_tasks) if float(w[i]) > 0.0]


def draw_tasks(eligible: list[int], m: int, gen: torch.Generator) -> list[int]:
    """``m`` tasks uniformly without replacement. Drawing all of them consumes no randomness
    (the order does not change a summed loss), so a one-task run draws exactly like a single-task loop."""
    if m >= len(eligible):
        return list(eligible)
    perm = torch.randperm(len(eligible), generator=gen)[:m].tolist()
    return [eligible[i] for i in perm]


# ----------------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` atomically (temp file next to ``path``, then ``os.replace``)."""
    with atomic_path(path, suffix=".tmp") as tmp:
        torch.save(dict(state), tmp)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``; unreadable files raise ModelError."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ModelError(
            f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc}); delete it to start the run afresh"
        ) from None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: not a drtl checkpoint (got {type(state).__name__}); delete it to start afresh")
    return state


def _cpu_state(obj):
    """Deep-copy a (nested) state onto the CPU so a checkpoint never aliases live tensors."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu_state(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_cpu_state(v) for v in obj)
    return obj


# ----------------------------------------------------------------------------------------------
# progress


class _Progress:
    """tqdm on a terminal (or when forced), a user callback, or nothing."""

    def __init__(self, progress, total: int, initial: int, desc: str):
        self.bar = None
        self.fn = None
        if callable(progress):
            self.fn = progress
        else:
            enabled = sys.stderr.isatty() if progress is None else bool(progress)
            if enabled and total > initial:
                try:
                    from tqdm.auto import tqdm

                    self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=False)
                except Exception:  # tqdm missing or broken: stay quiet
                    self.bar = None

    def update(self, step: int, total: int, loss: float | None):
        if self.fn is not None:
            self.fn(step, total, loss)
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            if loss is not None:
                self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------------------------
# the loop

StepOutput = torch.Tensor | tuple[torch.Tensor, Mapping[str, Any]]


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
) -> dict:
    """Run ``cfg.iterations`` Adam steps of ``step_fn`` on ``model``; return the history dict.

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

    progress: None = tqdm only when stderr is a terminal; True/False force it; a callable gets
    ``(step, total, last_logged_loss_or_None)`` after every step.
    """
    device = resolve_device(cfg.device) if device is None else device
    model.to(device)
    model.train()
    params = [p for p in (model.parameters() if params is None else params) if p.requires_grad]
    if not params:
        raise ModelError("the model has no trainable parameters")
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    amp = bool(cfg.amp) and device.type == "cuda"

    history = _new_history(kind, cfg)
    start = 0
    if ckpt_path is not None and Path(ckpt_path).exists():
        state = load_checkpoint(ckpt_path)
        _check_resumable(state, kind, cfg, ckpt_path, fingerprint)
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
                "model": _cpu_state(model.state_dict()),
                "optimizer": _cpu_state(opt.state_dict()),
                "gen": gen.get_state(),
                "history": history,
            },
        )

    bar = _Progress(progress, cfg.iterations, start, kind)
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
        flush()
        history["wall_s"] = wall0 + time.perf_counter() - t0
        if start < cfg.iterations:
            checkpoint(cfg.iterations)
    finally:
        bar.close()
    return history


def _check_resumable(state: dict, kind: str, cfg: TrainConfig, ckpt_path, fingerprint) -> None:
    for key in ("format", "kind", "step", "config", "model", "optimizer", "gen", "history"):
        if key not in state:
            raise ModelError(f"{ckpt_path}: checkpoint lacks {key!r}; delete it to start the run afresh")
    if state["kind"] != kind:
        raise ConfigError(
            f"{ckpt_path}: checkpoint was written by a {state['kind']!r} run, not {kind!r}; use another path"
        )
    mine = {k: v for k, v in cfg.to_dict().items() if k not in _RESUME_FREE_FIELDS}
    theirs = {k: v for k, v in dict(state["config"]).items() if k not in _RESUME_FREE_FIELDS}
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if diff:
        raise ConfigError(
            f"{ckpt_path}: checkpoint was written with different training settings ({', '.join(diff)}); "
            "delete it to start afresh or restore the old settings"
        )
    mine, theirs = dict(fingerprint or {}), dict(state.get("fingerprint") or {})
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if diff:
        raise ConfigError(
            f"{ckpt_path}: checkpoint was written with different {kind} settings ({', '.join(diff)}); "
            "delete it to start afresh or restore the old settings"
        )
    if int(state["step"]) > cfg.iterations:
        raise ConfigError(f"{ckpt_path}: checkpoint is at step {state['step']} > iterations={cfg.iterations}")


__all__ = [
    "TrainConfig",
    "resolve_device",
    "make_generator",
    "lr_at",
    "per_sample_loss",
    "pixel_loss",
    "validate_weights",
    "eligible_tasks",
    "draw_tasks",
    "save_checkpoint",
    "load_checkpoint",
    "run_loop",
]
