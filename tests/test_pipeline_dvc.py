"""The DVC pipeline (dvc.yaml, params.yaml, data.dvc, the offline remote) end to end.

Each test works in a temporary copy of the repository's pipeline files (dvc.yaml, params.yaml with
a tiny profile written into the copy, data.dvc, dvc-remote/, .dvc/config and plot template, and the
drtl/ sources that stages declare as dependencies), made a git repository, with HOME/XDG in tmp,
no analytics and no network. DVC runs the real `drtl` CLI of this environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from drtl.config import DEFAULTS, load_params
from drtl.methods import METHOD_NAMES as METHODS

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DVC = BIN / "dvc"

TINY = {
    "aux": {"tasks": ["clean_bicubic", "iso_blur_s2.4", "gauss_noise30", "jpeg_q30"]},
    "relation": {"steps": 10, "lr_patch": 16, "eval_per_task": 4, "patches_per_image": 4, "batch_per_task": 2},
    "pretrain": {"iterations": 3, "lr_patch": 16},
    "meta": {"iterations": 2, "lr_patch": 16},
    "finetune": {"iterations": 3, "lr_patch": 16, "batch": 4, "ceiling_iterations": 4},
    "experiment": {"shots": [1], "seeds": [0]},
    "threads": 1,
    "tracking": {"enabled": True, "experiment": "drtl-dvc-test"},
}


def _deep_update(d: dict, over: dict) -> dict:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            _deep_update(d[k], v)
        else:
            d[k] = v
    return d


def make_copy(dest: Path, tiny: bool = True, params_file: Path | None = None) -> Path:
    """A git repository at ``dest`` with the pipeline files; params.yaml = ``params_file`` when
    given, else the repository's (with the TINY overlay when ``tiny``)."""
    dest.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", "data.dvc", ".dvcignore"):
        shutil.copy2(REPO / name, dest / name)
    if params_file is not None:
        shutil.copy2(params_file, dest / "params.yaml")
        tiny = False
    shutil.copytree(REPO / "dvc-remote", dest / "dvc-remote")
    (dest / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy2(REPO / ".dvc" / name, dest / ".dvc" / name)
    shutil.copytree(REPO / ".dvc" / "plots", dest / ".dvc" / "plots")
    shutil.copytree(REPO / "drtl", dest / "drtl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if tiny:
        p = yaml.safe_load((dest / "params.yaml").read_text())
        (dest / "params.yaml").write_text(yaml.safe_dump(_deep_update(p, TINY), sort_keys=False))
    (dest / ".gitignore").write_text("/data/\n/outputs/\n/reports/\n/mlflow.db\n/mlruns/\n")
    env = _env(dest)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "pipeline copy"]):
        subprocess.run(cmd, cwd=dest, env=env, check=True, capture_output=True)
    return dest


def _env(root: Path) -> dict:
    home = root.parent / f"{root.name}-home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "DRTL_PIPELINE", "MLFLOW_"))}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local"), "DVC_NO_ANALYTICS": "1", "DRTL_PROGRESS": "0",
        "GX_ANALYTICS_ENABLED": "False", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
        # tiny tensors on a shared 2-core machine: one thread each avoids oversubscription stalls
        "OMP_NUM_THREADS": "1",
    })
    return env


def dvc(root: Path, *args: str, ok: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    out = subprocess.run([str(DVC), *args], cwd=root, env=_env(root), capture_output=True, text=True,
                         timeout=timeout)
    if ok:
        assert out.returncode == 0, f"dvc {' '.join(args)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out


def ran(out: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out.stdout + out.stderr))


def skipped(out: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"Stage '([^']+)' didn't change, skipping", out.stdout + out.stderr))


needs_dvc = pytest.mark.skipif(not DVC.exists(), reason=f"{DVC} is absent")


def test_params_files_mirror_defaults():
    """params.yaml and params.gpu.yaml hold every key of drtl.config.DEFAULTS and load cleanly."""

    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            if isinstance(v, dict) and (prefix + k) not in ("relation.drn", "arch"):
                out |= keys(v, f"{prefix}{k}.")
            else:
                out.add(prefix + k)
        return out

    for name in ("params.yaml", "params.gpu.yaml"):
        raw = yaml.safe_load((REPO / name).read_text())
        assert keys(raw) == keys(DEFAULTS), name
        load_params(REPO / name)
    gpu = load_params(REPO / "params.gpu.yaml")
    assert gpu["arch"]["name"] == "edsr_baseline" and gpu["device"] == "auto"
    assert 48 <= gpu["finetune"]["lr_patch"] <= 64 and gpu["pretrain"]["iterations"] >= 1000
    cpu = load_params(REPO / "params.yaml")
    assert cpu["experiment"]["shots"] == [1, 5, 10] and cpu["experiment"]["seeds"] == [0]  # 10-minute profile
    core = {"bicubic", "scratch", "pretrain", "maml", "drtl_pre", "drtl_meta", "upper_bound", "scratch_all"}
    assert core <= set(cpu["experiment"]["methods"]) <= set(METHODS)
    assert sorted(gpu["experiment"]["methods"]) == sorted(METHODS)
    remote = sum(f.stat().st_size for f in (REPO / "dvc-remote").rglob("*") if f.is_file())
    assert remote < 4 * 2**20, f"the committed DVC remote grew to {remote / 2**20:.1f} MiB"


def test_committed_dvc_yaml_is_the_plan_and_deps_are_derived():
    """dvc.yaml is generated from the plan (`drtl dvc check`), and each stage depends on the code it
    really runs: the files hand-written lists used to miss are there."""
    from drtl.orchestrate import dvcgen

    params = load_params(REPO / "params.yaml")
    dvcgen.check(params, REPO / "dvc.yaml")
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert "drtl/stages/relation.py" in stages["relation"]["deps"]
    assert "drtl/stages/synthesize.py" in stages["synthesize"]["deps"]
    for st in ("finetune_scratch", "evaluate_drtl_pre", "relation"):
        assert {"drtl/data", "drtl/io.py"} <= set(stages[st]["deps"]), st  # subpackages as folders
    assert not any(d.startswith(("drtl/cli.py", "components", "pipelines")) for st in stages.values()
                   for d in st.get("deps", []))
    # one stage group per method of the params (methods come from the registry, not a hand list)
    assert {f"evaluate_{m}" for m in params["experiment"]["methods"]} <= set(stages)
    # a stale file is refused
    bad = json.loads(json.dumps(params))
    bad["experiment"]["methods"] = ["bicubic", "scratch"]
    with pytest.raises(Exception, match="differs from the plan"):
        dvcgen.check(bad, REPO / "dvc.yaml")


@needs_dvc
@pytest.mark.slow
def test_dvc_repro_end_to_end(tmp_path):
    root = make_copy(tmp_path / "repo")

    # fresh clone: the sample comes from the in-repo remote, offline
    dvc(root, "pull", "data.dvc")
    assert len(list((root / "data" / "sample" / "pool" / "LR").glob("*.png"))) == 12

    dag = dvc(root, "dag", "--dot").stdout
    for a, b in [("data.dvc", "validate"), ("validate", "synthesize"), ("synthesize", "relation"),
                 ("relation", "pretrain_drtl@1-0"), ("relation", "metatrain_drtl@1-0"),
                 ("pretrain_uniform@0", "finetune_pretrain@1-0"), ("metatrain_maml@0", "finetune_maml@1-0"),
                 ("pretrain_drtl@1-0", "finetune_drtl_pre@1-0"), ("metatrain_drtl@1-0", "finetune_drtl_meta@1-0"),
                 ("finetune_drtl_pre@1-0", "evaluate_drtl_pre@1-0"), ("evaluate_drtl_pre@1-0", "report"),
                 ("evaluate_bicubic@0", "report"), ("evaluate_upper_bound@0", "report"), ("report", "track")]:
        assert re.search(rf'"{re.escape(a)}"\s*->\s*"{re.escape(b)}"', dag), f"no edge {a} -> {b}"
    assert not re.search(r'"relation"\s*->\s*"pretrain_uniform@0"', dag)  # uniform ignores the relations

    first = dvc(root, "repro")
    stages = ran(first)
    assert {"validate", "synthesize", "relation", "pretrain_uniform@0", "metatrain_maml@0", "report", "track",
            "finetune_upper_bound@0", "evaluate_bicubic@0", "evaluate_drtl_meta@1-0"} <= stages
    assert len(stages) == 24, sorted(stages)  # 8 methods: 4 sources, 7 fine-tunings, 8 evaluations, 5 others
    df = pd.read_csv(root / "reports" / "results.csv")
    assert list(df.columns) == ["method", "shots", "seed", "psnr_y", "ssim_y"]
    assert sorted(set(df.method)) == sorted(load_params(REPO / "params.yaml")["experiment"]["methods"])
    assert (df.shots == 1).all()  # K-independent rows (evaluated once per seed) are repeated for K = 1
    bic = float(df[df.method == "bicubic"].psnr_y.iloc[0])
    assert (abs(df.psnr_y - bic) < 1.0).all() and df.ssim_y.between(0, 1).all()  # against the same run's bicubic
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    assert set(metrics["drtl_pre"]["k1"]["psnr_y"]) == {"mean", "std", "n"} and "ssim_y" in metrics["drtl_pre"]["k1"]
    assert (root / "reports" / "psnr_vs_shots.png").read_bytes()[:4] == b"\x89PNG"
    assert (root / "outputs" / "relation" / "graphs" / "k1_s0" / "weights.png").is_file()
    assert json.loads((root / "outputs" / "validate" / "pool.json").read_text())["success"] is True
    rec = json.loads((root / "outputs" / "finetune" / "drtl_pre_k1_s0" / "run.json").read_text())
    assert rec["identity"] == {"method": "drtl_pre", "shots": 1, "seed": 0} and "final_loss" in rec["metrics"]
    assert rec["provenance"]["git_commit"] != "unknown"
    _check_tracked(root)

    # nothing changed: nothing runs
    again = dvc(root, "repro")
    assert ran(again) == set()
    assert "Data and pipelines are up to date" in again.stdout
    assert "report" in skipped(again) and "relation" in skipped(again)

    # plots read back through DVC (the custom error-bar template and the relation-weight images)
    plots = json.loads(dvc(root, "plots", "show", "--json").stdout)
    flat = json.dumps(plots)
    assert "reports/aggregate.csv" in flat and "psnr_vs_shots.png" in flat and "weights.png" in flat
    assert "psnr_std" in flat  # the error-bar template receives the std column

    # commit the results, then an experiment that changes only a fine-tuning param
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "results"]):
        subprocess.run(cmd, cwd=root, env=_env(root), check=True, capture_output=True)
    exp = dvc(root, "exp", "run", "-S", "finetune.iterations=4")
    redone = ran(exp)
    assert redone, exp.stdout[-3000:]
    assert all(s.startswith(("finetune_", "evaluate_", "report", "track")) for s in redone), redone
    assert {f"finetune_{m}@1-0" for m in ("scratch", "pretrain", "maml", "drtl_pre", "drtl_meta")} <= redone
    assert {"report", "evaluate_scratch@1-0", "finetune_upper_bound@0"} <= redone
    assert not redone & {"validate", "synthesize", "relation", "pretrain_uniform@0", "pretrain_drtl@1-0",
                         "metatrain_maml@0", "metatrain_drtl@1-0", "evaluate_bicubic@0"}
    shown = json.dumps(json.loads(dvc(root, "exp", "show", "--json").stdout))
    assert '"iterations": 4' in shown and '"drtl_pre": {"k1": {"psnr_y": {"mean": ' in shown


def _check_tracked(root: Path) -> None:
    """The `track` stage logged one parent run with a child per stage run (MLflow, SQLite store)."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name(TINY["tracking"]["experiment"])
    assert exp is not None, "no MLflow experiment: the track stage did not log"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("drtl.role") == "pipeline"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    assert len(children) == 22  # every stage run but the report (logged onto the parent) and track itself
    ev = [r for r in children if r.data.params.get("stage") == "evaluate" and r.data.params.get("method") == "drtl_pre"]
    assert ev and "psnr_y" in ev[0].data.metrics and "seed" not in ev[0].data.metrics


@needs_dvc
@pytest.mark.slow
def test_failed_validation_stops_the_pipeline(tmp_path):
    root = make_copy(tmp_path / "repo")
    dvc(root, "pull", "data.dvc")
    lr = sorted((root / "data" / "sample" / "pool" / "LR").glob("*.png"))[0]
    lr.chmod(0o644)
    lr.write_bytes(lr.read_bytes()[:100])  # a truncated PNG in the few-shot pool
    out = dvc(root, "repro", ok=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "failed to reproduce 'validate'" in text
    assert "lr_decodes" in text and lr.name in text  # the failing expectation and the file
    assert ran(out) == {"validate"}
    assert not (root / "outputs" / "synth").exists()  # no synthesis, no training
