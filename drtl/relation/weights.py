"""Relation weights between the target distortion and the auxiliary tasks.

All functions take embeddings/prototypes as numpy arrays or torch tensors (anything ``np.asarray``
accepts) and return numpy float64 arrays. Embeddings are L2-normalised here again, so callers may
pass raw vectors.

- ``similarities(target, prototypes)``: cosine similarity of the target embedding to each prototype;
- ``relation_weights(target, prototypes, tau)``: ``softmax(similarities / tau)`` over tasks;
- ``uniform_weights(n)``: ``1/n`` each (the uniform baseline);
- ``task_task_similarity(prototypes)``: the (N, N) cosine matrix of the prototypes;
- ``restrict(weights, mask)`` / ``family_mask(families, keep)``: ablations on a subset of tasks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from drtl.errors import ConfigError

_EPS = 1e-12


def _as_array(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name} contains NaN or inf; retrain the distortion relation network")
    return arr


def _unit_rows(arr: np.ndarray, name: str) -> np.ndarray:
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    if np.any(norms < _EPS):
        raise ConfigError(f"{name} has a zero-length vector; cannot compute a cosine similarity")
    return arr / norms


def check_tau(tau: float) -> float:
    """Return ``tau`` as a float, or raise ConfigError unless it is a finite number > 0."""
    try:
        t = float(tau)
    except (TypeError, ValueError):
        raise ConfigError(f"relation temperature tau={tau!r} is not a number; use a positive value such as 0.1") from None
    if not math.isfinite(t) or t <= 0.0:
        raise ConfigError(f"relation temperature tau={tau!r} must be a finite number > 0 (e.g. 0.1)")
    return t


def similarities(target_emb, prototypes) -> np.ndarray:
    """Cosine similarity (N,) between a (D,) target embedding and (N, D) prototypes."""
    t = _as_array(target_emb, "target embedding").reshape(-1)
    p = _as_array(prototypes, "prototypes")
    if p.ndim != 2:
        raise ConfigError(f"prototypes must be a (num_tasks, dim) matrix, got shape {p.shape}")
    if p.shape[0] == 0:
        raise ConfigError("no prototypes given; train the relation network on at least one auxiliary task")
    if p.shape[1] != t.shape[0]:
        raise ConfigError(
            f"target embedding has dim {t.shape[0]} but prototypes have dim {p.shape[1]}; "
            "use the same relation network for both"
        )
    sims = _unit_rows(p, "prototypes") @ _unit_rows(t[None], "target embedding")[0]
    return np.clip(sims, -1.0, 1.0)


def softmax_weights(sims, tau: float) -> np.ndarray:
    """``softmax(sims / tau)`` (numerically stable), float64, sums to 1."""
    tau = check_tau(tau)
    s = _as_array(sims, "similarities").reshape(-1)
    if s.size == 0:
        raise ConfigError("no similarities given; need at least one auxiliary task")
    z = s / tau
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def relation_weights(target_emb, prototypes, tau: float, mix: float = 0.0, top_k: int = 0) -> np.ndarray:
    """Relation weights w_i = softmax_i(cos(target, prototype_i) / tau); shape (N,), sums to 1.

    ``top_k`` > 0 keeps the k largest (renormalised; ties at the k-th value are kept), then ``mix``
    in [0, 1] blends with uniform: ``(1 - mix) * w + mix / N`` (every task keeps at least mix / N)."""
    tau = check_tau(tau)  # validate before any shape work, so a bad tau is the message the user sees
    return shape_weights(softmax_weights(similarities(target_emb, prototypes), tau), mix, top_k)


def shape_weights(w, mix: float = 0.0, top_k: int = 0) -> np.ndarray:
    """The ``top_k`` then ``mix`` steps of :func:`relation_weights` on weights ``w`` (sum 1)."""
    w = _as_array(w, "weights").reshape(-1)
    if isinstance(mix, bool) or not isinstance(mix, (int, float)) or not 0.0 <= mix <= 1.0:
        raise ConfigError(f"relation.mix={mix!r} must be a number in [0, 1] (0 = the relation weights, 1 = uniform)")
    if isinstance(top_k, bool) or int(top_k) != top_k or top_k < 0:
        raise ConfigError(f"relation.top_k={top_k!r} must be an integer >= 0 (0 = every task)")
    if 0 < top_k < w.size:
        w = np.where(w >= np.sort(w)[-int(top_k)], w, 0.0)
        w = w / w.sum()
    return (1.0 - mix) * w + mix / w.size


def uniform_weights(n: int) -> np.ndarray:
    """``1/n`` for each of ``n`` tasks (the uniform pre-training / plain MAML baseline)."""
    if int(n) != n or n < 1:
        raise ConfigError(f"uniform_weights needs a positive number of tasks, got {n!r}")
    return np.full(int(n), 1.0 / int(n), dtype=np.float64)


def task_task_similarity(prototypes) -> np.ndarray:
    """(N, N) cosine similarity matrix between prototypes (symmetric, ones on the diagonal)."""
    p = _as_array(prototypes, "prototypes")
    if p.ndim != 2 or p.shape[0] == 0:
        raise ConfigError(f"prototypes must be a non-empty (num_tasks, dim) matrix, got shape {p.shape}")
    u = _unit_rows(p, "prototypes")
    m = np.clip(u @ u.T, -1.0, 1.0)
    m = 0.5 * (m + m.T)
    np.fill_diagonal(m, 1.0)
    return m


def _mask_array(mask, n: int) -> np.ndarray:
    m = np.asarray(list(mask) if not hasattr(mask, "shape") else mask)
    if m.dtype == bool:
        if m.shape != (n,):
            raise ConfigError(f"task mask has shape {m.shape}, expected ({n},) to match the weights")
        return m
    # integer indices
    out = np.zeros(n, dtype=bool)
    for i in m.reshape(-1).tolist():
        if int(i) != i or not -n <= int(i) < n:
            raise ConfigError(f"task index {i!r} is out of range for {n} tasks")
        out[int(i)] = True
    return out


def restrict(weights, mask) -> np.ndarray:
    """Zero the weights outside ``mask`` and renormalise the rest to sum to 1.

    ``mask`` is a boolean array of length N or a sequence of task indices. The result keeps length N
    (zeros outside the subset) so it stays aligned with the task list.
    """
    w = _as_array(weights, "weights").reshape(-1)
    if np.any(w < 0):
        raise ConfigError("weights must be non-negative")
    m = _mask_array(mask, w.size)
    if not m.any():
        raise ConfigError("task subset is empty; keep at least one auxiliary task (check the family names)")
    out = np.where(m, w, 0.0)
    total = out.sum()
    if total <= 0:
        # every kept task had weight 0 (underflow at tiny tau): fall back to uniform over the subset
        out = m.astype(np.float64)
        total = out.sum()
    return out / total


def family_mask(families: Sequence[str], keep: Iterable[str]) -> np.ndarray:
    """Boolean mask of the tasks whose family is in ``keep`` (raises on unknown family names)."""
    keep = set(keep)
    known = set(families)
    unknown = keep - known
    if unknown:
        raise ConfigError(f"unknown task families {sorted(unknown)}; known families: {sorted(known)}")
    return np.array([f in keep for f in families], dtype=bool)


def entropy(weights) -> float:
    """Shannon entropy (nats) of a weight vector; log(N) for uniform weights."""
    w = _as_array(weights, "weights").reshape(-1)
    w = w[w > 0]
    return float(-(w * np.log(w)).sum())


def effective_tasks(weights) -> float:
    """exp(entropy): how many tasks effectively contribute (N for uniform, 1 for one-hot)."""
    return float(math.exp(entropy(weights)))
