"""experiments/weighting_sweep.py: the weights of a variant are recomputed from the relation
graphs' cosines exactly as the relation stage computes them (tau, then top-k, then mix)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from drtl.relation.weights import softmax_weights
from tests.conftest import experiment_module


@pytest.fixture(scope="module")
def sweep():
    return experiment_module("weighting_sweep")


def _relation(tmp_path: Path, sims: dict[str, float], fams: dict[str, str], tau: float) -> Path:
    rel = tmp_path / "relation"
    g = rel / "graphs" / "k1_s0"
    g.mkdir(parents=True)
    names = list(sims)
    w = softmax_weights(np.array([sims[n] for n in names]), tau)
    (rel / "weights.json").write_text(json.dumps({"k1_s0": dict(zip(names, map(float, w)))}))
    rows = ["task,family,similarity,weight,rank"] + [f"{n},{fams[n]},{sims[n]},{x},0" for n, x in zip(names, w)]
    (g / "ranking.csv").write_text("\n".join(rows) + "\n")
    return rel


def test_variant_weights(sweep, tmp_path):
    sims = {"a": 0.5, "b": 0.4, "c": 0.1, "d": -0.2}
    fams = {"a": "blur", "b": "blur", "c": "noise", "d": "jpeg"}
    rel = _relation(tmp_path, sims, fams, tau=0.05)
    base = json.loads((rel / "weights.json").read_text())["k1_s0"]
    same, info = sweep.variant_weights(rel, sweep.parse_variant("", {"tau": 0.05}))
    assert same["k1_s0"] == pytest.approx(base)  # the stage's own weights come back unchanged
    assert info["k1_s0"][1] == "blur"
    top1, _ = sweep.variant_weights(rel, sweep.parse_variant("top_k=1", {"tau": 0.05}))
    assert top1["k1_s0"] == pytest.approx({"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0})
    mixed, _ = sweep.variant_weights(rel, sweep.parse_variant("mix=1", {"tau": 0.05}))
    assert mixed["k1_s0"] == pytest.approx({n: 0.25 for n in sims})  # mix 1 is uniform pre-training
    flat, _ = sweep.variant_weights(rel, sweep.parse_variant("tau=10", {"tau": 0.05}))
    assert max(flat["k1_s0"].values()) - min(flat["k1_s0"].values()) < 0.05


def test_bad_variant(sweep):
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        sweep.parse_variant("temperature=2", {"tau": 0.05})
    assert sweep.slug(sweep.parse_variant("tau=0.02,top_k=5", {"tau": 0.05})) == "tau0.02_mix0_top5"
