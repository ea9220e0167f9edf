"""The K pairs in the relation stage: the camera-fitted task and the reproduction relation
(drtl.relation.fitted), from the relation weights to the weighted training runs that use them."""

import json

import numpy as np
import pandas as pd
import pytest

from drtl.config import load_params
from drtl.errors import ConfigError
from drtl.modelio import load_model
from drtl.relation.fitted import FITTED_TASK, load_camera, reproduction_scores
from drtl.stages import bank as bank_stage
from drtl.stages import relation as relation_stage
from drtl.stages import synthesize as synth_stage
from drtl.stages.synthesize import synthesize_target
from drtl.stages.train import metatrain_stage, pretrain_stage

TASKS = ["clean_bicubic", "iso_blur_s2.4", "gauss_noise30", "jpeg_q30"]
TARGET = "iso_blur_s2.4"  # the target camera is this bank task, so the answer is known


@pytest.fixture(scope="module")
def bank(tmp_path_factory, tiny_sample):
    """A target made by TARGET from HR images the bank never saw, the 4-task bank, its params."""
    root = tmp_path_factory.mktemp("fitted")
    synthesize_target(TARGET, [str(tiny_sample / "pool")], root / "pool", 2, seed=0)
    params = load_params(None, [
        f"outputs={root / 'out'}", f"target.pool={root / 'pool'}", f"target.test={tiny_sample / 'test'}",
        f"aux.hr=[{tiny_sample / 'aux_hr'}]", f"aux.tasks=[{', '.join(TASKS)}]", "threads=1",
        "relation.steps=10", "relation.lr_patch=16", "relation.eval_per_task=4", "relation.patches_per_image=4",
        "relation.fitted=true", "relation.similarity=reproduction", "relation.tau_db=0.5",
        "pretrain.iterations=3", "pretrain.lr_patch=16", "meta.iterations=2", "meta.lr_patch=16",
        "experiment.shots=[1, 2]", "experiment.seeds=[0]",
    ])
    synth_stage.run(params, {}, root / "out" / "synth")
    return root, params


def relate(params: dict, synth, out) -> dict:
    """The bank the params' similarity needs, then the relation of every (K, seed) of the params,
    under ``out``: {"k<K>_s<S>": (its folder, its metrics)}."""
    from drtl.plan import relation_needs
    from drtl.similarity import bank_parts

    inputs = {"synth": str(synth)}
    parts = relation_needs("drtl", params)
    if parts:
        bank_stage.run(params, {"parts": bank_parts(parts), "synth": str(synth)}, out / "bank")
        inputs["bank"] = str(out / "bank")
    cells = {}
    for k in params["experiment"]["shots"]:
        for s in params["experiment"]["seeds"]:
            key = f"k{k}_s{s}"
            cells[key] = (out / key, relation_stage.run(params, {**inputs, "shots": k, "seed": s}, out / key))
    return cells


def test_reproduction_ranks_the_target_task_first(bank):
    from drtl.data.folder import load_pairs
    from drtl.degradations.tasks import task_bank

    root, params = bank
    shots = load_pairs(root / "pool", 2)
    scores = reproduction_scores(task_bank(TASKS), shots, 2)
    assert TASKS[int(np.argmax(scores))] == TARGET, dict(zip(TASKS, scores))
    assert scores.max() > np.sort(scores)[-2] + 3.0  # by a wide margin: a blur 2.4 is far from the others


def test_relation_weighs_the_fitted_task_and_training_uses_it(bank):
    root, params = bank
    out = root / "out"
    cells = relate(params, out / "synth", out / "relation")
    assert not (out / "relation" / "bank").exists()  # the reproduction relation needs no DRN
    weights = {key: json.loads((d / "weights.json").read_text())[key] for key, (d, _) in cells.items()}
    for key in ("k1_s0", "k2_s0"):
        w = weights[key]
        assert set(w) == set(TASKS) | {FITTED_TASK} and abs(sum(w.values()) - 1) < 1e-9
        info = cells[key][1]["pair_relation"][key]
        # the fitted linear filter reproduces a blur target at least as well as the blur task itself
        assert info["fitted_psnr"] >= info["best_bank_psnr"] - 0.5, info
        assert max(w, key=w.get) in (FITTED_TASK, TARGET) and w[FITTED_TASK] + w[TARGET] > 0.9, w
        assert info["fitted_weight"] == round(w[FITTED_TASK], 4)
        cam, noise = load_camera(cells[key][0] / "fitted" / f"{key}.json")
        assert cam.scale == 2 and noise == 0.0 and cam.fit_psnr > 30
        ranking = pd.read_csv(cells[key][0] / "graphs" / key / "ranking.csv")
        assert list(ranking.task).count(FITTED_TASK) == 1 and ranking.similarity.max() <= 60.0  # dB, capped
    assert set(cells["k1_s0"][1]["family_weight"]["k1_s0"]) >= {"fitted", "blur"}

    common = {"shots": 1, "seed": 0, "synth": out / "synth", "relation": cells["k1_s0"][0]}
    pretrain_stage(params, {**common, "method": "drtl"}, out / "pre")
    recipe = load_model(out / "pre" / "model.pt")[1]["recipe"]
    assert recipe["tasks"] == TASKS + [FITTED_TASK]
    assert recipe["weights"] == pytest.approx([weights["k1_s0"][n] for n in recipe["tasks"]])
    metatrain_stage(params, {**common, "method": "drtl"}, out / "meta")
    assert load_model(out / "meta" / "model.pt")[1]["recipe"]["tasks"][-1] == FITTED_TASK
    # the uniform twin never sees the fitted task (it does not depend on the shots)
    pretrain_stage(params, {"method": "uniform", "seed": 0, "synth": out / "synth"}, out / "uni")
    assert FITTED_TASK not in load_model(out / "uni" / "model.pt")[1]["recipe"]["tasks"]


def test_drn_similarity_places_the_fitted_task_by_its_cosine(bank, tmp_path):
    root, params = bank
    p = {**params, "relation": {**params["relation"], "similarity": "drn", "fitted_noise": 0.5},
         "experiment": {**params["experiment"], "shots": [1]}}
    rel, metrics = relate(p, root / "out" / "synth", tmp_path / "rel")["k1_s0"]
    info = metrics["pair_relation"]["k1_s0"]
    assert "fitted_psnr" not in info and -1 <= info["fitted_cosine"] <= 1
    ranking = pd.read_csv(rel / "graphs" / "k1_s0" / "ranking.csv").set_index("task")
    assert ranking.loc[FITTED_TASK, "similarity"] == pytest.approx(info["fitted_cosine"], abs=1e-4)
    assert load_camera(rel / "fitted" / "k1_s0.json")[1] == 0.5


def test_bad_similarity_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="relation.similarity"):
        load_params(None, ["relation.similarity=psnr"])


def test_joint_similarity_adds_the_two_logits(bank, tmp_path):
    root, params = bank
    p = {**params, "relation": {**params["relation"], "similarity": "joint", "fitted": False, "tau": 0.05,
                                "tau_db": 0.5}, "experiment": {**params["experiment"], "shots": [2]}}
    rel, metrics = relate(p, root / "out" / "synth", tmp_path / "rel")["k2_s0"]
    w = json.loads((rel / "weights.json").read_text())["k2_s0"]
    assert FITTED_TASK not in w and "fitted_psnr" not in metrics["pair_relation"]["k2_s0"]
    rep = pd.read_csv(rel / "graphs" / "k2_s0" / "reproduction.csv").set_index("task")
    logit = rep.psnr_db / 0.5 + rep.cosine / 0.05
    a, b = "jpeg_q30", "clean_bicubic"  # two tasks with weights far from underflow
    assert np.log(w[a] / w[b]) == pytest.approx(logit[a] - logit[b], abs=1e-2)
    assert max(w, key=w.get) == logit.idxmax()


def test_task_logits_give_each_family_its_softmax_shared_evenly():
    from drtl.relation.weights import softmax_weights
    from drtl.stages.expert import task_logits

    fams = ["blur", "blur", "blur", "noise", "jpeg"]
    psnr = {"blur": 30.0, "noise": 29.5, "jpeg": 29.0}
    w = softmax_weights(task_logits(fams, psnr, 0.5), 1.0)
    fam_w = softmax_weights(np.array([30.0, 29.5, 29.0]), 0.5)
    assert w[:3] == pytest.approx([fam_w[0] / 3] * 3) and w[3:] == pytest.approx(fam_w[1:])


@pytest.mark.parametrize("fitted", [False, True])
def test_expert_relation_weighs_the_family_whose_expert_restores_the_shots(bank, tmp_path, fitted):
    root, params = bank
    p = load_params(None, [
        f"outputs={root / 'out'}", f"target.pool={root / 'pool'}", f"target.test={params['target']['test']}",
        f"aux.hr=[{params['aux']['hr'][0]}]", f"aux.tasks=[{', '.join(TASKS)}]", "threads=1",
        "relation.steps=10", "relation.lr_patch=16", "relation.eval_per_task=4", "relation.patches_per_image=4",
        f"relation.fitted={str(fitted).lower()}", "relation.similarity=expert", "relation.tau_db=0.25",
        "relation.expert.iterations=60", "relation.expert.lr_patch=16", "relation.expert.lr=0.002",
        "experiment.shots=[2]", "experiment.seeds=[0]"])
    rel, metrics = relate(p, root / "out" / "synth", tmp_path / "rel")["k2_s0"]
    assert sorted(p.stem for p in (tmp_path / "rel" / "bank" / "experts").iterdir()) == ["blur", "jpeg", "noise"]
    assert not (tmp_path / "rel" / "bank" / "drn.pt").exists()  # the expert relation needs no DRN
    w = json.loads((rel / "weights.json").read_text())["k2_s0"]
    psnr = metrics["pair_relation"]["k2_s0"]["expert_psnr"]
    fams = {"clean_bicubic": "blur", "iso_blur_s2.4": "blur", "gauss_noise30": "noise", "jpeg_q30": "jpeg"}
    assert set(psnr) == {"blur", "noise", "jpeg"} | ({"fitted"} if fitted else set())
    bank_best = max(("blur", "noise", "jpeg"), key=psnr.get)
    assert bank_best == "blur", psnr  # the target is a blur: the blur expert restores it best
    fam_w = {f: sum(x for n, x in w.items() if {**fams, FITTED_TASK: "fitted"}[n] == f) for f in psnr}
    assert metrics["family_weight"]["k2_s0"] == pytest.approx(fam_w, abs=1e-4)
    for a in psnr:  # family weights are softmax(psnr / tau_db); a family's tasks share it evenly
        for b in psnr:
            if fam_w[a] > 1e-9 and fam_w[b] > 1e-9:
                assert np.log(fam_w[a] / fam_w[b]) == pytest.approx((psnr[a] - psnr[b]) / 0.25, abs=2e-2)
    assert w["clean_bicubic"] == pytest.approx(w[TARGET])
    assert (FITTED_TASK in w) == fitted and abs(sum(w.values()) - 1) < 1e-9
    table = pd.read_csv(rel / "graphs" / "k2_s0" / "expert.csv")
    assert list(table.family) == sorted(psnr, key=psnr.get, reverse=True)
    ranking = pd.read_csv(rel / "graphs" / "k2_s0" / "ranking.csv").set_index("task")
    assert ranking.loc[TARGET, "similarity"] == pytest.approx(psnr["blur"], abs=1e-3)  # shown in dB


def test_composed_tasks_join_the_expert_relation_and_the_weighted_training(bank, tmp_path):
    from drtl.relation.composed import COMPOSED_FAMILY

    root, params = bank
    p = {**params, "relation": {**params["relation"], "similarity": "expert", "composed": True, "tau_db": 0.25,
                                "expert": {**params["relation"]["expert"], "iterations": 20, "lr_patch": 16}},
         "experiment": {**params["experiment"], "shots": [1]}}
    rel, metrics = relate(p, root / "out" / "synth", tmp_path / "rel")["k1_s0"]
    w = json.loads((rel / "weights.json").read_text())["k1_s0"]
    composed = ["fitted+gauss_noise30", "fitted+jpeg_q30"]  # the bank tasks with a step after their resize
    assert list(w) == TASKS + [FITTED_TASK] + composed and abs(sum(w.values()) - 1) < 1e-9
    psnr = metrics["pair_relation"]["k1_s0"]["expert_psnr"]
    assert set(psnr) == {"blur", "noise", "jpeg", "fitted", COMPOSED_FAMILY} and metrics["composed"] is True
    assert w[composed[0]] == pytest.approx(w[composed[1]])  # the family's weight shared evenly
    fam_w = metrics["family_weight"]["k1_s0"]
    assert fam_w[COMPOSED_FAMILY] == pytest.approx(w[composed[0]] * 2, abs=1e-4)
    assert np.log(fam_w[COMPOSED_FAMILY] / fam_w["fitted"]) == pytest.approx(
        (psnr[COMPOSED_FAMILY] - psnr["fitted"]) / 0.25, abs=2e-2)
    # the weighted training rebuilds the same tasks from the saved camera, in the relation's order
    pretrain_stage(p, {"shots": 1, "seed": 0, "synth": root / "out" / "synth", "relation": rel, "method": "drtl"},
                   tmp_path / "pre")
    recipe = load_model(tmp_path / "pre" / "model.pt")[1]["recipe"]
    assert recipe["tasks"] == list(w) and recipe["weights"] == pytest.approx(list(w.values()))
    # a fixed variant keeps its meaning: fitted_only has no composed task
    only = relation_stage.run(p, {"synth": str(root / "out" / "synth"), "shots": 1, "seed": 0,
                                  "method": "fitted_only"}, tmp_path / "only")
    assert only["composed"] is False and only["n_tasks"] == len(TASKS) + 1


def test_composed_tasks_need_a_similarity_that_scores_them(bank, tmp_path):
    root, params = bank
    p = {**params, "relation": {**params["relation"], "similarity": "reproduction", "composed": True}}
    with pytest.raises(ConfigError, match="relation.composed works with relation.similarity expert"):
        relation_stage.run(p, {"synth": str(root / "out" / "synth"), "shots": 1, "seed": 0}, tmp_path / "r")
    assert not (tmp_path / "r").exists()
