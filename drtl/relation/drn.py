"""Distortion Relation Network (DRN) training, memory bank and target embedding.

The DRN encoder is any ``nn.Module`` mapping LR patches (NCHW float32 in [0, 1]) to (N, D)
embeddings (``drtl.archs.drn.DRNEncoder`` in the pipeline). Its outputs are L2-normalised again
here, so an encoder that already normalises is fine.

Training = prototype classification over the auxiliary tasks: a :class:`MemoryBank` holds one
learnable prototype per task; logits are ``cos(embedding, prototype_i) / temperature`` and the loss is
cross-entropy over tasks. Adam updates encoder and bank together.

The target embedding (:func:`embed_images`) is the L2-normalised mean embedding of a regular grid of
crops of the K target LR images (numpy HWC uint8). Only the K shots' LR images are ever passed in;
the test pairs are never touched.

All randomness comes from the ``torch.Generator`` passed in (CPU generator: batches are drawn on the
CPU, then moved to ``cfg.device``); same seed and same encoder initialisation give the same
prototypes on CPU.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from drtl.errors import ConfigError, DataError, DRTLError


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
    log_every: steps between ``on_log`` calls; progress: None = a bar only on a TTY.
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


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> cuda when available else cpu; raise ConfigError for an unavailable device."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'auto'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use device 'cpu' or 'auto'")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r} requested but MPS is not available; use device 'cpu' or 'auto'")
    return dev


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


def _draw(samplers: Sequence, n: int, p: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n LR patches per task, stacked task by task; labels 0..T-1."""
    xs = [_crop_to(s.sample_lr(n, gen), p, gen) for s in samplers]
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


def _progress(total: int, enabled: bool | None, desc: str):
    """A tqdm bar on a terminal, a silent stand-in otherwise (CI logs stay clean)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
        except ImportError:  # pragma: no cover - tqdm is a declared dependency
            pass

    class _Quiet:
        def update(self, n=1):
            pass

        def set_postfix(self, **kw):
            pass

        def close(self):
            pass

    return _Quiet()


# ----------------------------------------------------------------------------------------------
# training and evaluation
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
    NCHW float32 LR patches in [0, 1] (e.g. ``drtl.data.patches.PairSampler``).
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
            probe = _draw(samplers[:1], 1, cfg.lr_patch, gen)[0].to(device)
            dim = _embed(encoder, probe).shape[1]
        bank = MemoryBank(T, dim, gen=gen)
    elif bank.num_tasks != T:
        raise ConfigError(f"memory bank has {bank.num_tasks} prototypes but {T} task samplers were given")
    bank.to(device)

    params = list(encoder.parameters()) + list(bank.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses: list[float] = []
    accs: list[float] = []
    encoder.train()
    bank.train()
    bar = _progress(cfg.steps, cfg.progress, "DRN")
    t0 = time.perf_counter()
    last_log = 0
    try:
        for step in range(1, cfg.steps + 1):
            x, y = _draw(samplers, cfg.batch_per_task, cfg.lr_patch, gen)
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
                x = _crop_to(s.sample_lr(k, gen), lr_patch, gen).to(device)
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
                embs = _image_embeddings(encoder, list(s.lr), lr_patch, patches_per_image, device, batch)
            else:
                n_groups = max(1, n_per_task // max(1, group_size))
                x = _crop_to(s.sample_lr(n_groups * group_size, gen), lr_patch, gen).to(device)
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


def _crops(img: torch.Tensor, p: int, n: int, gen: torch.Generator | None, mode: str) -> torch.Tensor:
    """(k, 3, p, p) crops of one CHW image: a g x g grid (g = ceil(sqrt(n))) or n random crops."""
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
) -> torch.Tensor:
    """(K, D) unit embeddings, one per image (normalised mean over its crops)."""
    out = []
    for i, img in enumerate(images):
        crops = _crops(_image_to_tensor(img, i), lr_patch, patches_per_image, gen, mode)
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
) -> np.ndarray:
    """Target embedding: (D,) float64 unit vector = normalised mean DRN embedding of the K LR images.

    lr_images: the K target shots' LR images only (numpy HWC RGB uint8, or float in [0, 1]).
    mode 'grid' (default, deterministic; ``gen`` unused): a g x g regular grid of crops per image with
    g = ceil(sqrt(patches_per_image)); mode 'random': ``patches_per_image`` random crops drawn with
    ``gen``. Every image contributes the same number of crops, so each shot weighs the same.
    """
    if len(lr_images) == 0:
        raise DataError("no target LR images given; the target embedding needs at least one shot")
    if int(lr_patch) != lr_patch or lr_patch < 1:
        raise ConfigError(f"lr_patch={lr_patch!r} must be a positive integer")
    if int(patches_per_image) != patches_per_image or patches_per_image < 1:
        raise ConfigError(f"patches_per_image={patches_per_image!r} must be a positive integer")
    device = _module_device(encoder)
    with _eval_mode(encoder):
        sums = None
        count = 0
        for i, img in enumerate(lr_images):
            crops = _crops(_image_to_tensor(img, i), int(lr_patch), int(patches_per_image), gen, mode)
            for j in range(0, len(crops), batch):
                e = _embed(encoder, crops[j : j + batch].to(device)).double().sum(0)
                sums = e if sums is None else sums + e
            count += len(crops)
    mean = (sums / count).cpu().numpy()
    norm = np.linalg.norm(mean)
    if not np.isfinite(norm) or norm < 1e-12:
        raise DRTLError("target embedding is degenerate (mean of crop embeddings is ~0); retrain the DRN")
    return mean / norm
