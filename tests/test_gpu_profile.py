"""The GPU profile (params.gpu.yaml) as written, on the CPU: its method, its network, its code paths.

The smoke run overrides only step counts, sizes and data paths (``SMOKE``), never a key that picks
the method (``METHOD_KEYS``), so every code path of the GPU profile runs here except the CUDA-only
branches (scripts/gpu_check.sh runs those on a GPU).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from drtl.config import load_params
from drtl.methods import METHOD_NAMES
from tests.conftest import REPO, shared_dataset

GPU = REPO / "params.gpu.yaml"
# the keys that make it the City100 table's method at GPU scale: the smoke run must not touch them
METHOD_KEYS = {"arch": {"name": "edsr_baseline"}, "device": "auto", "relation.similarity": "expert",
               "relation.fitted": True, "relation.tau_db": 0.1, "relation.weighting": True}
SMOKE_SIZES = [
    "threads=1", "aux.tasks=[clean_bicubic, iso_blur_s2.4, gauss_noise30, jpeg_q30]", "aux.max_hr_side=96",
    "relation.steps=2", "relation.batch_per_task=2", "relation.lr_patch=16", "relation.patches_per_image=2",
    "relation.eval_per_task=2", "relation.drn.num_feat=16", "relation.drn.emb_dim=16",
    "relation.expert.iterations=2", "relation.expert.batch=2", "relation.expert.lr_patch=16",
    "relation.expert.tasks_per_step=2",
    "pretrain.iterations=3", "pretrain.batch=2", "pretrain.lr_patch=16", "pretrain.tasks_per_step=2",
    "pretrain.checkpoint_every=2", "pretrain.drtl_continue=2", "pretrain.log_every=1",
    "meta.iterations=2", "meta.lr_patch=16", "meta.inner_steps=2", "meta.meta_batch=2", "meta.support_batch=2",
    "meta.query_batch=2", "meta.checkpoint_every=1", "meta.log_every=1",
    "finetune.iterations=3", "finetune.batch=2", "finetune.lr_patch=16", "finetune.ceiling_iterations=4",
    "finetune.eval_every=2", "finetune.log_every=1", "experiment.shots=[1, 2]", "experiment.seeds=[0]",
    "tracking.enabled=false"]


def smoke_params(sample: Path, out: Path) -> dict:
    return load_params(GPU, [f"outputs={out}", f"target.pool={sample / 'pool'}", f"target.test={sample / 'test'}",
                             f"aux.hr=[{sample / 'aux_hr'}]", *SMOKE_SIZES])


def _get(params: dict, dotted: str):
    for k in dotted.split("."):
        params = params[k]
    return params


def test_gpu_profile_is_the_city100_method_at_gpu_scale():
    gpu, city = load_params(GPU), load_params(REPO / "configs" / "city100_x2.yaml")
    for key, value in METHOD_KEYS.items():
        assert _get(gpu, key) == value, key
    for key in ("relation.similarity", "relation.fitted", "relation.tau_db", "relation.weighting"):
        assert _get(gpu, key) == _get(city, key), f"{key}: the GPU profile runs another method than the City100 table"
    assert gpu["pretrain"]["drtl_continue"] > 0 and city["pretrain"]["drtl_continue"] > 0
    assert gpu["target"] == city["target"]  # the City100 pairs `make city100` imports (001-010, 011-020)
    assert gpu["experiment"]["methods"] == city["experiment"]["methods"] and gpu["experiment"]["seeds"] == [0, 1, 2]
    assert set(gpu["experiment"]["methods"]) == set(METHOD_NAMES)  # every row of the registry
    # its data are the folders its header's `drtl data import` lines write
    header = [line for line in GPU.read_text().splitlines() if "drtl data import" in line]
    made = {line.split()[6] for line in header}
    assert set(gpu["aux"]["hr"]) | {gpu["target"]["pool"], gpu["target"]["test"]} == made
    # the smoke run changes only sizes, step counts and data paths
    smoke = {o.split("=", 1)[0] for o in SMOKE_SIZES}
    assert not any(k == m or k.startswith(m + ".") for k in smoke for m in METHOD_KEYS if m != "arch"), smoke
    assert not any(k.startswith("arch") for k in smoke)


@pytest.mark.slow
def test_gpu_profile_runs_with_tiny_budgets(tiny_sample, tmp_path, monkeypatch):
    """The whole plan of params.gpu.yaml with tiny budgets (``device: auto``: the CPU here, CUDA in
    scripts/gpu_check.sh): edsr_baseline everywhere (the relation's family experts too), the fitted
    task weighed by the experts, DRTL-Pre continuing the uniform model, checkpointed runs, every
    method in the report."""
    import drtl.orchestrate.experiment as xp
    import drtl.stages.expert as expert
    from drtl.modelio import load_model

    params = smoke_params(tiny_sample, tmp_path / "out")
    built = []
    real = expert.group_model

    def recording(pairs, weights, arch, *a, **kw):
        model = real(pairs, weights, arch, *a, **kw)
        built.append((arch["name"], type(model).__name__, sum(p.numel() for p in model.parameters())))
        return model

    monkeypatch.setattr(expert, "group_model", recording)
    xp.run_experiment(params, echo=lambda line: None)
    out = Path(params["outputs"])

    # the bank: one expert per family, once; the relation: one for the fitted task per (K, seed); all edsr_baseline
    _, baseline = load_model(out / "pretrain" / "uniform_s0" / "model.pt")
    assert baseline["arch"]["name"] == "edsr_baseline"
    assert [b[0] for b in built] == ["edsr_baseline"] * (3 + 2), built  # blur, noise, jpeg; k1, k2
    assert {b[2] for b in built} == {baseline["n_params"]}
    for key in ("k1_s0", "k2_s0"):
        rel = json.loads((out / "relation" / f"drtl_{key}" / "relation.json").read_text())
        assert set(rel["pair_relation"][key]["expert_psnr"]) == {"blur", "noise", "jpeg", "fitted"}
        assert 0 < rel["pair_relation"][key]["fitted_weight"] < 1
    # every trained model is edsr_baseline; DRTL-Pre continues the uniform model for drtl_continue steps
    models = sorted(out.glob("*/*/model.pt"))
    assert len(models) >= 10
    for path in models:
        assert load_model(path)[1]["arch"]["name"] == "edsr_baseline", path
    recipe = load_model(out / "pretrain" / "drtl_k1_s0" / "model.pt")[1]["recipe"]
    assert recipe["init"].endswith("uniform_s0/model.pt") and recipe["train"]["iterations"] == 2
    assert "fitted" in " ".join(recipe["tasks"])
    # the report holds every method at every K, above zero dB
    res = pd.read_csv(out / "reports" / "results.csv")
    assert set(res.method) == set(METHOD_NAMES) and set(res.shots) == {1, 2}
    assert (res.psnr_y > 10).all()


@pytest.mark.slow
def test_gpu_profile_data_are_made_by_its_header_commands(tmp_path):
    """The header's `drtl data import` lines, run into a scratch folder, make every folder the profile
    reads (City100 pairs 001-010 / 011-020, CBSD68 and CUrban100 HR) and `drtl validate` accepts them."""
    shared_dataset("city100-iphonex"), shared_dataset("bsd68"), shared_dataset("urban100")
    drtl = str(Path(sys.executable).with_name("drtl"))
    for line in GPU.read_text().splitlines():
        m = re.match(r"#\s+drtl data import (\S+) \.\./shared/datasets/(\S+) (\S+) (.*)$", line)
        if m:
            kind, src, dst, rest = m.groups()
            subprocess.run([drtl, "data", "import", kind, str(REPO.parent / "shared" / "datasets" / src),
                            str(tmp_path / dst), *rest.split()], check=True, capture_output=True)
    gpu = load_params(GPU)
    for folder in gpu["aux"]["hr"]:
        assert len(list((tmp_path / folder / "HR").glob("*.png"))) >= 40, folder
    r = subprocess.run([drtl, "validate", "--params", str(GPU), "-S", f"target.pool={tmp_path / gpu['target']['pool']}",
                        "-S", f"target.test={tmp_path / gpu['target']['test']}", "--out", str(tmp_path / "val")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    pool = json.loads((tmp_path / "val" / "pool.json").read_text())
    assert pool["n_pairs"] == 10, pool


@pytest.mark.slow
def test_gpu_check_runs_its_code_paths_on_the_cpu(tmp_path):
    """scripts/gpu_check.sh --cpu-smoke: the GPU check's Python part (benchmarks/bench_gpu.py) with tiny
    sizes; every phase measured against its plain PyTorch loop, bf16 reported as CUDA-only."""
    r = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--cpu-smoke", str(tmp_path)],
                       capture_output=True, text=True, env={**os.environ, "PY": sys.executable}, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert res["arch"] == "edsr_baseline" and res["check"]["weights_dtype"] == "torch.float32"
    assert res["check"]["auto_resolves_to"] == "cpu" and res["check"]["device"] == "cpu"
    for name in ("pretrain", "metatrain", "finetune"):
        row = res[name]
        assert row["drtl_fp32_steps_s"] > 0 and row["plain_fp32_steps_s"] > 0, row
        assert row["drtl_vs_plain_fp32"] == pytest.approx(row["drtl_fp32_steps_s"] / row["plain_fp32_steps_s"], rel=0.01)
        assert "CUDA-only" in row["bf16"]
    assert res["upscale"]["drtl_fp32_mp_s"] > 0 and res["upscale"]["output_mp"] == pytest.approx(32 * 24 * 4 / 1e6)
    assert "gpu_check: done" in r.stdout


def test_gpu_check_refuses_a_machine_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_gpu.py")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--cpu-smoke" in r.stderr, r.stderr
