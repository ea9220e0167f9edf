"""Distortion Relation Network (DRN) training and its memory bank.

The DRN encoder is any ``nn.Module`` mapping LR patches (NCHW float32 in [0, 1]) to (N, D)
embeddings (``drtl.archs.drn.DRNEncoder`` in the pipeline). Its outputs are L2-normalised again
here, so an encoder that already normalises is fine.

Training = prototype classification over the auxiliary tasks: a :class:`MemoryBank` holds one
learnable prototype per task; logits are ``cos(embedding, prototype_i) / temperature`` and the loss is
cross-entropy over tasks. Adam updates encoder and bank together. Embedding images with the trained
encoder (the target embedding, held-out accuracy) is :mod:`drtl.relation.embed`.

All randomness comes from the ``torch.Generator`` passed in (CPU generator: batches are drawn on the
CPU, then moved to ``cfg.device``); same seed and same encoder initialisation give the same
prototypes on CPU.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from drtl.archs.drn import drn_input
from drtl.device import resolve_device
from drtl.errors import ConfigError, DRTLError
from drtl.progress import progress
from drtl.optim import Adam


# ----------------------------------------------------------------------------------------------
# config and memory bank
# ----------------------------------------------------------------------------------------------
@dataclass
class DRNConfig:
    """Hyper-parameters of DRN training.

    steps: optimisation steps; batch_per_task: LR patches per task per step (balanced batches);
    lr_patch: LR crop size fed to the encoder (samplers giving larger crops are cropped to it);
    lr: Adam learning rate; temperature: cosine-logit temperature (e.g. 0.1);
    device: 'cpu', 'cuda', 'cuda:0', ... or 'auto'; weight_decay: Adam weight decay;
    log_every: steps between ``on_log`` calls; progress: None = a bar only on a terminal
    (see :mod:`drtl.progress`).
    """

    steps: int = 1000
    batch_per_task: int = 8
    lr_patch: int = 32
    lr: float = 1e-3
    temperature: float = 0.1
    device: str = "cpu"
    weight_decay: float = 0.0
    log_every: int = 50
    progress: bool | None = None

    def validate(self) -> "DRNConfig":
        def pos_int(name):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ConfigError(f"DRN {name}={v!r} must be a positive integer")

        for name in ("steps", "batch_per_task", "lr_patch", "log_every"):
            pos_int(name)
        for name in ("lr", "temperature"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"DRN {name}={v!r} must be a finite number > 0")
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError(f"DRN weight_decay={self.weight_decay!r} must be >= 0")
        resolve_device(self.device)
        return self

    def to_dict(self) -> dict:
        return asdict(self)


class MemoryBank(nn.Module):
    """One learnable prototype per auxiliary task; L2-normalised on use.

    ``prototypes`` is an ``nn.Parameter`` of shape (num_tasks, dim), initialised from a standard
    normal drawn with ``gen`` (a fixed seed when ``gen`` is None), so construction is deterministic.
    """

    def __init__(self, num_tasks: int, dim: int, gen: torch.Generator | None = None):
        super().__init__()
        if int(num_tasks) != num_tasks or num_tasks < 1:
            raise ConfigError(f"MemoryBank needs a positive number of tasks, got {num_tasks!r}")
        if int(dim) != dim or dim < 1:
            raise ConfigError(f"MemoryBank needs a positive embedding dim, got {dim!r}")
        if gen is None:
            gen = torch.Generator().manual_seed(0)
        init = torch.randn(int(num_tasks), int(dim), generator=gen)
        self.prototypes = nn.Parameter(F.normalize(init, dim=1))

    @property
    def num_tasks(self) -> int:
        return self.prototypes.shape[0]

    @property
    def dim(self) -> int:
        return self.prototypes.shape[1]

    def normalized(self) -> torch.Tensor:
        """(num_tasks, dim) unit prototypes (differentiable)."""
        return F.normalize(self.prototypes, dim=1)

    def logits(self, emb: torch.Tensor, temperature: float) -> torch.Tensor:
        """Cosine logits (N, num_tasks) = cos(emb, prototype) / temperature."""
        return F.normalize(emb, dim=1) @ self.normalized().t() / temperature

    def forward(self, emb: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
        return self.logits(emb, temperature)

    def numpy(self) -> np.ndarray:
        """Unit prototypes as a float64 numpy array (num_tasks, dim), detached, on CPU."""
        return self.normalized().detach().cpu().double().numpy()


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _module_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(*modules: nn.Module):
    """Put modules in eval mode and restore their previous train/eval mode afterwards."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


def _embed(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Encoder output as (N, D), L2-normalised (flattens trailing singleton dims)."""
    out = encoder(x)
    if out.ndim != 2:
        if out.ndim > 2 and all(s == 1 for s in out.shape[2:]):
            out = out.flatten(1)
        else:
            raise ConfigError(f"DRN encoder must return (N, D) embeddings, got shape {tuple(out.shape)}")
    return F.normalize(out.float(), dim=1)


def _crop_to(x: torch.Tensor, p: int, gen: torch.Generator) -> torch.Tensor:
    """Random crop an NCHW batch to p x p (one offset per batch); raise if it is smaller."""
    h, w = x.shape[-2:]
    if h < p or w < p:
        raise ConfigError(f"sampler gives {h}x{w} LR patches, smaller than lr_patch={p}; lower lr_patch")
    if h == p and w == p:
        return x
    y = int(torch.randint(h - p + 1, (1,), generator=gen))
    xx = int(torch.randint(w - p + 1, (1,), generator=gen))
    return x[..., y : y + p, xx : xx + p]


def sample_input(encoder: nn.Module, sampler, n: int, gen: torch.Generator) -> torch.Tensor:
    """n patches of one task as the encoder embeds them: ``sampler.sample_lr`` (LR only), or
    LR + reference from ``sampler.sample`` (LR, HR) for a reference DRN (drtl.archs.drn)."""
    if not getattr(encoder, "reference", False):
        return sampler.sample_lr(n, gen)
    if not hasattr(sampler, "sample"):
        raise ConfigError(f"a reference DRN needs LR/HR pairs: {type(sampler).__name__} has no sample(batch, gen)")
    return drn_input(encoder, *sampler.sample(n, gen))


def _draw(encoder: nn.Module, samplers: Sequence, n: int, p: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n patches per task (LR, or LR + reference), stacked task by task; labels 0..T-1."""
    xs = [_crop_to(sample_input(encoder, s, n, gen), p, gen) for s in samplers]
    y = torch.arange(len(samplers)).repeat_interleave(n)
    return torch.cat(xs, 0), y


def _check_samplers(samplers: Sequence, what: str = "auxiliary") -> None:
    if len(samplers) < 2:
        raise ConfigError(
            f"the distortion relation network needs at least 2 {what} tasks to tell apart, got {len(samplers)}"
        )
    for i, s in enumerate(samplers):
        if not hasattr(s, "sample_lr"):
            raise ConfigError(f"sampler {i} ({type(s).__name__}) has no sample_lr(batch, gen) method")


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
def train_drn(
    encoder: nn.Module,
    samplers: Sequence,
    cfg: DRNConfig,
    gen: torch.Generator,
    on_log: Callable[[int, dict], None] | None = None,
    bank: MemoryBank | None = None,
) -> tuple[MemoryBank, dict]:
    """Train ``encoder`` and a memory bank by prototype classification over the auxiliary tasks.

    samplers: one per auxiliary task, in task order; each has ``sample_lr(batch, gen)`` returning
    NCHW float32 LR patches in [0, 1] (e.g. ``drtl.data.patches.PairSampler``), and, for a reference
    encoder (``encoder.reference``), ``sample(batch, gen)`` returning aligned (LR, HR) patches.
    gen: CPU ``torch.Generator`` used for the bank initialisation and every batch.
    on_log(step, {"loss", "accuracy"}): called every ``cfg.log_every`` steps and at the last step
    (metrics averaged over the steps since the previous call).
    bank: continue from an existing bank (its num_tasks must match); otherwise a new one is created.

    Returns (bank, history); history = {"loss": [...], "accuracy": [...]} per step (accuracy is the
    training-batch accuracy) plus "final_loss"/"final_accuracy" (mean over the last 10% of steps),
    "steps", "num_tasks", "dim", "seconds" and "config". The encoder is left in eval mode.
    """
    cfg.validate()
    _check_samplers(samplers)
    device = resolve_device(cfg.device)
    T = len(samplers)
    encoder.to(device)

    if bank is None:
        with torch.no_grad(), _eval_mode(encoder):
            probe = _draw(encoder, samplers[:1], 1, cfg.lr_patch, gen)[0].to(device)
            dim = _embed(encoder, probe).shape[1]
        bank = MemoryBank(T, dim, gen=gen)
    elif bank.num_tasks != T:
        raise ConfigError(f"memory bank has {bank.num_tasks} prototypes but {T} task samplers were given")
    bank.to(device)

    params = list(encoder.parameters()) + list(bank.parameters())
    opt = Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)  # drtl.optim.Adam: no torch._dynamo import
    losses: list[float] = []
    accs: list[float] = []
    encoder.train()
    bank.train()
    bar = progress(total=cfg.steps, desc="DRN", show=cfg.progress, dynamic_ncols=True)
    t0 = time.perf_counter()
    last_log = 0
    try:
        for step in range(1, cfg.steps + 1):
            x, y = _draw(encoder, samplers, cfg.batch_per_task, cfg.lr_patch, gen)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = bank.logits(_embed(encoder, x), cfg.temperature)
            loss = F.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                raise DRTLError(
                    f"DRN training diverged at step {step} (loss {loss.item()}); lower the DRN lr (now {cfg.lr})"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            accs.append(float((logits.detach().argmax(1) == y).float().mean()))
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                metrics = {
                    "loss": float(np.mean(losses[last_log:step])),
                    "accuracy": float(np.mean(accs[last_log:step])),
                }
                last_log = step
                bar.set_postfix(**{k: f"{v:.3f}" for k, v in metrics.items()})
                if on_log is not None:
                    on_log(step, metrics)
    finally:
        bar.close()
        encoder.eval()
        bank.eval()
    tail = max(1, cfg.steps // 10)
    history = {
        "loss": losses,
        "accuracy": accs,
        "final_loss": float(np.mean(losses[-tail:])),
        "final_accuracy": float(np.mean(accs[-tail:])),
        "steps": cfg.steps,
        "num_tasks": T,
        "dim": bank.dim,
        "seconds": time.perf_counter() - t0,
        "config": cfg.to_dict(),
    }
    return bank, history
