"""drtl.tracking against a real SQLite MLflow store in a temporary folder.

Parent/child structure, tags, metrics and training curves, artifacts, dataset lineage, reading the
results back (search_results / report_from_mlflow), two processes attaching to one parent, and the
disabled (no-op) tracker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from drtl.tracking import (PIPELINE_TAG, NullRunHandle, Tracker, make_client, pipeline_id, report_from_mlflow,
                           resolve_uri, search_results, tracker_from_params)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for k in ("DRTL_PIPELINE_ID", "DVC_ROOT", "DVC_STAGE", "DVC_EXP_NAME", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module (creating its tables takes a few seconds)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    make_client(uri)
    return root, uri


def _runs(client, exp_name):
    exp = client.get_experiment_by_name(exp_name)
    return client.search_runs([exp.experiment_id], "", max_results=1000)


def test_parent_child_tags_metrics_artifacts_lineage(store, tmp_path, monkeypatch, make_pairs):
    root, uri = store
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    pool = make_pairs(tmp_path / "data" / "pool", n=3)
    hr_only = tmp_path / "data" / "aux_hr"
    (hr_only / "HR").mkdir(parents=True)
    (hr_only / "HR" / "a.png").write_bytes((pool / "HR" / "000.png").read_bytes())
    model = tmp_path / "run" / "model.pt"
    model.parent.mkdir()
    model.write_bytes(b"weights")
    (tmp_path / "run" / "graphs").mkdir()
    (tmp_path / "run" / "graphs" / "weights.png").write_bytes(b"png")

    t = Tracker(uri, "structure", pipeline_id="pid-structure", parent_params={"finetune": {"iterations": 7}})
    history = {"kind": "finetune", "iterations": 3, "loss": [0.3, 0.2, 0.1], "wall_s": 1.5,
               "log": [{"step": 1, "loss": 0.3, "lr": 1e-4, "elapsed_s": 0.1},
                       {"step": 3, "loss": 0.1, "lr": 5e-5, "elapsed_s": 0.3}]}
    with t.run("finetune", "drtl_pre_k5_s0", {"method": "drtl_pre", "shots": 5, "seed": 0,
                                               "finetune": {"iterations": 3, "lr": 1e-4}}) as r:
        r.log_history(history)
        r.log_artifact(model)
        r.log_artifacts(tmp_path / "run" / "graphs", artifact_path="graphs")
        r.log_input(str(pool), context="pool")
        r.log_input(str(hr_only), context="aux")
        r.set_tags({"note": "hello"})
        ft_id = r.run_id
    with t.run("evaluate", "bicubic_s0", {"method": "bicubic", "shots": None, "seed": 0}) as r:
        r.log_metrics({"psnr_y": 30.5, "ssim_y": 0.91, "per": {"n_images": 6}, "name": "skipped"})
        ev_id = r.run_id
    with pytest.raises(RuntimeError, match="boom"):
        with t.run("evaluate", "scratch_k5_s0", {"method": "scratch", "shots": 5, "seed": 0}) as r:
            failed_id = r.run_id
            raise RuntimeError("boom")

    c = make_client(uri)
    parents = [x for x in _runs(c, "structure") if x.data.tags.get("drtl.role") == "pipeline"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags[PIPELINE_TAG] == "pid-structure"
    assert parent.data.params["finetune.iterations"] == "7"
    assert parent.info.status == "FAILED"  # follows its last child

    ft = c.get_run(ft_id)
    tags = ft.data.tags
    assert tags["mlflow.parentRunId"] == parent.info.run_id
    assert tags["mlflow.runName"] == "finetune/drtl_pre_k5_s0"
    assert (tags["stage"], tags["method"], tags["shots"], tags["seed"]) == ("finetune", "drtl_pre", "5", "0")
    assert tags[PIPELINE_TAG] == "pid-structure" and tags["note"] == "hello"
    assert tags["git_commit"] == "unknown"  # tmp_path is not a git repository
    assert len(tags["dvc_lock_sha256"]) == 64
    assert ft.data.params["finetune.iterations"] == "3" and ft.data.params["shots"] == "5"
    assert ft.info.status == "FINISHED"
    curve = c.get_metric_history(ft_id, "train_loss")
    assert [(m.step, m.value) for m in curve] == [(1, 0.3), (3, 0.1)]
    assert [m.value for m in c.get_metric_history(ft_id, "lr")] == [1e-4, 5e-5]
    assert ft.data.metrics["train_wall_s"] == 1.5
    arts = {a.path for a in c.list_artifacts(ft_id)}
    assert {"model.pt", "graphs"} <= arts
    assert [a.path for a in c.list_artifacts(ft_id, "graphs")] == ["graphs/weights.png"]
    local = c.download_artifacts(ft_id, "model.pt", str(tmp_path / "dl"))
    assert Path(local).read_bytes() == b"weights"
    assert Path(str(root / "mlruns")).is_dir()  # SQLite store: artifacts next to the database

    inputs = {d.dataset.name: d for d in ft.inputs.dataset_inputs}
    assert set(inputs) == {"data/pool", "data/aux_hr"}
    assert {t.key: t.value for t in inputs["data/pool"].tags}["mlflow.data.context"] == "pool"
    schema = json.loads(inputs["data/pool"].dataset.schema)
    assert "lr_sha256" in {col["name"] for col in schema["mlflow_colspec"]}
    assert json.loads(inputs["data/pool"].dataset.profile)["num_rows"] == 3

    ev = c.get_run(ev_id)
    assert "shots" not in ev.data.tags and ev.data.tags["method"] == "bicubic"
    assert ev.data.metrics == {"psnr_y": 30.5, "ssim_y": 0.91, "per.n_images": 6.0}
    assert c.get_run(failed_id).info.status == "FAILED"

    # lineage: the same data logged by another run has the same digest; changed data does not
    with t.run("relation", "relation", {}) as r:
        r.log_input(str(pool), context="pool")
        same_id = r.run_id
    (pool / "LR" / "000.png").write_bytes((pool / "LR" / "001.png").read_bytes())
    from drtl.data.folder import write_manifest

    write_manifest(pool, 2)
    with t.run("relation", "relation-2", {}) as r:
        r.log_input(str(pool), context="pool")
        changed_id = r.run_id
    digest = {i: c.get_run(i).inputs.dataset_inputs[0].dataset.digest for i in (ft_id, same_id, changed_id)}
    assert digest[ft_id] != digest[changed_id]
    assert inputs["data/pool"].dataset.digest == digest[same_id]


def test_search_results_and_report_from_mlflow(store, tmp_path, monkeypatch):
    _, uri = store
    monkeypatch.chdir(tmp_path)
    old = Tracker(uri, "results", pipeline_id="pid-old", parent_params={"experiment": {"shots": [1, 5]}})
    new = Tracker(uri, "results", pipeline_id="pid-new", parent_params={"experiment": {"shots": [1, 5]}})
    for seed in (0, 1):
        with old.run("evaluate", f"bicubic_s{seed}", {"method": "bicubic", "seed": seed}) as r:
            r.log_metrics({"psnr_y": 30.0, "ssim_y": 0.90})
        for k in (1, 5):
            with old.run("evaluate", f"scratch_k{k}_s{seed}", {"method": "scratch", "shots": k, "seed": seed}) as r:
                r.log_metrics({"psnr_y": 20.0, "ssim_y": 0.5})  # superseded below
            with new.run("evaluate", f"scratch_k{k}_s{seed}", {"method": "scratch", "shots": k, "seed": seed}) as r:
                r.log_metrics({"psnr_y": 30.0 + k + seed, "ssim_y": 0.92})
    with new.run("finetune", "scratch_k1_s0", {"method": "scratch", "shots": 1, "seed": 0}) as r:
        r.log_metrics({"psnr_y": 99.0, "ssim_y": 1.0})  # not an evaluation run: ignored

    df = search_results(uri, "results")
    assert list(df.columns) == ["method", "shots", "seed", "psnr_y", "ssim_y"]
    assert len(df) == 6 and df[df.method == "bicubic"]["shots"].isna().all()
    sc = df[df.method == "scratch"].set_index(["shots", "seed"])
    assert sc.loc[(5, 1), "psnr_y"] == 36.0  # the latest run wins
    assert len(search_results(uri, "results", latest=False)) == 10
    only_new = search_results(uri, "results", pipeline_id="pid-new", with_ids=True)
    assert len(only_new) == 4 and set(only_new.pipeline_id) == {"pid-new"}
    assert search_results(uri, "no-such-experiment").empty

    rep = report_from_mlflow(uri, "results", tmp_path / "rep")
    assert rep["shots"] == [1, 5] and rep["n_rows"] == 8
    res = pd.read_csv(tmp_path / "rep" / "results.csv")
    assert list(res.columns) == ["method", "shots", "seed", "psnr_y", "ssim_y"]
    assert sorted(res[res.method == "bicubic"].shots) == [1, 1, 5, 5]
    agg = pd.read_csv(tmp_path / "rep" / "aggregate.csv").set_index(["method", "shots"])
    assert agg.loc[("scratch", 5), "psnr_mean"] == pytest.approx(35.5)
    assert "36.000" not in (tmp_path / "rep" / "results.md").read_text()  # means, not single runs
    assert (tmp_path / "rep" / "psnr_vs_shots.png").read_bytes()[:4] == b"\x89PNG"
    # with a pipeline id, K comes from that pipeline's experiment.shots param
    assert report_from_mlflow(uri, "results", tmp_path / "rep2", pipeline_id="pid-old")["shots"] == [1, 5]
    with pytest.raises(Exception, match="no finished evaluation runs"):
        report_from_mlflow(uri, "no-such-experiment", tmp_path / "rep3")


_CHILD = r"""
import json, sys, time
from pathlib import Path
from drtl.tracking import tracker_from_params
params, go, name = json.loads(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
t = tracker_from_params(params)
t.experiment_id                      # imports, store and experiment ready before the start line
Path(name + ".ready").touch()
while not go.exists():
    time.sleep(0.005)
with t.run("finetune", name, {"method": "scratch", "shots": 1, "seed": 0}) as r:
    r.log_metrics({"psnr_y": 30.0})
print(json.dumps({"pipeline_id": t.pipeline_id, "parent": t.parent_run_id(), "run": r.run_id}))
"""


def test_two_processes_share_one_parent(store, tmp_path):
    _, uri = store
    params = {"target": {"pool": "none", "test": "none", "scale": 2}, "finetune": {"iterations": 3},
              "tracking": {"uri": uri, "experiment": "race", "enabled": True}}
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for k in ("DRTL_PIPELINE_ID", "DVC_ROOT", "DVC_EXP_NAME"):
        env.pop(k, None)
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(params), str(go), f"child{i}"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    deadline = time.time() + 120
    while not all((tmp_path / f"child{i}.ready").exists() for i in range(2)):
        assert time.time() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate()[1][-2000:] for p in procs if p.poll() is not None]
        time.sleep(0.05)
    go.touch()  # both create their child runs (and race for the parent) at once
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert outs[0]["pipeline_id"] == outs[1]["pipeline_id"]  # computed independently from the params
    assert outs[0]["parent"] == outs[1]["parent"]
    c = make_client(uri)
    runs = _runs(c, "race")
    parents = [r for r in runs if r.data.tags.get("drtl.role") == "pipeline"]
    assert [p.info.run_id for p in parents] == [outs[0]["parent"]]  # a lost race leaves no live duplicate
    children = [r for r in runs if r.data.tags.get("drtl.role") == "stage"]
    assert sorted(r.info.run_id for r in children) == sorted(o["run"] for o in outs)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {outs[0]["parent"]}


def test_disabled_tracker_is_a_noop_and_does_not_import_mlflow(tmp_path):
    code = (
        "import sys\n"
        "from drtl.config import load_params\n"
        "from drtl.tracking import tracker_from_params, NullRunHandle\n"
        "t = tracker_from_params(load_params(None))\n"
        "with t.run('finetune', 'x', {'method': 'scratch'}) as r:\n"
        "    assert isinstance(r, NullRunHandle)\n"
        "    r.log_metrics({'a': 1}); r.log_history({'loss': [1.0]}); r.log_artifact('nope'); r.log_input('x', 'pool')\n"
        "assert t.parent_run_id() is None\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []  # no mlflow.db, no mlruns/
    with Tracker("sqlite:///x.db", "e", enabled=False).run("s", "n", {}) as r:
        assert isinstance(r, NullRunHandle)


def test_pipeline_id_and_uri(tmp_path, monkeypatch, make_pairs):
    from drtl.config import load_params

    monkeypatch.chdir(tmp_path)
    pool = make_pairs(tmp_path / "pool", n=2)
    p = load_params(None, [f"target.pool={pool}"])
    a = pipeline_id(p)
    assert len(a) == 16 and pipeline_id(load_params(None, [f"target.pool={pool}"])) == a
    assert pipeline_id(load_params(None, [f"target.pool={pool}", "finetune.iterations=7"])) != a
    assert pipeline_id(load_params(None, [f"target.pool={pool}", "tracking.experiment=other"])) == a
    monkeypatch.setenv("DVC_EXP_NAME", "exp-1")
    assert pipeline_id(p) != a
    monkeypatch.delenv("DVC_EXP_NAME")
    (pool / "LR" / "000.png").write_bytes((pool / "LR" / "001.png").read_bytes())
    from drtl.data.folder import write_manifest

    write_manifest(pool, 2)
    assert pipeline_id(p) != a  # same params, different data
    monkeypatch.setenv("DRTL_PIPELINE_ID", "kfp-run-42")
    assert pipeline_id(p) == "kfp-run-42"
    t = tracker_from_params({**p, "tracking": {"uri": "sqlite:///m.db", "experiment": "e", "enabled": True}})
    assert t.pipeline_id == "kfp-run-42" and t.uri == f"sqlite:///{tmp_path.resolve() / 'm.db'}"

    assert resolve_uri("sqlite:///mlflow.db", root="/repo") == "sqlite:////repo/mlflow.db"
    assert resolve_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # DVC (also for exp run --temp) names the parent repo
    monkeypatch.chdir(pool)
    assert resolve_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    with pytest.raises(Exception, match="in-memory"):
        resolve_uri("sqlite:///:memory:")


def test_cli_stage_commands_log_to_mlflow(make_pairs, tmp_path, monkeypatch):
    """`drtl evaluate` with tracking enabled leaves a finished child run with its identity and metrics."""
    from drtl.cli import main
    from drtl.tracking import search_results

    monkeypatch.chdir(tmp_path)
    root = make_pairs(n=2, hr=40)
    uri = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["evaluate", "--data", str(root), "--scale", "2", "--seed", "3", "--out", str(tmp_path / "e.json"),
                 "-S", "tracking.enabled=true", "-S", f"tracking.uri={uri}", "-S", "tracking.experiment=cli"]) == 0
    df = search_results(uri, "cli")
    assert len(df) == 1
    row = df.iloc[0]
    assert row["method"] == "bicubic" and int(row["seed"]) == 3
    assert abs(row["psnr_y"] - json.loads((tmp_path / "e.json").read_text())["psnr_y"]) < 1e-9
