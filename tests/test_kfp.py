"""Kubeflow: the whole DAG under kfp.local, the compiled IR's cluster settings, submission.

The local run executes every component as a subprocess of this interpreter (SubprocessRunner,
use_venv=False) on the tiny profile. Submission talks to a stand-in for the KFP API server (a
127.0.0.1 HTTP server answering the four REST endpoints kfp.Client uses) or to a fake kfp.Client.
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

from drtl.config import METHODS

REPO = Path(__file__).resolve().parents[1]
GPU_STAGES = ("relation", "pretrain", "metatrain", "finetune")


def _cli(argv):
    from pipelines.cli import main

    return main(argv)


def _load_ir(path: Path):
    docs = list(yaml.safe_load_all(path.read_text()))
    spec = docs[0]
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    return spec, platform


def _executor_stage(spec: dict, name: str) -> str:
    """'exec-finetune-3' -> 'finetune' (the component's function name)."""
    return spec["deploymentSpec"]["executors"][name]["container"]["args"][-1]


def _task_stage(spec: dict, task: dict) -> str | None:
    """The stage a task runs (None for a loop / sub-DAG task)."""
    comp = spec["components"][task["componentRef"]["name"]]
    return _executor_stage(spec, comp["executorLabel"]) if "executorLabel" in comp else None


def _all_tasks(spec: dict):
    """Every task of every DAG (root and loop bodies): (dag name, task name, task spec)."""
    yield from (("root", n, t) for n, t in spec["root"]["dag"]["tasks"].items())
    for cname, comp in spec["components"].items():
        for n, t in comp.get("dag", {}).get("tasks", {}).items():
            yield cname, n, t


# ------------------------------------------------------------------------------------ local run
@pytest.mark.slow
def test_kfp_local_run_end_to_end_tiny(tmp_path, capsys):
    """`drtl kfp run --local` on the tiny profile: every method in results.csv, the same numbers as
    `drtl experiment` (the same stage functions, runs and inits), and a rerun served by the cache."""
    out = tmp_path / "run"
    assert _cli(["kfp", "run", "--local", "--out", str(out)]) == 0
    msg = capsys.readouterr().out.strip().splitlines()[-1]
    assert "tiny profile" in msg and str(out / "results.csv") in msg
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == ["method", "shots", "seed", "psnr_y", "ssim_y"]
    assert sorted(set(df.method)) == sorted(METHODS)
    assert len(df) == len(METHODS) * 2 and set(df.shots) == {1, 2} and set(df.seed) == {0}
    assert (df.psnr_y > 15).all() and ((df.ssim_y > 0) & (df.ssim_y <= 1)).all()
    for f in ("aggregate.csv", "results.md", "psnr_vs_shots.png", "metrics.json"):
        assert (out / "reports" / f).is_file(), f
    arts = out / "kfp"
    assert list(arts.rglob("relation/relation/graphs/k2_s0/graph.graphml"))
    assert len(list(arts.rglob("finetune*/model/model.pt"))) == 5 * 2 + 1  # 5 few-shot methods x 2 K + upper bound

    # the DAG computes exactly what the in-process orchestrator computes for the same params
    from drtl.data.sample import make_sample
    from drtl.stages.experiment import run_experiment
    from pipelines.profiles import TINY_SAMPLE, tiny_params

    data = tmp_path / "sample"
    make_sample(data, scale=2, **TINY_SAMPLE)
    run_experiment(tiny_params([f"outputs={tmp_path / 'exp'}", f"target.pool={data / 'pool'}",
                                f"target.test={data / 'test'}", f"aux.hr=[{data / 'aux_hr'}]"]), echo=lambda *a: None)
    assert (tmp_path / "exp" / "reports" / "results.csv").read_bytes() == (out / "results.csv").read_bytes()

    # a rerun with nothing changed executes no task (kfp.local cache) and reports the same table
    executed = len(list(arts.rglob("executor_output.json")))
    assert _cli(["kfp", "run", "--local", "--out", str(out)]) == 0
    assert len(list(arts.rglob("executor_output.json"))) == executed
    assert pd.read_csv(out / "results.csv").equals(df)


# ------------------------------------------------------------------------------- compiled IR YAML
@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    d = tmp_path_factory.mktemp("ir")
    params = d / "params.yaml"
    params.write_text("experiment: {shots: [1, 5, 10], seeds: [0, 1]}\n")
    paths = {}
    for name, flags in {"gpu": [], "nogpu": ["--no-gpu"], "local": ["--no-gpu", "--no-k8s"]}.items():
        paths[name] = d / f"{name}.yaml"
        assert _cli(["kfp", "compile", "--params", str(params), "--out", str(paths[name]), *flags]) == 0
    return {k: _load_ir(v) for k, v in paths.items()}


def test_compiled_ir_gpu_settings_on_training_tasks(compiled):
    from components import DRTL_IMAGE

    spec, platform = compiled["gpu"]
    executors = spec["deploymentSpec"]["executors"]
    seen = set()
    for name, ex in executors.items():
        stage, c = _executor_stage(spec, name), ex["container"]
        seen.add(stage)
        assert c["image"] == DRTL_IMAGE
        assert not any("pip install" in part for part in c["command"]), "the image carries kfp; no run-time pip"
        res = c["resources"]
        assert res["resourceCpuRequest"] and res["resourceCpuLimit"] and res["resourceMemoryRequest"] \
            and res["resourceMemoryLimit"], name
        k8s = platform[name]
        secret = k8s["secretAsEnv"][0]
        assert secret["secretName"] == "drtl-s3"
        assert {e["envVar"] for e in secret["keyToEnv"]} >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        if stage in GPU_STAGES:
            assert res["accelerator"]["resourceType"] == "nvidia.com/gpu" and res["accelerator"]["resourceCount"] == "1"
            assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
            assert k8s["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        else:
            assert "accelerator" not in res and "nodeSelector" not in k8s and "tolerations" not in k8s, name
    assert seen == {"prepare", "validate", "synthesize", "relation", "pretrain", "metatrain", "finetune", "evaluate",
                    "report"}
    # training tasks get device=cuda, evaluation stays on cpu; every task retries and caches
    n_tasks = 0
    for _, name, t in _all_tasks(spec):
        stage = _task_stage(spec, t)
        if stage is None:
            continue
        n_tasks += 1
        assert t["retryPolicy"]["maxRetryCount"] == 2 and t["retryPolicy"]["backoffDuration"] == "60s", name
        assert t["cachingOptions"]["enableCache"] is True, name
        device = t["inputs"]["parameters"].get("device", {}).get("runtimeValue", {}).get("constant")
        if stage in GPU_STAGES:
            assert device == "cuda", name
        elif stage == "evaluate":
            assert device == "cpu", name
    assert n_tasks == 4 + 5 + (2 + 5 * 2) + 1  # data, per seed, per (seed, K), report: DAG nodes, not runs


def test_compiled_ir_dag_shape_and_parameters(compiled):
    spec, _ = compiled["gpu"]
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"data", "sample", "mlflow_tracking_uri"}
    loops = {json.loads(t["parameterIterator"]["items"]["raw"]) == [0, 1] and "seeds" or
             json.loads(t["parameterIterator"]["items"]["raw"]) == [1, 5, 10] and "shots"
             for _, _, t in _all_tasks(spec) if "parameterIterator" in t}
    assert loops == {"seeds", "shots"}
    # the report collects every method's evaluations (dsl.Collected over the loops)
    rep = spec["root"]["dag"]["tasks"]["report"]
    assert set(rep["inputs"]["parameters"]) >= set(METHODS)
    # each stage gets only its params sections (so the cache re-runs exactly what a change touches)
    expected = {"prepare": {"target"}, "validate": {"target"}, "synthesize": {"target", "aux"},
                "relation": {"target", "relation"}, "pretrain": {"target", "arch", "pretrain"},
                "metatrain": {"target", "arch", "meta"}, "finetune": {"target", "arch", "finetune"},
                "evaluate": {"target"}, "report": {"target"}}
    torch_threads = {"relation": 8, "pretrain": 8, "metatrain": 8, "finetune": 8, "evaluate": 8}  # = CPU limits
    for _, name, t in _all_tasks(spec):
        stage = _task_stage(spec, t)
        if stage is not None:
            p = json.loads(t["inputs"]["parameters"]["params"]["runtimeValue"]["constant"])
            assert set(p) - {"threads"} == expected[stage], name
            if "threads" in p and stage in torch_threads:
                assert p["threads"] == torch_threads[stage], name


def test_compiled_ir_without_gpu_or_kubernetes(compiled):
    spec, platform = compiled["nogpu"]
    for name, ex in spec["deploymentSpec"]["executors"].items():
        assert "accelerator" not in ex["container"].get("resources", {}), name
        assert "nodeSelector" not in platform[name] and platform[name]["secretAsEnv"], name
    spec, platform = compiled["local"]
    assert platform == {}
    for name, ex in spec["deploymentSpec"]["executors"].items():
        assert "resources" not in ex["container"], name
    assert not any("retryPolicy" in t for _, _, t in _all_tasks(spec))


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
    assert _cli(["kfp", "submit", "--host", host, "--experiment", "drtl-city100", "--run-name", "k5-sweep",
                 "--data", "s3://bucket/datasets/city100/v1", "--mlflow-uri", "http://mlflow:5000",
                 "-S", "experiment.shots=[1, 5]"]) == 0
    assert "run-42" in capsys.readouterr().out
    posts = [(p, b) for m, p, b in calls if m == "POST"]
    assert [p for p, _ in posts] == ["/apis/v2beta1/experiments", "/apis/v2beta1/runs"]
    assert posts[0][1]["display_name"] == "drtl-city100"
    run = posts[1][1]
    assert run["display_name"] == "k5-sweep" and run["experiment_id"] == "exp-1"
    assert run["runtime_config"]["parameters"] == {"data": "s3://bucket/datasets/city100/v1", "sample": "{}",
                                                   "mlflow_tracking_uri": "http://mlflow:5000"}
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
    assert _cli(["kfp", "compile", "--out", str(pkg), "--no-gpu"]) == 0
    assert _cli(["kfp", "submit", "--host", "https://kfp.example.org", "--package", str(pkg),
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
    assert _cli(["kfp", "submit", "--host", "http://127.0.0.1:9", "--package", str(pkg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("drtl: error: submitting to http://127.0.0.1:9 failed") and "\n" not in err
    assert _cli(["kfp", "submit", "--host", "kfp.example.org", "--package", str(pkg)]) == 2
    assert _cli(["kfp", "submit", "--host", "http://x", "--package", str(tmp_path / "absent.yaml")]) == 2
    assert _cli(["kfp", "run", "--out", str(tmp_path / "o")]) == 2  # `run` needs --local
    assert "--local" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- layering
def test_kfp_import_is_lazy_and_library_never_imports_kfp():
    code = ("import argparse, sys; from pipelines.cli import add_kfp_parser; p = argparse.ArgumentParser(); "
            "add_kfp_parser(p.add_subparsers()); import drtl.cli, drtl.stages.experiment; "
            "assert not [m for m in sys.modules if m == 'kfp' or m.startswith('kfp.')], 'kfp imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    for path in (REPO / "drtl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "kfp" or n.startswith("kfp.") for n in names), f"{path} imports kfp"


def test_components_are_thin_wrappers_of_drtl():
    """Each component's shipped source imports drtl inside its body and nothing from this repo's
    components/pipelines packages (the image carries only drtl)."""
    from components import STAGE_COMPONENTS

    for name, comp in STAGE_COMPONENTS.items():
        src = comp.component_spec.implementation.container.command[-1]
        assert "from drtl." in src, name
        assert "from components" not in src and "import pipelines" not in src, name
