"""Distortion relations: DRN training + memory bank, relation weights, the knowledge graph.

- :mod:`drtl.relation.drn`: ``MemoryBank``, ``DRNConfig``, ``train_drn``;
- :mod:`drtl.relation.embed`: ``embed_images`` (target embedding from the K shots' LR images only),
  ``evaluate_drn`` (held-out accuracy);
- :mod:`drtl.relation.weights`: ``relation_weights`` = softmax(cos / tau), ``uniform_weights``,
  ``similarities``, ``task_task_similarity``, ablation helpers ``restrict`` / ``family_mask``;
- :mod:`drtl.relation.graph`: ``build_graph`` (networkx), ``export_graph`` (graph.json + graph.graphml),
  ``load_graph``, ``plot_weights``, ``plot_graph``, ``ranking_table`` (pandas).

matplotlib and pandas are imported lazily inside the plotting / table functions.
"""

from drtl.relation.drn import DRNConfig, MemoryBank, train_drn
from drtl.relation.embed import embed_images, evaluate_drn
from drtl.relation.graph import (
    build_graph,
    export_graph,
    graph_weights,
    load_graph,
    plot_graph,
    plot_weights,
    ranking_table,
)
from drtl.relation.weights import (
    check_tau,
    effective_tasks,
    entropy,
    family_mask,
    relation_weights,
    restrict,
    shape_weights,
    similarities,
    softmax_weights,
    task_task_similarity,
    uniform_weights,
)

__all__ = [
    "DRNConfig",
    "MemoryBank",
    "build_graph",
    "check_tau",
    "effective_tasks",
    "embed_images",
    "entropy",
    "evaluate_drn",
    "export_graph",
    "family_mask",
    "graph_weights",
    "load_graph",
    "plot_graph",
    "plot_weights",
    "ranking_table",
    "relation_weights",
    "restrict",
    "shape_weights",
    "similarities",
    "softmax_weights",
    "task_task_similarity",
    "train_drn",
    "uniform_weights",
]
