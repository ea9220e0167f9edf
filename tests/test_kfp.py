"""Kubeflow: the pipeline built from the plan, compiled IR, the component body, submission.

The suite's one local run (kfp.local SubprocessRunner, use_venv=False, on the tiny profile with a
run-time sweep) is in tests/test_parity.py, which compares its results.csv with `drtl experiment`'s
and checks its report. Submission talks to a stand-in for the KFP API server (a 127.0.0.1 HTTP
server answering the REST endpoints kfp.Client uses) or to a fake kfp.Client.
"""

import ast
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import yaml

from drtl.methods import METHODS, SOURCES
from tests.conftest import REPO, TINY

GPU_STAGES = ("bank", "relation", "pretrain", "metatrain", "finetune")
IMAGE = "registry.example.org/drtl/drtl@sha256:0123"


def _cli(argv):
    from pipelines.cli import main

    return main(argv)


def _load_ir(path: Path):
    docs = list(yaml.safe_load_all(path.read_text()))
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    return docs[0], platform


def _all_tasks(spec: dict):
    """Every task of every DAG (root and loop bodies): (dag name, task name, task spec)."""
    yield from (("root", n, t) for n, t in spec["root"]["dag"]["tasks"].items())
    for cname, comp in spec["components"].items():
        for n, t in comp.get("dag", {}).get("tasks", {}).items():
            yield cname, n, t


def _const(task: dict, name: str):
    return task["inputs"]["parameters"].get(name, {}).get("runtimeValue", {}).get("constant")


def _stage_tasks(spec: dict):
    """(task name, stage, task spec, executor label) of every stage task."""
    for _, name, t in _all_tasks(spec):
        stage = _const(t, "stage") if "inputs" in t else None
        if stage:
            yield name, stage, t, spec["components"][t["componentRef"]["name"]]["executorLabel"]


def _tiny_methods() -> list[str]:
    from drtl.config import load_params

    return load_params(TINY)["experiment"]["methods"]


# ------------------------------------------------------------------------------- compiled IR YAML
@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    d = tmp_path_factory.mktemp("ir")
    paths = {}
    for name, flags in {"gpu": [], "nogpu": ["--no-gpu"], "local": ["--no-gpu", "--no-k8s"]}.items():
        paths[name] = d / f"{name}.yaml"
        assert _cli(["compile", "--params", str(TINY), "--image", IMAGE, "--out", str(paths[name]), *flags]) == 0
    return {k: _load_ir(v) for k, v in paths.items()}


def test_compiled_cells_is_a_runtime_parameter_with_its_default(compiled):
    spec, _ = compiled["gpu"]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == {"data", "sample", "cells", "mlflow_tracking_uri"}
    assert params["cells"]["parameterType"] == "LIST"
    # configs/tiny.yaml: shots [1, 2] x seeds [0] (the IR stores numbers as floats)
    assert [{k: int(v) for k, v in c.items()} for c in params["cells"]["defaultValue"]] == [
        {"shots": 1, "seed": 0}, {"shots": 2, "seed": 0}]
    assert params["data"]["defaultValue"] == "sample" and params["mlflow_tracking_uri"]["defaultValue"] == ""
    # ONE loop, over the pipeline parameter (no nested ParallelFor: kfp.local bug)
    loops = [t for _, _, t in _all_tasks(spec) if "parameterIterator" in t]
    assert len(loops) == 1
    assert loops[0]["parameterIterator"]["items"]["inputParameter"].endswith("cells")


def test_compiled_dag_follows_the_plan(compiled):
    spec, _ = compiled["local"]
    stages = [s for _, s, _, _ in _stage_tasks(spec)]
    names = {_const(t, "name") for _, _, t, _ in _stage_tasks(spec)}
    # before the loop: prepare, validate, synthesize, bank; in a cell: its relation, 4 sources,
    # 6 fine-tunings, 7 evaluations (chained); then the report
    assert sorted(set(stages)) == sorted(["prepare", "validate", "synthesize", "bank", "relation", "pretrain",
                                          "metatrain", "finetune", "evaluate", "report"])
    assert stages.count("bank") == 1 and stages.count("relation") == 1  # the relation: once per cell
    methods = _tiny_methods()
    sources = {METHODS[m].init for m in methods if METHODS[m].init} | {"pretrain_uniform"}  # + upper_bound's init
    assert stages.count("evaluate") == len(methods) and stages.count("finetune") == len(methods) - 1
    assert stages.count("pretrain") + stages.count("metatrain") == len(sources) and sources <= set(SOURCES)
    assert {"drtl_pre_k{shots}_s{seed}", "upper_bound_s{seed}", "bicubic_s{seed}", "uniform_s{seed}",
            "drtl_k{shots}_s{seed}"} <= names
    # the report follows the run-time cells
    for _, stage, t, _ in _stage_tasks(spec):
        if stage == "report":
            assert t["inputs"]["parameters"]["cells"]["componentInputParameter"] == "cells"
    # each task gets only the params its stage's variant reads (the cache re-runs exactly what a
    # change touches): the uniform pre-training does not get meta.* or pretrain.drtl_continue
    from drtl.config import load_params
    from drtl.stages import get_stage

    full, seen = load_params(TINY), {}
    for _, stage, t, _ in _stage_tasks(spec):
        spec_ = get_stage(stage)
        p, method = json.loads(_const(t, "params")), _const(t, spec_.variant) or None
        tops = {k.split(".")[0] for k in (*spec_.reads_for(full, method), *spec_.param_paths)}
        assert set(p) - {"device", "threads", "tracking"} == tops - {"device"}, (stage, method)
        seen[(stage, method)] = p
    uniform, drtl = seen[("pretrain", "uniform")], seen[("pretrain", "drtl")]
    assert "meta" not in uniform and "drtl_continue" not in uniform["pretrain"]
    assert "meta" not in drtl and drtl["pretrain"]["drtl_continue"] == full["pretrain"]["drtl_continue"]
    assert {k: v for k, v in drtl["pretrain"].items() if k != "drtl_continue"} == uniform["pretrain"]


def test_no_method_names_outside_the_registry():
    """The pipeline and components are built from drtl.methods / drtl.plan: no method or source name
    appears as a string literal in them."""
    names = set(METHODS) | {s.key for s in SOURCES.values()} | {s.variant for s in SOURCES.values()}
    from drtl.stages import STAGES

    names -= {"drtl", *STAGES}  # also the project's name and stage names ('pretrain')
    for path in [*(REPO / "pipelines").glob("*.py"), *(REPO / "components").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value not in names, f"{path.name}: {node.value!r}"


def test_compiled_ir_image_gpu_and_cluster_settings(compiled):
    spec, platform = compiled["gpu"]
    executors = spec["deploymentSpec"]["executors"]
    assert {ex["container"]["image"] for ex in executors.values()} == {IMAGE}
    assert not any("pip install" in part for ex in executors.values() for part in ex["container"]["command"])
    seen = set()
    for name, stage, t, label in _stage_tasks(spec):
        seen.add(stage)
        res, k8s = executors[label]["container"]["resources"], platform[label]
        assert res["resourceCpuLimit"] and res["resourceMemoryLimit"], name
        assert k8s["secretAsEnv"][0]["secretName"] == "drtl-s3"
        assert t["retryPolicy"]["maxRetryCount"] == 2 and t["cachingOptions"]["enableCache"] is True, name
        device = json.loads(_const(t, "params")).get("device")
        if stage in GPU_STAGES:
            assert res["accelerator"]["resourceType"] == "nvidia.com/gpu", name
            assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
            assert device == "cuda", name
        else:
            assert "accelerator" not in res and "nodeSelector" not in k8s, name
    assert seen >= set(GPU_STAGES) | {"prepare", "evaluate", "report"}
    spec, platform = compiled["local"]
    assert platform == {}
    assert not any("resources" in ex["container"] for ex in spec["deploymentSpec"]["executors"].values())
    assert not any("retryPolicy" in t for _, _, t in _all_tasks(spec))


def test_component_signature_covers_every_stage_input():
    """The generic component takes every str / int input of every stage and an artifact slot for
    every path input the plan links."""
    from components import ARTIFACT_SLOTS, stage_component
    from drtl.stages import STAGES

    inputs = set(stage_component().component_spec.inputs)
    for st in STAGES.values():
        for a in st.args:
            if a.kind in ("str", "int") and a.name not in ("scale", "device", "tile"):  # from params
                assert a.name in inputs, (st.name, a.name)
    assert set(ARTIFACT_SLOTS) <= inputs and "evals" in inputs and "cells" in inputs
    src = stage_component().component_spec.implementation.container.command[-1]
    assert "from drtl.runner import execute" in src and "from components" not in src and "pipelines" not in src


# -------------------------------------------------------------------------------------- submission
class _KFPStandIn(BaseHTTPRequestHandler):
    """The KFP v2beta1 REST endpoints kfp.Client.create_run_from_pipeline_package calls."""

    calls: list = []

    def _reply(self, body: dict, code: int = 200):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.calls.append(("GET", self.path, None))
        if self.path.startswith("/apis/v2beta1/healthz"):
            return self._reply({"multi_user": False})
        if self.path.startswith("/apis/v2beta1/experiments"):
            return self._reply({"experiments": [], "total_size": 0})
        self._reply({"error": "not found"}, 404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.calls.append(("POST", self.path, body))
        if self.path == "/apis/v2beta1/experiments":
            return self._reply({"experiment_id": "exp-1", "display_name": body["display_name"]})
        if self.path == "/apis/v2beta1/runs":
            return self._reply({"run_id": "run-42", "display_name": body["display_name"],
                                "experiment_id": body.get("experiment_id"), "state": "PENDING"})
        self._reply({"error": "not found"}, 404)

    def log_message(self, *args):
        pass


@pytest.fixture
def kfp_api():
    _KFPStandIn.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KFPStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _KFPStandIn.calls
    server.shutdown()
    server.server_close()


def test_submit_creates_run_in_named_experiment(kfp_api, tmp_path, capsys, monkeypatch):
    host, calls = kfp_api
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp.Client reads ~/.config/kfp/context.json
    monkeypatch.chdir(tmp_path)
    assert _cli(["submit", "--host", host, "--experiment", "drtl-city100", "--run-name", "k5-sweep",
                 "--data", "s3://bucket/datasets/city100/v1", "--mlflow-uri", "http://mlflow:5000",
                 "-S", "experiment.shots=[1, 5]", "--cells", '[{"shots": 5, "seed": 1}]']) == 0
    assert "run-42" in capsys.readouterr().out
    posts = [(p, b) for m, p, b in calls if m == "POST"]
    assert [p for p, _ in posts] == ["/apis/v2beta1/experiments", "/apis/v2beta1/runs"]
    assert posts[0][1]["display_name"] == "drtl-city100"
    run = posts[1][1]
    assert run["display_name"] == "k5-sweep" and run["experiment_id"] == "exp-1"
    assert run["runtime_config"]["parameters"] == {"data": "s3://bucket/datasets/city100/v1", "sample": "{}",
                                                   "mlflow_tracking_uri": "http://mlflow:5000",
                                                   "cells": [{"shots": 5, "seed": 1}]}
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "drtl-few-shot-realsr"
    k8s = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert all(e["secretAsEnv"][0]["secretName"] == "drtl-s3" for e in k8s.values())


def test_submit_with_fake_client_and_errors(tmp_path, monkeypatch, capsys):
    import kfp

    recorded = {}

    class FakeClient:
        def __init__(self, host=None, **kw):
            recorded["host"], recorded["init"] = host, kw

        def create_run_from_pipeline_package(self, pipeline_file, **kw):
            recorded["spec"] = next(yaml.safe_load_all(Path(pipeline_file).read_text()))
            recorded["kw"] = kw
            return type("R", (), {"run_id": "abc"})()

    monkeypatch.setattr(kfp, "Client", FakeClient)
    monkeypatch.chdir(tmp_path)  # no ./params.yaml: the built-in defaults
    pkg = tmp_path / "p.yaml"
    assert _cli(["compile", "--out", str(pkg), "--no-gpu"]) == 0
    assert _cli(["submit", "--host", "https://kfp.example.org", "--package", str(pkg),
                 "--experiment", "e1", "--namespace", "team-sr", "--no-cache"]) == 0
    assert recorded["host"] == "https://kfp.example.org" and recorded["init"] == {"namespace": "team-sr"}
    assert recorded["kw"]["experiment_name"] == "e1" and recorded["kw"]["enable_caching"] is False
    assert recorded["kw"]["run_name"].startswith("e1-") and recorded["kw"]["namespace"] == "team-sr"
    assert recorded["spec"]["pipelineInfo"]["name"] == "drtl-few-shot-realsr"
    capsys.readouterr()

    class Down(FakeClient):
        def create_run_from_pipeline_package(self, pipeline_file, **kw):
            raise ConnectionRefusedError("[Errno 111] Connection refused")

    monkeypatch.setattr(kfp, "Client", Down)
    assert _cli(["submit", "--host", "http://127.0.0.1:9", "--package", str(pkg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("drtl-kfp: error: submitting to http://127.0.0.1:9 failed") and "\n" not in err
    assert _cli(["submit", "--host", "kfp.example.org", "--package", str(pkg)]) == 2
    assert _cli(["submit", "--host", "http://x", "--package", str(tmp_path / "absent.yaml")]) == 2
    assert _cli(["run", "--out", str(tmp_path / "o")]) == 2  # `run` needs --local
    assert "--local" in capsys.readouterr().err
    assert _cli(["run", "--local", "--cells", '[{"shots": 1}]', "--out", str(tmp_path / "o")]) == 2
    assert "--cells" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- layering
def test_kfp_import_is_lazy_and_library_never_imports_kfp():
    code = ("import sys; from pipelines.cli import build_parser; build_parser().parse_args(['compile']); "
            "import drtl.cli, drtl.plan, drtl.runner; "
            "assert not [m for m in sys.modules if m == 'kfp' or m.startswith('kfp.')], 'kfp imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    for path in (REPO / "drtl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "kfp" or n.startswith("kfp.") or n.startswith("pipelines") for n in names), path


# ------------------------------------------------------------------------ the component body, in-process
def test_component_body_dedups_evals_and_logs_the_record(tmp_path, sample_data):
    """The body of the generic component, called as a function, tracking into a real SQLite MLflow
    store the Kubeflow way: a parent from start_parent, a child per task's record under it, the
    report onto the parent, which it finishes. The report gets one evaluation per (method, shots,
    seed), K-independent ones expanded over the cells' shots."""
    from kfp.dsl import Artifact
    from mlflow import MlflowClient

    from components.stage import run_stage
    from drtl.config import load_params
    from drtl.tracking import start_parent

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    p = load_params(TINY)
    tracking = {**p["tracking"], "uri": uri, "enabled": True}
    parent = start_parent(tracking, {"orchestrator": "kubeflow"})

    def ev(method, shots, seed, psnr):
        return json.dumps({"method": method, "shots": shots, "seed": seed, "psnr_y": psnr, "ssim_y": 0.5})

    per_cell = [[ev("bicubic", None, 0, 30.0), ev("scratch", 1, 0, 31.0)],
                [ev("bicubic", None, 0, 30.0), ev("scratch", 2, 0, 32.0)]]
    sample = sample_data
    run_stage(stage="evaluate", params=json.dumps({**p, "target": {**p["target"], "test": str(sample / "test")}}),
              out=Artifact(uri=str(tmp_path / "ev")), name="bicubic_s0", method="bicubic", seed=0,
              tracking_uri=uri, parent_run_id=parent)
    out = Artifact(uri=str(tmp_path / "report"))
    run_stage(stage="report", params=json.dumps(p), out=out, name="report",
              cells=[{"shots": 1, "seed": 0}, {"shots": 2, "seed": 0}], evals=per_cell,
              tracking_uri=uri, parent_run_id=parent, finish_parent=True)
    df = pd.read_csv(tmp_path / "report" / "results.csv")
    assert [tuple(r) for r in df[["method", "shots", "seed"]].itertuples(index=False)] == [
        ("bicubic", 1, 0), ("bicubic", 2, 0), ("scratch", 1, 0), ("scratch", 2, 0)]
    client = MlflowClient(uri)
    top = client.get_run(parent)
    assert top.info.status == "FINISHED" and any(k.startswith("psnr_y_vs_k/") for k in top.data.metrics)
    exp = client.get_experiment_by_name(tracking["experiment"])
    kids = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert [r.data.params.get("method") for r in kids] == ["bicubic"] and "psnr_y" in kids[0].data.metrics
