"""drtl.relation: DRN + memory bank training, target embedding, relation weights, graph export.

Synthetic auxiliary "tasks" that a tiny CNN separates easily: blocky random images left clean,
box-blurred, or with strong Gaussian noise. Held-out samplers and target images are built from
different random images than the training samplers.
"""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from drtl.data.patches import PairSampler
from drtl.errors import ConfigError, DataError
from drtl.relation import (
    DRNConfig,
    MemoryBank,
    build_graph,
    embed_images,
    entropy,
    evaluate_drn,
    export_graph,
    family_mask,
    graph_weights,
    load_graph,
    plot_graph,
    plot_weights,
    ranking_table,
    relation_weights,
    restrict,
    similarities,
    task_task_similarity,
    train_drn,
    uniform_weights,
)

TASKS = ["clean", "blur", "noise"]
FAMILIES = ["none", "blur", "noise"]
LR_SIZE, BLOCK, PATCH, SCALE = 40, 5, 16, 2


# ----------------------------------------------------------------------------------------------
# synthetic data
# ----------------------------------------------------------------------------------------------
def _base(rng: np.random.Generator) -> np.ndarray:
    """Blocky random colour image (sharp edges everywhere), float HWC in [0, 1]."""
    low = rng.uniform(0.1, 0.9, (LR_SIZE // BLOCK, LR_SIZE // BLOCK, 3))
    return np.repeat(np.repeat(low, BLOCK, 0), BLOCK, 1)


def _box_blur(img: np.ndarray, k: int = 5) -> np.ndarray:
    pad = k // 2
    p = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.zeros_like(img)
    for dy in range(k):
        for dx in range(k):
            out += p[dy : dy + img.shape[0], dx : dx + img.shape[1]]
    return out / (k * k)


def _degrade(img: np.ndarray, task: str, rng: np.random.Generator) -> np.ndarray:
    if task == "clean":
        out = img
    elif task == "blur":
        out = _box_blur(img)
    elif task == "noise":
        out = img + rng.normal(0.0, 0.15, img.shape)
    else:  # pragma: no cover
        raise ValueError(task)
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


def _lr_images(task: str, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [_degrade(_base(rng), task, rng) for _ in range(n)]


def _sampler(task: str, n: int, seed: int) -> PairSampler:
    # HR is a dummy nearest upsample: the DRN only looks at LR patches
    pairs = [(lr, np.repeat(np.repeat(lr, SCALE, 0), SCALE, 1)) for lr in _lr_images(task, n, seed)]
    return PairSampler(pairs, scale=SCALE, lr_patch=PATCH, augment=True)


class TinyEncoder(nn.Module):
    """Two convs, mean+std pooling, linear head: enough to tell blur / noise / clean apart."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(32, dim)

    def forward(self, x):
        h = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(torch.cat([h.mean((2, 3)), h.std((2, 3))], 1))


def _encoder(seed: int = 0) -> TinyEncoder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyEncoder()


CFG = DRNConfig(steps=150, batch_per_task=8, lr_patch=PATCH, lr=3e-3, temperature=0.1, device="cpu", log_every=50)


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    train = [_sampler(t, 6, seed=100 + i) for i, t in enumerate(TASKS)]
    logs = []
    enc = _encoder(0)
    bank, hist = train_drn(enc, train, CFG, torch.Generator().manual_seed(0), on_log=lambda s, m: logs.append((s, m)))
    return enc, bank, hist, logs


# ----------------------------------------------------------------------------------------------
# DRN training / evaluation
# ----------------------------------------------------------------------------------------------
def test_train_drn_history_and_logs(trained):
    enc, bank, hist, logs = trained
    assert isinstance(bank, MemoryBank) and bank.num_tasks == 3 and bank.dim == 16
    assert len(hist["loss"]) == len(hist["accuracy"]) == CFG.steps
    assert np.all(np.isfinite(hist["loss"]))
    assert np.mean(hist["loss"][-15:]) < np.mean(hist["loss"][:15])
    assert hist["final_accuracy"] > 0.9
    assert [s for s, _ in logs] == [50, 100, 150]
    assert set(logs[0][1]) == {"loss", "accuracy"}
    assert not enc.training and not bank.training
    json.dumps({k: v for k, v in hist.items()})  # history is JSON-serialisable


def test_evaluate_drn_held_out(trained):
    enc, bank, _, _ = trained
    held = [_sampler(t, 4, seed=900 + i) for i, t in enumerate(TASKS)]  # different images
    res = evaluate_drn(enc, bank, held, n_per_task=48, lr_patch=PATCH, gen=torch.Generator().manual_seed(5))
    json.dumps(res)
    assert res["accuracy"] > 0.9, res
    assert len(res["per_task_accuracy"]) == 3
    cm = np.array(res["confusion"])
    assert cm.shape == (3, 3) and cm.sum() == 3 * 48 and np.all(cm.sum(1) == 48)
    assert res["aggregated_mode"] == "image" and res["n_aggregated_per_task"] == [4, 4, 4]
    assert res["aggregated_accuracy"] >= 0.9


def test_evaluate_drn_group_mode(trained):
    """Samplers without an ``lr`` image list fall back to averaging groups of random patches."""
    enc, bank, _, _ = trained

    class Duck:
        def __init__(self, s):
            self.s = s

        def sample_lr(self, n, gen):
            return self.s.sample_lr(n, gen)

    held = [Duck(_sampler(t, 3, seed=950 + i)) for i, t in enumerate(TASKS)]
    res = evaluate_drn(enc, bank, held, 16, PATCH, torch.Generator().manual_seed(1), group_size=4)
    assert res["aggregated_mode"] == "group" and res["n_aggregated_per_task"] == [4, 4, 4]


def test_determinism():
    small = DRNConfig(steps=12, batch_per_task=4, lr_patch=12, lr=1e-3, temperature=0.1)
    samplers = [_sampler(t, 2, seed=10 + i) for i, t in enumerate(TASKS)]
    runs = []
    for _ in range(2):
        bank, hist = train_drn(_encoder(3), samplers, small, torch.Generator().manual_seed(7))
        runs.append((bank.numpy(), hist["loss"]))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    bank3, _ = train_drn(_encoder(3), samplers, small, torch.Generator().manual_seed(8))
    assert not np.array_equal(runs[0][0], bank3.numpy())


def test_config_validation():
    samplers = [_sampler(t, 1, seed=i) for i, t in enumerate(TASKS)]
    gen = torch.Generator().manual_seed(0)
    for bad in (dict(steps=0), dict(temperature=0.0), dict(lr=-1.0), dict(batch_per_task=1.5)):
        with pytest.raises(ConfigError):
            train_drn(_encoder(), samplers, DRNConfig(**bad), gen)
    with pytest.raises(ConfigError, match="at least 2"):
        train_drn(_encoder(), samplers[:1], DRNConfig(steps=1), gen)
    with pytest.raises(ConfigError, match="lr_patch"):
        train_drn(_encoder(), samplers, DRNConfig(steps=1, lr_patch=PATCH + 1), gen)


# ----------------------------------------------------------------------------------------------
# target embedding and relation weights
# ----------------------------------------------------------------------------------------------
def test_target_embedding_picks_matching_task(trained):
    enc, bank, _, _ = trained
    protos = bank.numpy()
    for j, task in enumerate(TASKS):
        shots = _lr_images(task, 3, seed=5000 + j)  # K = 3 target LR images, never seen in training
        emb = embed_images(enc, shots, lr_patch=PATCH, patches_per_image=9)
        assert emb.shape == (16,) and abs(np.linalg.norm(emb) - 1) < 1e-9
        w = relation_weights(emb, protos, tau=0.1)
        assert int(np.argmax(w)) == j, (task, w)
        assert abs(w.sum() - 1) < 1e-12


def test_embed_images_deterministic_and_checks(trained):
    enc = trained[0]
    shots = _lr_images("blur", 2, seed=1)
    a = embed_images(enc, shots, PATCH, 4)
    b = embed_images(enc, shots, PATCH, 4, gen=torch.Generator().manual_seed(99))  # grid ignores gen
    assert np.array_equal(a, b)
    r1 = embed_images(enc, shots, PATCH, 4, gen=torch.Generator().manual_seed(1), mode="random")
    r2 = embed_images(enc, shots, PATCH, 4, gen=torch.Generator().manual_seed(1), mode="random")
    assert np.array_equal(r1, r2)
    # float [0, 1] input gives the same embedding as uint8
    c = embed_images(enc, [s.astype(np.float32) / 255 for s in shots], PATCH, 4)
    assert np.allclose(a, c, atol=1e-6)
    with pytest.raises(DataError):
        embed_images(enc, [], PATCH, 4)
    with pytest.raises(DataError):
        embed_images(enc, [shots[0][:8, :8]], PATCH, 4)


def test_weights_properties():
    rng = np.random.default_rng(0)
    protos = rng.normal(size=(5, 8))
    target = rng.normal(size=8)
    sims = similarities(target, protos)
    assert sims.shape == (5,) and np.all(np.abs(sims) <= 1)
    ents = []
    for tau in (2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.01):
        w = relation_weights(target, protos, tau)
        assert abs(w.sum() - 1) < 1e-12 and np.all(w >= 0)
        assert int(np.argmax(w)) == int(np.argmax(sims))
        ents.append(entropy(w))
    assert all(a > b for a, b in zip(ents, ents[1:])), ents
    assert ents[0] < np.log(5) and relation_weights(target, protos, 1e-4).max() > 0.99
    # torch inputs and unnormalised vectors are fine
    w_t = relation_weights(torch.tensor(target * 3), torch.tensor(protos * 2), 0.5)
    assert np.allclose(w_t, relation_weights(target, protos, 0.5))
    for bad in (0, -0.1, float("nan"), float("inf"), "x"):
        with pytest.raises(ConfigError):
            relation_weights(target, protos, bad)
    with pytest.raises(ConfigError):
        relation_weights(target[:4], protos, 0.1)


def test_uniform_tasksim_restrict():
    assert np.allclose(uniform_weights(4), 0.25)
    with pytest.raises(ConfigError):
        uniform_weights(0)
    protos = np.random.default_rng(1).normal(size=(4, 6))
    m = task_task_similarity(protos)
    assert m.shape == (4, 4) and np.allclose(m, m.T) and np.allclose(np.diag(m), 1)
    w = np.array([0.4, 0.3, 0.2, 0.1])
    r = restrict(w, [False, True, True, False])
    assert np.allclose(r, [0, 0.6, 0.4, 0]) and abs(r.sum() - 1) < 1e-12
    assert np.allclose(restrict(w, [0, 3]), [0.8, 0, 0, 0.2])
    fams = ["blur", "noise", "blur", "jpeg"]
    assert np.allclose(restrict(w, family_mask(fams, {"blur"})), [4 / 6, 0, 2 / 6, 0])
    with pytest.raises(ConfigError):
        restrict(w, [False] * 4)
    with pytest.raises(ConfigError):
        family_mask(fams, {"gamma"})
    assert np.allclose(restrict(np.array([1.0, 0.0, 0.0]), [1, 2]), [0, 0.5, 0.5])  # underflow -> uniform


# ----------------------------------------------------------------------------------------------
# graph
# ----------------------------------------------------------------------------------------------
def _graph(top_k=None):
    rng = np.random.default_rng(2)
    names = ["gauss_blur", "motion_blur", "gauss_noise", "jpeg_q30"]
    fams = ["blur", "blur", "noise", "jpeg"]
    return names, fams, build_graph(names, fams, rng.normal(size=(4, 8)), rng.normal(size=8), tau=0.2, top_k=top_k)


def _edge_key(u, v):
    return tuple(sorted((u, v)))


def test_build_graph_structure():
    names, fams, G = _graph()
    assert set(G.nodes) == set(names) | {"target"}
    assert G.number_of_edges() == 4 + 6
    w = graph_weights(G)
    assert abs(sum(w.values()) - 1) < 1e-12
    assert G.nodes["motion_blur"]["family"] == "blur" and G.nodes["target"]["kind"] == "target"
    for n in names:
        assert G.edges["target", n]["weight"] == G.nodes[n]["weight"]
    _, _, Gk = _graph(top_k=1)
    assert 4 + 2 <= Gk.number_of_edges() <= 4 + 4
    with pytest.raises(ConfigError):
        build_graph(["a", "a"], ["x", "x"], np.eye(2), np.ones(2), 0.1)
    with pytest.raises(ConfigError):
        build_graph(["target", "b"], ["x", "x"], np.eye(2), np.ones(2), 0.1)
    with pytest.raises(ConfigError):
        build_graph(["a", "b"], ["x", "x"], np.eye(2), np.ones(2), 0.0)


def test_graph_export_round_trip(tmp_path):
    _, _, G = _graph()
    paths = export_graph(G, tmp_path / "rel")
    assert paths["json"].name == "graph.json" and paths["graphml"].name == "graph.graphml"
    assert not [p for p in (tmp_path / "rel").iterdir() if p.name.startswith(".")]  # no temp leftovers

    data = json.loads(paths["json"].read_text())
    H = nx.node_link_graph(data, edges="links")
    X = nx.read_graphml(paths["graphml"])
    for R in (H, X, load_graph(paths["json"]), load_graph(paths["graphml"])):
        assert set(R.nodes) == set(G.nodes)
        assert {_edge_key(u, v) for u, v in R.edges} == {_edge_key(u, v) for u, v in G.edges}
        for u, v, d in G.edges(data=True):
            assert R.edges[u, v]["similarity"] == pytest.approx(d["similarity"], abs=1e-12)
            if "weight" in d:
                assert R.edges[u, v]["weight"] == pytest.approx(d["weight"], abs=1e-12)
        for n, d in G.nodes(data=True):
            assert R.nodes[n]["family"] == d["family"]
            if "weight" in d:
                assert R.nodes[n]["weight"] == pytest.approx(d["weight"], abs=1e-12)
        assert R.graph["tau"] == pytest.approx(0.2)


def _assert_png(path):
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()


def test_plots_and_ranking(tmp_path):
    names, fams, G = _graph()
    w = np.array([graph_weights(G)[n] for n in names])
    sims = np.array([G.nodes[n]["similarity"] for n in names])
    p1 = plot_weights(names, w, tmp_path / "w.png", title="weights", families=fams)
    p2 = plot_weights(names, w, tmp_path / "plain.png")
    p3 = plot_graph(G, tmp_path / "g.png")
    for p in (p1, p2, p3):
        _assert_png(p)
    df = ranking_table(names, fams, sims, w)
    assert list(df.columns) == ["task", "family", "similarity", "weight", "rank"]
    assert list(df["rank"]) == [1, 2, 3, 4]
    assert df["weight"].is_monotonic_decreasing and df["task"].iloc[0] == names[int(np.argmax(w))]
    with pytest.raises(ConfigError):
        plot_weights(names, w[:2], tmp_path / "bad.png")


def test_top_k_and_mix_shape_the_weights():
    from drtl.relation.weights import shape_weights, softmax_weights

    w = softmax_weights(np.array([0.9, 0.5, 0.1, 0.45]), 0.05)
    top2 = shape_weights(w, top_k=2)
    assert np.count_nonzero(top2) == 2 and abs(top2.sum() - 1) < 1e-12 and top2[0] > top2[1] > 0
    assert np.allclose(shape_weights(w, top_k=2)[[0, 1]], w[[0, 1]] / w[[0, 1]].sum())
    mixed = shape_weights(w, mix=0.4)
    assert abs(mixed.sum() - 1) < 1e-12 and mixed.min() >= 0.4 / 4 - 1e-12
    assert np.allclose(shape_weights(w, mix=1.0), 0.25) and np.allclose(shape_weights(w), w)
    both = shape_weights(w, mix=0.2, top_k=1)
    assert np.allclose(both, [0.8 + 0.05, 0.05, 0.05, 0.05])
    for bad in ({"mix": 1.5}, {"mix": -0.1}, {"top_k": -1}, {"top_k": 1.5}):
        with pytest.raises(ConfigError):
            shape_weights(w, **bad)
    emb, protos = np.array([1.0, 0.0]), np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    assert np.allclose(relation_weights(emb, protos, 0.1, mix=0.3, top_k=1),
                       shape_weights(relation_weights(emb, protos, 0.1), 0.3, 1))
    G = build_graph(["a", "b", "c"], ["x", "x", "y"], protos, emb, 0.1, weights=shape_weights(
        relation_weights(emb, protos, 0.1), 0.0, 1))
    assert [G.nodes[n]["weight"] for n in "abc"] == [1.0, 0.0, 0.0]
