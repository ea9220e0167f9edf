"""What the relation and training stages share, kept light (no networkx, no plotting): the K
shots of a (K, seed) and the relation weights file ``weights.json``."""

from __future__ import annotations

import json
from pathlib import Path

from drtl.data.folder import pair_paths
from drtl.data.splits import few_shot_names
from drtl.errors import DataError


def run_key(shots: int, seed: int) -> str:
    return f"k{int(shots)}_s{int(seed)}"


def shot_names(pool: str | Path, shots: int, seed: int) -> list[str]:
    """The K pool pairs of this seed (nested across K; see drtl.data.splits.few_shot_names)."""
    return few_shot_names([n for n, _, _ in pair_paths(pool)], shots, seed)


def load_weights(relation_dir: str | Path, shots: int, seed: int, task_names: list[str]) -> dict[str, float]:
    """Every weight of this (K, seed) by task name, checked to cover ``task_names``."""
    path = Path(relation_dir) / "weights.json"
    if not path.is_file():
        raise DataError(f"{path}: no relation weights; run `drtl relation` first")
    all_w = json.loads(path.read_text())
    key = run_key(shots, seed)
    if key not in all_w:
        raise DataError(f"{path}: no weights for {key}; rerun `drtl relation` with these shots/seeds")
    w = all_w[key]
    missing = [n for n in task_names if n not in w]
    if missing:
        raise DataError(f"{path}: weights lack tasks {missing[:3]}; rerun `drtl relation` after `drtl synthesize`")
    return w
