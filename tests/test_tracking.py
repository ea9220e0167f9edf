"""drtl.tracking against a real SQLite MLflow store: run records -> one parent + child runs.

Parent/child structure, identities as params and tags (never metrics), K-independent runs without
``shots``, the report's aggregate and files on the parent, history -> step metrics, inputs ->
datasets, run names that sort, ``track_folder`` / the CLI, ``start_parent`` / ``finish_parent``,
reading the results back, and what stays cheap (no mlflow import, no store when disabled).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from drtl.records import RunRecord, find_records, write_record
from drtl.tracking import (finish_parent, log_records, make_client, report_from_mlflow, resolve_uri, run_name,
                           search_results, start_parent, track_folder)
from tests.tracking_demo import write_demo_records

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for k in ("DVC_ROOT", "DVC_STAGE", "DVC_EXP_NAME", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module (creating its tables takes seconds)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    make_client(uri)
    return root, uri


@pytest.fixture(scope="module")
def logged(store, tmp_path_factory):
    """A made-up pipeline run (bicubic, scratch, drtl_pre, upper_bound x K 1, 5 x seeds 0, 1) logged once."""
    root, uri = store
    out = tmp_path_factory.mktemp("outputs")
    write_demo_records(out, methods=("bicubic", "scratch", "drtl_pre", "upper_bound"), shots=(1, 5), seeds=(0, 1),
                       steps=4)
    records = find_records(out)
    tracking = {"uri": uri, "experiment": "structure", "enabled": True}
    pid = log_records(records, tracking, invocation={"command": "test", "experiment": {"shots": [1, 5]}})
    c = make_client(uri)
    exp = c.get_experiment_by_name("structure")
    runs = c.search_runs([exp.experiment_id], "", max_results=1000)
    return {"pid": pid, "client": c, "runs": runs, "records": records, "out": out, "uri": uri,
            "children": [r for r in runs if r.info.run_id != pid], "by_name": {r.info.run_name: r for r in runs}}


def test_one_parent_with_a_child_per_record(logged):
    pid, runs, children = logged["pid"], logged["runs"], logged["children"]
    parents = [r for r in runs if r.data.tags.get("drtl.role") == "pipeline"]
    assert [p.info.run_id for p in parents] == [pid]
    n_report = sum(r.stage == "report" for r in logged["records"])
    assert n_report == 1 and len(children) == len(logged["records"]) - n_report
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {pid}
    assert {r.data.tags["drtl.role"] for r in children} == {"stage"}
    assert all(r.info.status == "FINISHED" for r in runs)
    parent = logged["client"].get_run(pid)
    assert parent.info.run_name.startswith("drtl ") and len(parent.info.run_name.split()[-1]) == 8
    assert parent.data.params["command"] == "test" and parent.data.params["experiment.shots"] == "[1, 5]"
    assert parent.data.tags["git_commit"] == "0" * 40 and parent.data.tags["drtl.shots"] == "[1, 5]"
    # the parent spans its records; a child keeps its record's start and duration
    ev = logged["by_name"]["evaluate drtl_pre k05 s1"]
    assert ev.info.end_time - ev.info.start_time == 500
    assert parent.info.start_time <= min(r.info.start_time for r in children)


def test_identities_are_params_and_tags_never_metrics(logged):
    ev = logged["by_name"]["evaluate drtl_pre k05 s0"]
    for k, v in {"stage": "evaluate", "method": "drtl_pre", "shots": "5", "seed": "0"}.items():
        assert ev.data.params[k] == v and ev.data.tags[k] == v
    assert set(ev.data.metrics) == {"psnr_y", "ssim_y", "psnr_rgb", "duration_s"}  # per_image list skipped
    assert ev.data.params["n_images"] == "3" and ev.data.params["evaluate.scale"] == "2"
    for r in logged["runs"]:
        assert not {"seed", "shots", "method", "stage", "scale", "crop_border", "n_images"} & set(r.data.metrics), \
            r.info.run_name


def test_k_independent_runs_have_no_shots(logged):
    by = logged["by_name"]
    ub = by["finetune upper_bound all s0"]  # its record says shots=1
    assert "shots" not in ub.data.params and "shots" not in ub.data.tags
    assert ub.data.params["method"] == "upper_bound"
    for name in ("evaluate upper_bound all s0", "evaluate bicubic all s1", "pretrain uniform all s0"):
        assert "shots" not in by[name].data.tags, name
    assert by["pretrain drtl k05 s0"].data.tags["shots"] == "5"  # relation-weighted: one per K


def test_run_names_sort_by_stage_method_and_k(logged):
    names = sorted(r.info.run_name for r in logged["children"] if r.data.tags["stage"] == "evaluate"
                   and r.data.tags["seed"] == "0")
    assert names == ["evaluate bicubic all s0", "evaluate drtl_pre k01 s0", "evaluate drtl_pre k05 s0",
                     "evaluate scratch k01 s0", "evaluate scratch k05 s0", "evaluate upper_bound all s0"]
    assert run_name(RunRecord("finetune", "x_k10_s2", {"method": "scratch", "shots": 10, "seed": 2})) == \
        "finetune scratch k10 s2"
    assert run_name(RunRecord("relation", "relation")) == "relation"
    assert run_name(RunRecord("synthesize", "synth")) == "synthesize synth"


def test_parent_gets_the_aggregate_and_the_report_files(logged, tmp_path):
    c, pid = logged["client"], logged["pid"]
    parent = c.get_run(pid)
    m = parent.data.metrics
    agg = pd.read_csv(logged["out"] / "reports" / "aggregate.csv").set_index(["method", "shots"])
    assert m["summary/psnr_y.drtl_pre.k05"] == pytest.approx(agg.loc[("drtl_pre", 5), "psnr_mean"])
    assert m["summary/psnr_y_std.drtl_pre.k05"] == pytest.approx(agg.loc[("drtl_pre", 5), "psnr_std"])
    assert m["summary/ssim_y.scratch.k01"] == pytest.approx(agg.loc[("scratch", 1), "ssim_mean"])
    assert m["summary/n_seeds.upper_bound.k05"] == 2
    assert not any(k.endswith("_psnr_y") or k.startswith("metrics.") for k in m)  # not the report's own dict
    curve = c.get_metric_history(pid, "psnr_y_vs_k/drtl_pre")  # step = K: the chart is PSNR vs K
    assert [(x.step, round(x.value, 6)) for x in sorted(curve, key=lambda x: x.step)] == \
        [(k, round(agg.loc[("drtl_pre", k), "psnr_mean"], 6)) for k in (1, 5)]
    arts = {a.path for a in c.list_artifacts(pid)}
    assert {"aggregate.csv", "results.csv", "results.md", "psnr_vs_shots.png"} <= arts
    png = c.download_artifacts(pid, "psnr_vs_shots.png", str(tmp_path))
    assert Path(png).read_bytes()[:4] == b"\x89PNG"
    assert "| drtl_pre |" in parent.data.tags["mlflow.note.content"]  # the Markdown table as description
    assert parent.data.params["report.expand_shots"] == "[1, 5]"


def test_history_artifacts_and_inputs(logged):
    c = logged["client"]
    ft = logged["by_name"]["finetune drtl_pre k05 s0"]
    curve = c.get_metric_history(ft.info.run_id, "train_loss")
    assert [(x.step, x.value) for x in sorted(curve, key=lambda x: x.step)] == [(s, round(0.1 / s, 5)) for s in range(1, 5)]
    assert len(c.get_metric_history(ft.info.run_id, "lr")) == 4
    assert ft.data.metrics["train_wall_s"] == pytest.approx(0.4) and ft.data.metrics["final_loss"] == 0.02
    assert ft.data.params["finetune.iterations"] == "4"
    assert {a.path for a in c.list_artifacts(ft.info.run_id)} == {"model.pt"}
    ds = ft.inputs.dataset_inputs
    assert len(ds) == 1 and {t.key: t.value for t in ds[0].tags}["mlflow.data.context"] == "target_pool"
    assert json.loads(ds[0].dataset.profile)["num_rows"] == 5  # the pool's manifest.csv as a pandas dataset
    ev = logged["by_name"]["evaluate scratch k01 s0"]
    assert {t.key: t.value for t in ev.inputs.dataset_inputs[0].tags}["mlflow.data.context"] == "target_test"
    assert {a.path for a in c.list_artifacts(ev.info.run_id)} == {"scratch_k1_s0.json"}


def test_results_read_back(logged, tmp_path):
    uri = logged["uri"]
    df = search_results(uri, "structure")
    assert list(df.columns) == ["method", "shots", "seed", "psnr_y", "ssim_y"]
    assert len(df) == 2 * (2 + 2 * 2)  # seeds x (bicubic, upper_bound, scratch x2 K, drtl_pre x2 K)
    assert df[df.method.isin(["bicubic", "upper_bound"])]["shots"].isna().all()
    assert list(dict.fromkeys(df.method)) == ["bicubic", "scratch", "drtl_pre", "upper_bound"]  # registry order
    rep = report_from_mlflow(uri, "structure", tmp_path / "rep")
    assert rep["parent_run_id"] == logged["pid"] and rep["shots"] == [1, 5] and rep["n_rows"] == 16
    mine = pd.read_csv(tmp_path / "rep" / "aggregate.csv")
    theirs = pd.read_csv(logged["out"] / "reports" / "aggregate.csv")
    pd.testing.assert_frame_equal(mine, theirs)
    assert (tmp_path / "rep" / "psnr_vs_shots.png").read_bytes()[:4] == b"\x89PNG"
    out = subprocess.run([sys.executable, "-m", "drtl.tracking", "results", "--uri", uri, "--experiment", "structure"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0 and "drtl_pre" in out.stdout, out.stderr[-2000:]
    with pytest.raises(Exception, match="no finished evaluation runs"):
        report_from_mlflow(uri, "no-such-experiment", tmp_path / "rep3")


def test_kubeflow_style_parent_and_track_folder(store, tmp_path):
    _, uri = store
    tracking = {"uri": uri, "experiment": "kfp", "enabled": True}
    write_demo_records(tmp_path / "o", methods=("scratch",), shots=(1,), seeds=(0,), steps=2)
    records = find_records(tmp_path / "o")
    pid = start_parent(tracking, invocation={"pipeline": "drtl-kfp"})
    c = make_client(uri)
    assert c.get_run(pid).info.status == "RUNNING"
    for rec in records:  # each task logs its own record; the report task logs onto the parent
        assert log_records([rec], tracking, parent_run_id=pid) == pid
    assert c.get_run(pid).info.status == "RUNNING"
    finish_parent(tracking, pid, status="FAILED")
    parent = c.get_run(pid)
    assert parent.info.status == "FAILED" and "summary/psnr_y.scratch.k01" in parent.data.metrics
    kids = c.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{pid}'")
    assert len(kids) == len(records) - 1

    pid2 = track_folder(tmp_path / "o", tracking, invocation={"command": "track"})
    assert pid2 != pid and c.get_run(pid2).info.status == "FINISHED"
    assert search_results(uri, "kfp")["psnr_y"].notna().all()  # the newest parent's runs
    with pytest.raises(Exception, match="no run records"):
        track_folder(tmp_path / "empty", tracking)


def test_track_cli_and_missing_files(tmp_path, monkeypatch):
    """`python -m drtl.tracking track` resolves a relative store against the working folder; a
    record whose history / artifact vanished is still logged (warning, tag)."""
    monkeypatch.chdir(tmp_path)
    rec = RunRecord("finetune", "scratch_k1_s0", {"method": "scratch", "shots": 1, "seed": 0},
                    metrics={"final_loss": 0.5, "nested": {"a": 1}, "name": "text"}, history="history.json",
                    artifacts=["model.pt"], inputs=[{"path": "nowhere", "context": "target_pool", "digest": "ab" * 32}],
                    started=1.7e9, duration_s=3.0)
    write_record(tmp_path / "outputs" / "finetune" / "scratch_k1_s0", rec)
    out = subprocess.run([sys.executable, "-m", "drtl.tracking", "track", "--root", "outputs", "-S",
                          "tracking.uri=sqlite:///m.db", "-S", "tracking.enabled=true", "-S", "tracking.experiment=cli"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "parent run" in out.stdout and (tmp_path / "m.db").is_file()
    c = make_client(resolve_uri("sqlite:///m.db"))
    exp = c.get_experiment_by_name("cli")
    (child,) = c.search_runs([exp.experiment_id], "tags.`drtl.role` = 'stage'")
    assert child.data.metrics == {"final_loss": 0.5, "nested.a": 1.0, "duration_s": 3.0}
    assert child.data.tags["drtl.missing_artifacts"] == '["model.pt"]'
    assert child.inputs.dataset_inputs[0].dataset.digest == ("ab" * 32)[:36]  # no manifest here: the record's digest
    off = subprocess.run([sys.executable, "-m", "drtl.tracking", "track", "--root", "outputs", "-S",
                          "tracking.uri=sqlite:///off.db", "-S", "tracking.enabled=false"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert off.returncode == 0 and "nothing logged" in off.stdout and not (tmp_path / "off.db").exists()


def test_disabled_logs_nothing_and_the_package_does_not_import_mlflow(tmp_path):
    code = ("import sys\n"
            "import drtl.tracking as t\n"
            "from drtl.records import RunRecord\n"
            "assert t.log_records([RunRecord('evaluate', 'x')], {'uri': 'sqlite:///x.db', 'enabled': False}) is None\n"
            "assert t.start_parent({'enabled': False}) is None\n"
            "bad = [m for m in ('mlflow', 'pandas', 'drtl.stages', 'kfp') if m in sys.modules]\n"
            "assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


def test_resolve_uri(tmp_path, monkeypatch):
    assert resolve_uri("sqlite:///mlflow.db", root="/repo") == "sqlite:////repo/mlflow.db"
    assert resolve_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # DVC (also for exp run --temp) names the parent repo
    monkeypatch.chdir("/")
    assert resolve_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    with pytest.raises(Exception, match="in-memory"):
        resolve_uri("sqlite:///:memory:")
    with pytest.raises(Exception, match="expected sqlite"):
        resolve_uri("ftp://x")


def test_odd_metric_keys_are_cleaned(store, tmp_path):
    _, uri = store
    rec = RunRecord("relation", "relation", metrics={"drn accuracy (val)": 0.4, "top_tasks": ["blur"]},
                    params={"relation.tau": 0.05})
    write_record(tmp_path / "relation", rec)
    pid = log_records(find_records(tmp_path), {"uri": uri, "experiment": "odd"})
    c = make_client(uri)
    (child,) = c.search_runs([c.get_run(pid).info.experiment_id], f"tags.`mlflow.parentRunId` = '{pid}'")
    assert set(child.data.metrics) == {"drn accuracy _val_"}
    assert child.info.run_name == "relation" and child.data.params["relation.tau"] == "0.05"
