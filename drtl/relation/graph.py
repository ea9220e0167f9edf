"""The distortion-relation knowledge graph: build (networkx), export, plot, rank.

Nodes: one per auxiliary task (attributes ``kind='task'``, ``family``, ``index``, ``similarity`` to
the target, relation ``weight``) plus the target node (``kind='target'``, ``family='target'``).
Edges: target--task (``kind='relation'``, ``similarity``, ``weight``) for every task, and task--task
(``kind='task'``, ``similarity``) for all pairs or the top-k most similar per task. Graph attributes:
``tau``, ``target``, ``top_k`` (0 = all pairs), ``num_tasks``.

All stored numbers are plain Python floats/ints/strings so the graph is JSON- and GraphML-safe.
Files are written atomically (temp + rename).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import networkx as nx
import numpy as np

from drtl.errors import ConfigError
from drtl.io import atomic_path, write_text
from drtl.relation.weights import check_tau, similarities, softmax_weights, task_task_similarity

#: key of the edge list in graph.json (explicit, so readers do not depend on networkx's default)
EDGES_KEY = "links"


def build_graph(
    task_names: Sequence[str],
    task_families: Sequence[str],
    prototypes,
    target_emb,
    tau: float,
    target_name: str = "target",
    top_k: int | None = None,
    weights=None,
    scores=None,
) -> nx.Graph:
    """Build the relation graph. ``top_k`` None/0 = all task pairs, k = each task's k nearest tasks.
    ``weights``: the target-task weights when they are not plain ``softmax(cos / tau)`` (e.g.
    ``relation.mix`` / ``relation.top_k``, :func:`drtl.relation.weights.shape_weights`).
    Without a DRN (``prototypes`` and ``target_emb`` None) the target-task edges carry ``scores``
    (the similarity's own measure, e.g. PSNR) and ``weights``, and there are no task-task edges."""
    tau = check_tau(tau)
    names = [str(n) for n in task_names]
    fams = [str(f) for f in task_families]
    if len(names) != len(fams):
        raise ConfigError(f"{len(names)} task names but {len(fams)} task families; give one family per task")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"duplicate task names {dup}; task names must be unique")
    if target_name in names:
        raise ConfigError(f"target node name {target_name!r} clashes with a task name; choose another target_name")
    if prototypes is None:
        if scores is None or weights is None:
            raise ConfigError("build_graph without prototypes needs the scores and the weights")
        return _score_graph(names, fams, np.asarray(scores, dtype=np.float64).reshape(-1),
                            np.asarray(weights, dtype=np.float64).reshape(-1), tau, target_name)
    protos = np.asarray(prototypes.detach().cpu() if hasattr(prototypes, "detach") else prototypes, dtype=np.float64)
    if protos.ndim != 2 or protos.shape[0] != len(names):
        raise ConfigError(f"prototypes shape {protos.shape} does not match {len(names)} task names")
    if top_k is None:
        top_k = 0
    if int(top_k) != top_k or top_k < 0:
        raise ConfigError(f"top_k={top_k!r} must be a non-negative integer (0 = all task pairs)")
    top_k = int(top_k)

    sims = similarities(target_emb, protos)
    weights = softmax_weights(sims, tau) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if weights.shape != (len(names),):
        raise ConfigError(f"{weights.shape[0]} weights for {len(names)} tasks; give one weight per task")
    tt = task_task_similarity(protos)

    G = _star(names, fams, sims, weights, tau, target_name, top_k)
    N = len(names)
    if top_k == 0 or top_k >= N - 1:
        pairs = {(i, j) for i in range(N) for j in range(i + 1, N)}
    else:
        pairs = set()
        for i in range(N):
            order = [j for j in np.argsort(-tt[i], kind="stable").tolist() if j != i][:top_k]
            pairs.update((min(i, j), max(i, j)) for j in order)
    for i, j in sorted(pairs):
        G.add_edge(names[i], names[j], kind="task", similarity=float(tt[i, j]))
    return G


def _score_graph(names, fams, sims, weights, tau, target_name) -> nx.Graph:
    if not (sims.shape == weights.shape == (len(names),)):
        raise ConfigError(f"{sims.size} scores and {weights.size} weights for {len(names)} tasks; give one per task")
    return _star(names, fams, sims, weights, tau, target_name, 0)


def _star(names, fams, sims, weights, tau, target_name, top_k) -> nx.Graph:
    """The target node and its edge to every task (similarity, weight)."""
    G = nx.Graph(tau=float(tau), target=str(target_name), top_k=top_k, num_tasks=len(names))
    G.add_node(target_name, kind="target", family="target")
    for i, (n, f) in enumerate(zip(names, fams)):
        G.add_node(n, kind="task", family=f, index=i, similarity=float(sims[i]), weight=float(weights[i]))
        G.add_edge(target_name, n, kind="relation", similarity=float(sims[i]), weight=float(weights[i]))
    return G


def graph_weights(G: nx.Graph) -> dict[str, float]:
    """{task name: relation weight} read back from a graph built by :func:`build_graph`."""
    return {n: float(d["weight"]) for n, d in G.nodes(data=True) if d.get("kind") == "task"}


def graph_to_json(G: nx.Graph) -> dict:
    """networkx node-link data (edge list under ``EDGES_KEY``), JSON-serialisable."""
    return nx.node_link_data(G, edges=EDGES_KEY)


def export_graph(G: nx.Graph, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``graph.json`` (node-link data) and ``graph.graphml`` into ``out_dir``, atomically.

    Returns {"json": path, "graphml": path}. Read back with :func:`load_graph` or
    ``nx.node_link_graph(data, edges="links")`` / ``nx.read_graphml(path)``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = graph_to_json(G)
    try:
        text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"relation graph is not JSON-serialisable ({exc}); build it with build_graph") from None
    json_path, graphml_path = out / "graph.json", out / "graph.graphml"
    write_text(json_path, text + "\n")
    with atomic_path(graphml_path) as tmp:
        nx.write_graphml(G, tmp)
    return {"json": json_path, "graphml": graphml_path}


def load_graph(path: str | os.PathLike) -> nx.Graph:
    """Read a graph written by :func:`export_graph` (``.json`` or ``.graphml``)."""
    path = Path(path)
    if path.suffix == ".graphml":
        return nx.read_graphml(path)
    data = json.loads(path.read_text())
    return nx.node_link_graph(data, edges=EDGES_KEY if EDGES_KEY in data else "edges")


# ----------------------------------------------------------------------------------------------
# plots (matplotlib Agg via an explicit canvas: no pyplot state, no display needed)
# ----------------------------------------------------------------------------------------------
def _new_figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return path


def plot_weights(
    task_names: Sequence[str],
    weights,
    path: str | os.PathLike,
    title: str | None = None,
    families: Sequence[str] | None = None,
) -> Path:
    """Horizontal bar chart of relation weights, largest at the top; PNG written atomically."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(task_names) != w.size:
        raise ConfigError(f"{len(task_names)} task names but {w.size} weights")
    order = np.argsort(-w, kind="stable")
    names = [str(task_names[i]) for i in order][::-1]
    vals = w[order][::-1]
    fig = _new_figure(7.0, max(2.0, 0.28 * len(names) + 1.0))
    ax = fig.add_subplot(1, 1, 1)
    colors = None
    if families is not None:
        fam_sorted = [str(families[i]) for i in order][::-1]
        uniq = sorted(set(fam_sorted))
        from matplotlib import colormaps

        cmap = colormaps["tab10"]
        cidx = {f: cmap(k % 10) for k, f in enumerate(uniq)}
        colors = [cidx[f] for f in fam_sorted]
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=cidx[f], label=f) for f in uniq], loc="lower right", fontsize="small")
    ax.barh(np.arange(len(names)), vals, color=colors)
    ax.set_yticks(np.arange(len(names)))
    ax.set_yticklabels(names, fontsize="small")
    ax.axvline(1.0 / max(1, len(names)), color="gray", linestyle="--", linewidth=0.8, label="uniform")
    ax.set_xlabel("relation weight")
    ax.set_title(title or "Distortion relation weights")
    return _save_png(fig, path)


def plot_graph(G: nx.Graph, path: str | os.PathLike, seed: int = 0, title: str | None = None) -> Path:
    """Spring-layout picture of the relation graph (node size = relation weight); PNG, atomic."""
    target = G.graph.get("target", "target")
    pos = nx.spring_layout(G, seed=seed)
    fig = _new_figure(7.0, 7.0)
    ax = fig.add_subplot(1, 1, 1)
    task_nodes = [n for n, d in G.nodes(data=True) if d.get("kind") == "task"]
    weights = np.array([G.nodes[n].get("weight", 0.0) for n in task_nodes], dtype=np.float64)
    scale = weights.max() if weights.size and weights.max() > 0 else 1.0
    rel_edges = [(u, v) for u, v, d in G.edges(data=True) if d.get("kind") == "relation"]
    tt_edges = [(u, v) for u, v, d in G.edges(data=True) if d.get("kind") == "task"]
    nx.draw_networkx_edges(G, pos, edgelist=tt_edges, ax=ax, edge_color="lightgray", width=0.6)
    rel_w = [G.edges[e].get("weight", 0.0) / scale for e in rel_edges]
    nx.draw_networkx_edges(G, pos, edgelist=rel_edges, ax=ax, edge_color="tab:red", width=[0.3 + 3.0 * x for x in rel_w])
    nx.draw_networkx_nodes(
        G, pos, nodelist=task_nodes, ax=ax, node_size=[80 + 900 * x / scale for x in weights], node_color="tab:blue"
    )
    if target in G:
        nx.draw_networkx_nodes(G, pos, nodelist=[target], ax=ax, node_size=500, node_color="tab:red", node_shape="*")
    nx.draw_networkx_labels(G, pos, ax=ax, font_size=7)
    ax.set_title(title or f"Distortion relation graph (tau={G.graph.get('tau', '?')})")
    ax.set_axis_off()
    return _save_png(fig, path)


def ranking_table(task_names: Sequence[str], families: Sequence[str], sims, weights):
    """pandas DataFrame (task, family, similarity, weight, rank), sorted by weight (rank 1 = largest)."""
    import pandas as pd

    s = np.asarray(sims, dtype=np.float64).reshape(-1)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if not (len(task_names) == len(families) == s.size == w.size):
        raise ConfigError(
            f"ranking_table: lengths differ (tasks {len(task_names)}, families {len(families)}, "
            f"similarities {s.size}, weights {w.size})"
        )
    df = pd.DataFrame(
        {
            "task": [str(t) for t in task_names],
            "family": [str(f) for f in families],
            "similarity": s,
            "weight": w,
        }
    )
    df = df.sort_values("weight", ascending=False, kind="stable").reset_index(drop=True)
    df["rank"] = np.arange(1, len(df) + 1)
    return df
