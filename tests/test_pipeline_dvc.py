"""The DVC pipeline (dvc.yaml, params.yaml, data.dvc, the offline remote) end to end.

The end-to-end test reads the session's one ``dvc repro`` of the tiny profile (``tiny_dvc`` in
tests/conftest.py, a scratch repository of tests/dvcrepo.py) and goes on from it: a no-op repro,
the plots, and an experiment that changes one fine-tuning param.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml

from drtl.config import DEFAULTS, load_params
from drtl.methods import METHOD_NAMES as METHODS
from tests.conftest import TINY, TINY_DVC_TRACKING
from tests.dvcrepo import DVC, REPO, dvc, git, make_copy, ran, skipped

needs_dvc = pytest.mark.skipif(not DVC.exists(), reason=f"{DVC} is absent")


def test_one_profile_system():
    """drtl.config.DEFAULTS is the default profile; params.yaml writes it out in full (DVC tracks only
    the keys of that file); every other profile is an overlay holding only what it changes."""
    from drtl.orchestrate.adapt import ADAPT_PROFILE

    def keys(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict) and (prefix + k) not in ("relation.drn", "arch"):
                out.update(keys(v, f"{prefix}{k}."))
            else:
                out[prefix + k] = v
        return out

    full = keys(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert set(full) == set(keys(DEFAULTS)), "params.yaml must hold every key of DEFAULTS"
    assert load_params(REPO / "params.yaml") == load_params(None), \
        "params.yaml differs from drtl.config.DEFAULTS: change the default there, then write both"
    defaults = keys(load_params(None))
    overlays = [REPO / "params.gpu.yaml", ADAPT_PROFILE, *sorted((REPO / "configs").glob("*.yaml"))]
    for path in overlays:
        raw = keys(yaml.safe_load(path.read_text()))
        resolved = keys(load_params(path))
        same = sorted(k for k in raw if resolved[k] == defaults[k])
        assert not same, f"{path.name} repeats the defaults of {same}: an overlay holds only what it changes"
    gpu = load_params(REPO / "params.gpu.yaml")
    assert gpu["arch"]["name"] == "edsr_baseline" and gpu["device"] == "auto"
    assert 48 <= gpu["finetune"]["lr_patch"] <= 64 and gpu["pretrain"]["iterations"] >= 1000
    cpu = load_params(REPO / "params.yaml")
    assert cpu["experiment"]["shots"] == [1, 5, 10] and cpu["experiment"]["seeds"] == [0]  # 10-minute profile
    core = {"bicubic", "scratch", "pretrain", "maml", "drtl_pre", "drtl_meta", "upper_bound", "scratch_all"}
    assert core <= set(cpu["experiment"]["methods"]) <= set(METHODS)
    assert sorted(gpu["experiment"]["methods"]) == sorted(METHODS)


def test_drtl_params_writes_a_profile_in_full(tmp_path, capsys):
    """`drtl params --params OVERLAY --out F` gives the file DVC needs: every key, the overlay's values."""
    from drtl.cli import main

    out = tmp_path / "params.yaml"
    assert main(["params", "--params", str(REPO / "params.gpu.yaml"), "-S", "experiment.seeds=[4]",
                 "--out", str(out)]) == 0
    written = yaml.safe_load(out.read_text())
    assert load_params(out) == load_params(REPO / "params.gpu.yaml", ["experiment.seeds=[4]"])
    assert set(written) == set(DEFAULTS) and set(written["finetune"]) == set(DEFAULTS["finetune"])
    assert main(["params", "-S", "finetune.iters=3", "--out", str(out)]) == 2  # a bad key leaves the file as it was
    assert yaml.safe_load(out.read_text()) == written


def test_committed_dvc_remote_stays_small():
    remote = sum(f.stat().st_size for f in (REPO / "dvc-remote").rglob("*") if f.is_file())
    assert remote < 4 * 2**20, f"the committed DVC remote grew to {remote / 2**20:.1f} MiB"


def test_committed_dvc_yaml_is_the_plan_and_deps_are_derived():
    """dvc.yaml is generated from the plan (`drtl dvc check`), and each stage depends on the code it
    really runs: the files hand-written lists used to miss are there."""
    from drtl.orchestrate import dvcgen

    params = load_params(REPO / "params.yaml")
    dvcgen.check(params, REPO / "dvc.yaml")
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert "drtl/stages/relation.py" in stages["relation_drtl"]["deps"]
    assert "drtl/stages/bank.py" in stages["bank"]["deps"] and "${target.pool}" not in stages["bank"]["deps"]
    assert "drtl/stages/synthesize.py" in stages["synthesize"]["deps"]
    for st in ("finetune_scratch", "evaluate_drtl_pre", "relation_drtl", "bank"):
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
def test_dvc_repro_end_to_end(tiny_dvc):
    root = tiny_dvc.root
    # fresh clone: the sample came from the in-repo remote, offline
    assert len(list((root / "data" / "sample" / "pool" / "LR").glob("*.png"))) == 12

    dag = dvc(root, "dag", "--dot").stdout
    for a, b in [("data.dvc", "validate"), ("validate", "synthesize"), ("synthesize", "bank"),
                 ("bank", "relation_drtl@1-0"), ("relation_drtl@1-0", "pretrain_drtl@1-0"),
                 ("relation_drtl@2-0", "metatrain_drtl@2-0"),
                 ("pretrain_uniform@0", "finetune_pretrain@1-0"), ("metatrain_maml@0", "finetune_maml@2-0"),
                 ("pretrain_drtl@1-0", "finetune_drtl_pre@1-0"), ("metatrain_drtl@1-0", "finetune_drtl_meta@1-0"),
                 ("finetune_drtl_pre@2-0", "evaluate_drtl_pre@2-0"), ("evaluate_drtl_pre@1-0", "report"),
                 ("evaluate_bicubic@0", "report"), ("evaluate_upper_bound@0", "report"), ("report", "track")]:
        assert re.search(rf'"{re.escape(a)}"\s*->\s*"{re.escape(b)}"', dag), f"no edge {a} -> {b}"
    assert not re.search(r'"relation_drtl@1-0"\s*->\s*"pretrain_uniform@0"', dag)  # uniform ignores the relations
    assert not re.search(r'"relation_drtl@1-0"\s*->\s*"pretrain_drtl@2-0"', dag)  # one K's relation, one K's runs

    stages = ran(tiny_dvc.first)
    assert {"validate", "synthesize", "bank", "relation_drtl@1-0", "pretrain_uniform@0", "metatrain_maml@0", "report", "track",
            "finetune_upper_bound@0", "evaluate_bicubic@0", "evaluate_drtl_meta@2-0"} <= stages
    # 8 methods, K in {1, 2}, seed 0: 6 sources (uniform, MAML, DRTL-Pre and DRTL-Meta per K),
    # 12 fine-tunings (5 K-dependent methods x 2 + upper_bound + scratch_all), 13 evaluations
    # (those 12 + bicubic), a relation per K and validate, synthesize, bank, report, track
    assert len(stages) == 38, sorted(stages)
    df = pd.read_csv(root / "reports" / "results.csv")
    assert list(df.columns) == ["method", "shots", "seed", "psnr_y", "ssim_y"]
    assert sorted(set(df.method)) == sorted(load_params(TINY)["experiment"]["methods"])
    assert set(df.shots) == {1, 2}  # K-independent rows (evaluated once per seed) are repeated for each K
    bic = float(df[df.method == "bicubic"].psnr_y.iloc[0])
    assert (abs(df.psnr_y - bic) < 1.0).all() and df.ssim_y.between(0, 1).all()  # against the same run's bicubic
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    assert set(metrics) == {"k1", "k2"} and metrics["k1"]["drtl_row"] in ("drtl_pre", "drtl_meta")
    assert metrics["k1"]["drtl_minus_twin"] == pytest.approx(metrics["k1"]["drtl"] - metrics["k1"]["twin"], abs=1e-3)
    shown = dvc(root, "metrics", "show").stdout
    assert "k1.drtl_minus_twin" in shown and "psnr_y" not in shown  # a few columns, not one per row of the table
    assert (root / "reports" / "psnr_vs_shots.png").read_bytes()[:4] == b"\x89PNG"
    assert (root / "outputs" / "relation" / "drtl_k1_s0" / "graphs" / "k1_s0" / "weights.png").is_file()
    assert json.loads((root / "outputs" / "validate" / "pool.json").read_text())["success"] is True
    rec = json.loads((root / "outputs" / "finetune" / "drtl_pre_k1_s0" / "run.json").read_text())
    assert rec["identity"] == {"method": "drtl_pre", "shots": 1, "seed": 0} and "final_loss" in rec["metrics"]
    assert rec["provenance"]["git_commit"] != "unknown"
    _check_tracked(root, n_stage_runs=len(stages))

    # nothing changed: nothing runs
    again = dvc(root, "repro")
    assert ran(again) == set()
    assert "Data and pipelines are up to date" in again.stdout
    assert "report" in skipped(again) and "relation_drtl@1-0" in skipped(again) and "bank" in skipped(again)

    # plots read back through DVC (the custom error-bar template and the relation-weight images)
    plots = json.loads(dvc(root, "plots", "show", "--json").stdout)
    flat = json.dumps(plots)
    assert "reports/aggregate.csv" in flat and "psnr_vs_shots.png" in flat and "weights.png" in flat
    assert "psnr_std" in flat  # the error-bar template receives the std column

    # commit the results, then an experiment that changes only a fine-tuning param
    git(root, "add", "-A")
    git(root, "commit", "-qm", "results")
    exp = dvc(root, "exp", "run", "-S", f"finetune.iterations={load_params(TINY)['finetune']['iterations'] + 1}")
    redone = ran(exp)
    assert redone, exp.stdout[-3000:]
    assert all(s.startswith(("finetune_", "evaluate_", "report", "track")) for s in redone), redone
    assert {f"finetune_{m}@{k}-0" for m in ("scratch", "pretrain", "maml", "drtl_pre", "drtl_meta")
            for k in (1, 2)} <= redone
    assert {"report", "evaluate_scratch@1-0", "finetune_upper_bound@0"} <= redone
    assert not redone & {"validate", "synthesize", "bank", "relation_drtl@1-0", "pretrain_uniform@0", "pretrain_drtl@1-0",
                         "metatrain_maml@0", "metatrain_drtl@1-0", "evaluate_bicubic@0"}
    shown = json.dumps(json.loads(dvc(root, "exp", "show", "--json").stdout))
    assert f'"iterations": {load_params(TINY)["finetune"]["iterations"] + 1}' in shown
    assert '"k1": {"drtl_row": ' in shown

    # ablations touch only what reads them (`dvc status`: the stages whose own deps or params changed;
    # then everything downstream of them in the DAG): a relation temperature -> the relation runs
    # and the weighted runs after them; a key the profile's similarity does not read (drn: tau_db)
    # -> nothing; one more K -> that K's runs (and the report, which lists the shots)
    weighted = ("relation_drtl@", "pretrain_drtl@", "metatrain_drtl@", "finetune_drtl_pre@", "finetune_drtl_meta@",
                "evaluate_drtl_pre@", "evaluate_drtl_meta@")
    changed = status_after(root, "relation.tau=0.2")
    assert changed == {"relation_drtl@1-0", "relation_drtl@2-0"}, sorted(changed)
    assert touched(root, changed) == {f"{g}{k}-0" for g in weighted for k in (1, 2)} | {"report", "track"}
    assert status_after(root, "relation.tau_db=0.2") == set()
    more = status_after(root, "experiment.shots=[1, 2, 3]")
    assert "relation_drtl@3-0" in more and "pretrain_uniform@0" not in more
    assert all(s.endswith("@3-0") for s in touched(root, more) - {"report", "track"}), sorted(touched(root, more))


def status_after(root, override: str) -> set[str]:
    """The stages `dvc status` lists as changed with ``override`` (key=YAML value) in params.yaml
    (put back afterwards)."""
    f = root / "params.yaml"
    before = f.read_text()
    key, value = override.split("=", 1)
    p = yaml.safe_load(before)
    *sec, last = key.split(".")
    d = p
    for k in sec:
        d = d[k]
    d[last] = yaml.safe_load(value)
    try:
        f.write_text(yaml.safe_dump(p, sort_keys=False))
        out = json.loads(dvc(root, "status", "--json").stdout or "{}")
    finally:
        f.write_text(before)
    return {k.split(":")[-1] for k in out if k not in ("track",) and not k.endswith(".dvc")}


def touched(root, changed: set[str]) -> set[str]:
    """``changed`` and every stage downstream of them in `dvc dag` (what `dvc repro` re-runs when
    their outputs change)."""
    edges = re.findall(r'"([^"]+)"\s*->\s*"([^"]+)"', dvc(root, "dag", "--dot").stdout)
    out, todo = set(changed), list(changed)
    while todo:
        node = todo.pop()
        for a, b in edges:
            if a == node and b not in out:
                out.add(b)
                todo.append(b)
    return out


def _check_tracked(root, n_stage_runs: int) -> None:
    """The `track` stage logged one parent run with a child per stage run (MLflow, SQLite store)."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name(TINY_DVC_TRACKING["experiment"])
    assert exp is not None, "no MLflow experiment: the track stage did not log"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("drtl.role") == "pipeline"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    assert len(children) == n_stage_runs - 2  # every stage run but the report (logged onto the parent) and track
    ev = [r for r in children if r.data.params.get("stage") == "evaluate" and r.data.params.get("method") == "drtl_pre"]
    assert ev and "psnr_y" in ev[0].data.metrics and "seed" not in ev[0].data.metrics


@needs_dvc
@pytest.mark.slow
def test_failed_validation_stops_the_pipeline(tmp_path):
    root = make_copy(tmp_path / "repo", params=load_params(TINY))
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


def test_the_lock_holds_only_the_stages_of_dvc_yaml(tmp_path):
    """A matrix entry of a seed no longer swept is refused by the check and pruned by generate,
    leaving every other line of the lock as DVC wrote it."""
    from drtl.errors import ConfigError
    from drtl.orchestrate import dvcgen

    params = load_params(REPO / "params.yaml")
    dvcgen.write(params, tmp_path / "dvc.yaml")
    lock = (REPO / "dvc.lock").read_text()
    assert not dvcgen.stale_lock_stages(params, REPO / "dvc.yaml")  # the committed lock is clean
    entry = lock.split("\n  evaluate_bicubic@0:\n", 1)[1].split("\n  ", 1)[0]
    stale = "  evaluate_bicubic@7:\n" + entry + "\n"
    at = lock.index("  evaluate_bicubic@0:\n")
    (tmp_path / "dvc.lock").write_text(lock[:at] + stale + lock[at:])
    with pytest.raises(ConfigError, match=r"holds 1 stage\(s\) that dvc.yaml does not have \(evaluate_bicubic@7\)"):
        dvcgen.check(params, tmp_path / "dvc.yaml")
    assert dvcgen.prune_lock(params, tmp_path / "dvc.yaml") == ["evaluate_bicubic@7"]
    assert (tmp_path / "dvc.lock").read_text() == lock
    dvcgen.check(params, tmp_path / "dvc.yaml")
    # with seed 7 in the sweep the same entry is not stale
    seven = load_params(REPO / "params.yaml", ["experiment.seeds=[0, 7]"])
    assert "evaluate_bicubic@7" in dvcgen.stage_names(seven, (tmp_path / "dvc.yaml").read_text())
