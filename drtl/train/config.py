"""Training budget and optimiser settings (:class:`TrainConfig`) and the learning-rate schedule."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from drtl.device import device_name
from drtl.errors import ConfigError

SCHEDULES = ("constant", "step", "cosine")
LOSSES = ("l1", "l2")


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
        try:
            device_name(self.device)  # the spelling only: availability is checked when a run starts
        except ConfigError as exc:
            bad(str(exc))

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
