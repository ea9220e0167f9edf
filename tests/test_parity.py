"""Orchestrator parity: every orchestrator of the plan produces the same results.csv, byte for byte.

One module-scoped fixture per orchestrator runs the tiny profile (``configs/tiny.yaml``) on the
sample data and returns its ``results.csv``; :data:`LEGS` lists the orchestrators compared with the
``drtl experiment``: ``drtl-kfp run --local`` (Kubeflow's local runner) and ``dvc repro`` (the
generated dvc.yaml, params.yaml = configs/tiny.yaml). A new leg is a fixture ``<leg>_results`` and
a name in :data:`LEGS`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = REPO / "configs" / "tiny.yaml"
LEGS = ["kfp", "dvc"]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "DRTL_PIPELINE", "MLFLOW_"))}
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "DRTL_PROGRESS": "0",
                "GX_ANALYTICS_ENABLED": "False", "DVC_NO_ANALYTICS": "1"})
    return env


def sample_data_dir(tmp: Path) -> Path:
    """``data/sample`` (the dataset folder of configs/tiny.yaml): the checkout's, else pulled with
    ``dvc pull data.dvc`` into a scratch copy of the DVC setup under ``tmp``."""
    if (REPO / "data" / "sample" / "pool").is_dir():
        return REPO / "data" / "sample"
    dest = tmp / "dvc-copy"
    dest.mkdir()
    shutil.copy2(REPO / "data.dvc", dest / "data.dvc")
    shutil.copytree(REPO / "dvc-remote", dest / "dvc-remote")
    (dest / ".dvc").mkdir()
    shutil.copy2(REPO / ".dvc" / "config", dest / ".dvc" / "config")
    env = _env()
    subprocess.run(["git", "init", "-q"], cwd=dest, env=env, check=True)
    subprocess.run([str(BIN / "dvc"), "pull", "-q", "data.dvc"], cwd=dest, env=env, check=True)
    return dest / "data" / "sample"


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> Path:
    return sample_data_dir(tmp_path_factory.mktemp("sample"))


def data_overrides(data: Path) -> list[str]:
    """-S overrides pointing configs/tiny.yaml at ``data`` (no-ops for the checkout's data/sample)."""
    return [f"target.pool={data / 'pool'}", f"target.test={data / 'test'}", f"aux.hr={data / 'aux_hr'}"]


@pytest.fixture(scope="module")
def experiment_results(tmp_path_factory, sample_data) -> Path:
    out = tmp_path_factory.mktemp("experiment")
    args = ["--params", str(TINY), "-S", f"outputs={out}"]
    for o in data_overrides(sample_data):
        args += ["-S", o]
    subprocess.run([str(BIN / "drtl"), "experiment", *args], cwd=REPO, env=_env(), check=True,
                   capture_output=True)
    return out / "reports" / "results.csv"


@pytest.fixture(scope="module")
def kfp_results(tmp_path_factory, sample_data) -> Path:
    out = tmp_path_factory.mktemp("kfp")
    r = subprocess.run([str(BIN / "drtl-kfp"), "run", "--local", "--params", str(TINY), "--data", str(sample_data),
                        "--out", str(out)], cwd=REPO, env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out / "results.csv"


@pytest.fixture(scope="module")
def dvc_results(tmp_path_factory) -> Path:
    """`dvc repro` of the generated dvc.yaml in a scratch copy whose params.yaml is configs/tiny.yaml."""
    from tests.test_pipeline_dvc import dvc, make_copy

    root = make_copy(tmp_path_factory.mktemp("dvc") / "repo", params_file=TINY)
    dvc(root, "pull", "data.dvc")
    dvc(root, "repro")
    return root / "reports" / "results.csv"


@pytest.mark.slow
@pytest.mark.parametrize("leg", LEGS)
def test_results_csv_identical_across_orchestrators(leg, request, experiment_results):
    other = request.getfixturevalue(f"{leg}_results")
    df = pd.read_csv(experiment_results)
    methods = yaml.safe_load(TINY.read_text())["experiment"]["methods"]
    assert len(df) == len(methods) * 2 and set(df.shots) == {1, 2}  # every method of tiny.yaml x K in {1, 2}, seed 0
    assert other.read_bytes() == experiment_results.read_bytes(), (
        f"{leg}: results.csv differs from drtl experiment's\n"
        f"{other.read_text()}\n---\n{experiment_results.read_text()}")
