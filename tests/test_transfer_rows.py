"""The transfer rows: meta-transfer, the equal-compute control, the ceilings' long budget,
validation splits and the positive control's data (aux.exclude, drtl data target)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
from pathlib import Path

import pytest
import torch

from drtl.cli import main
from drtl.config import load_params
from drtl.errors import ConfigError, DataError
from drtl.methods import METHODS, SOURCES, UPPER_BOUND_INITS, source_init
from drtl.plan import plan


@pytest.fixture(scope="module")
def sample(tiny_sample) -> Path:
    return tiny_sample


def _runs(**over):
    p = load_params(None, [f"{k}={v}" for k, v in over.items()])
    return {r.id: r for r in plan(p)}


def test_meta_training_starts_from_the_uniform_pretrained_model():
    runs = _runs(**{"experiment.methods": "[maml, drtl_meta, pretrain_more]", "experiment.seeds": "[0]"})
    for rid in ("metatrain/maml_s0", "metatrain/drtl_k5_s0", "pretrain/more_s0"):
        assert "pretrain/uniform_s0" in runs[rid].deps, rid
        assert runs[rid].inputs["init"] == "outputs/pretrain/uniform_s0/model.pt"
    order = list(runs)
    assert order.index("pretrain/uniform_s0") < order.index("metatrain/maml_s0")
    cold = _runs(**{"experiment.methods": "[maml]", "meta.init": "scratch"})
    assert "pretrain/uniform_s0" not in cold and "init" not in cold["metatrain/maml_s0"].inputs
    # the control always continues the uniform model; upper_bound can start from any K-free source
    assert source_init(SOURCES["pretrain_more"], {"meta": {"init": "scratch"}}) is SOURCES["pretrain_uniform"]
    assert set(UPPER_BOUND_INITS) == {"scratch", "pretrain", "maml", "pretrain_more", "uni_cont"}


def test_control_section_matches_the_meta_compute():
    from drtl.stages.train import control_section

    p = load_params(None, ["meta.inner_steps=3", "meta.support_batch=4", "meta.query_batch=2", "meta.meta_batch=5",
                           "meta.iterations=7"])
    c = control_section(p["pretrain"], p["meta"])
    assert (c["iterations"], c["tasks_per_step"], c["batch"]) == (7, 5, 3 * 4 + 2)
    assert c["lr"] == p["meta"]["lr"] and c["lr_patch"] == p["meta"]["lr_patch"]


def test_ceilings_train_every_pool_pair_with_the_long_budget(sample, tmp_path):
    from drtl.stages.train import finetune_stage

    p = load_params(None, [f"target.pool={sample / 'pool'}", "finetune.iterations=2", "finetune.ceiling_iterations=5",
                           "finetune.lr_patch=16", "finetune.batch=2", "finetune.val_fraction=0"])
    for name, steps in (("scratch_all", 5), ("scratch", 2)):
        shots = None if not METHODS[name].per_shot else 1
        finetune_stage(p, {"method": name, "shots": shots, "seed": 0}, tmp_path / name)
        hist = json.loads((tmp_path / name / "history.json").read_text())
        assert len(hist["loss"]) == steps, name
    # with validation strips the record says which step was kept
    p["finetune"]["val_fraction"] = 0.25
    m = finetune_stage(p, {"method": "scratch", "shots": 2, "seed": 0}, tmp_path / "v")
    assert 0 <= m["best_step"] <= 2 and m["steps_done"] == 2


def test_data_subset_and_target(sample, tmp_path, capsys):
    main(["data", "subset", str(sample / "pool"), str(tmp_path / "a"), "--slice", ":2"])
    main(["data", "subset", str(sample / "pool"), str(tmp_path / "b"), "--slice", "2:"])
    a = pd.read_csv(tmp_path / "a" / "manifest.csv")
    b = pd.read_csv(tmp_path / "b" / "manifest.csv")
    assert len(a) == 2 and len(b) == 2 and not set(a.name) & set(b.name)
    assert (tmp_path / "a" / a.hr_path[0]).is_file()
    with pytest.raises(DataError, match="no pairs named"):
        from drtl.data.folder import subset_folder
        subset_folder(sample / "pool", tmp_path / "c", ["nope"])
    assert not (tmp_path / "c").exists()

    main(["data", "target", "gauss_noise30", str(tmp_path / "t"), "--hr", str(sample / "test"), "--scale", "2"])
    t = pd.read_csv(tmp_path / "t" / "manifest.csv")
    assert len(t) == len(list((sample / "test" / "HR").iterdir())) and (t.scale == 2).all()
    assert main(["data", "target", "gauss_noise31", str(tmp_path / "u"), "--hr", str(sample / "test")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown target 'gauss_noise31'; did you mean gauss_noise30" in err[0] and not (tmp_path / "u").exists()


def test_aux_exclude_holds_a_task_out_of_the_bank():
    from drtl.stages.synthesize import select_tasks

    names = [t.name for t in select_tasks(None, ["clean_bicubic", "gauss_noise30", "jpeg_q30"], ["gauss_noise30"])]
    assert names == ["clean_bicubic", "jpeg_q30"]
    with pytest.raises(ConfigError):
        select_tasks(None, ["gauss_noise30"], ["gauss_noise30"])
    with pytest.raises(ConfigError, match="unknown auxiliary task"):
        select_tasks(None, None, ["nope"])


def test_headroom_ranks_families_on_a_validation_split(sample, tmp_path):
    from drtl.orchestrate.headroom import headroom

    p = load_params(None, [
        f"outputs={tmp_path}", f"target.pool={sample / 'pool'}", f"target.test={sample / 'test'}",
        f"aux.hr=[{sample / 'aux_hr'}]", "aux.tasks=[clean_bicubic, iso_blur_s2.4, gauss_noise30, jpeg_q30]",
        "relation.steps=5", "relation.lr_patch=16", "relation.eval_per_task=2", "relation.patches_per_image=2",
        "pretrain.iterations=2", "pretrain.lr_patch=16", "finetune.iterations=2", "finetune.lr_patch=16",
        "finetune.batch=2", "experiment.shots=[1]", "experiment.seeds=[0]", "threads=1",
    ])
    summary = headroom(p, echo=lambda line: None)
    df = pd.read_csv(tmp_path / "headroom" / "headroom.csv")
    assert set(df.pretrained_on) == {"uniform", "blur", "noise", "jpeg"} and (df.shots == 1).all()
    k1 = summary["k1"]
    assert k1["spread_db"] >= 0 and k1["best"] in {"blur", "noise", "jpeg"}
    assert -1 <= k1["spearman_psnr_vs_drn_weight"] <= 1
    assert json.loads((tmp_path / "headroom" / "headroom.json").read_text()) == summary

    # --groups: a subset; the pre-trained models are reused only for the same budget and bank
    jpeg = tmp_path / "pretrain" / "headroom_jpeg" / "model.pt"
    before = jpeg.stat().st_mtime_ns
    sub = headroom(p, echo=lambda line: None, groups=["uniform", "jpeg"])
    assert sub["k1"]["best"] == "jpeg" and jpeg.stat().st_mtime_ns == before
    assert set(pd.read_csv(tmp_path / "headroom" / "headroom.csv").pretrained_on) == {"uniform", "jpeg"}
    p["pretrain"]["iterations"] = 3
    only = headroom(p, echo=lambda line: None, groups=["jpeg"])["k1"]
    assert only["uniform_db"] is None and only["best"] == "jpeg"
    assert jpeg.stat().st_mtime_ns != before
    with pytest.raises(ConfigError, match="unknown nope"):
        headroom(p, echo=lambda line: None, groups=["nope"])


def test_headroom_summary_of_one_family_is_plain_json():
    from drtl.orchestrate.headroom import summarise

    df = pd.DataFrame({"pretrained_on": ["uniform", "jpeg"], "shots": [1, 1], "seed": [0, 0],
                       "psnr_y": [32.2, 32.4], "family_weight": [None, 1.0]})
    s = summarise(df)["k1"]
    assert (s["best"], s["spread_db"], s["spearman_psnr_vs_drn_weight"]) == ("jpeg", 0.0, None)
    json.loads(json.dumps(summarise(df)), parse_constant=lambda c: pytest.fail(f"{c} in headroom.json"))


def _fingerprints(**over):
    from drtl.orchestrate.experiment import run_fingerprint

    p = load_params(None, [f"{k}={v}" for k, v in over.items()])
    runs = plan(p)
    outs, done = {r.id: r.out for r in runs}, {}
    for r in runs:
        done[r.id] = run_fingerprint(r, p, done, outs)
    return done


def test_a_run_is_keyed_by_the_params_its_variant_reads():
    """Changing the meta-training re-runs MAML, DRTL-Meta and the equal-compute control, not the uniform
    pre-training (nor the rows fine-tuned from it); DRTL-Pre's continuation re-runs DRTL-Pre only."""
    base = {"experiment.methods": "[pretrain, maml, drtl_pre, drtl_meta, pretrain_more]", "experiment.seeds": "[0]",
            "pretrain.drtl_continue": "5"}
    a = _fingerprints(**base)
    meta = _fingerprints(**{**base, "meta.iterations": "7"})
    cont = _fingerprints(**{**base, "pretrain.drtl_continue": "9"})
    same = lambda b: {k for k in a if a[k] == b[k]}  # noqa: E731
    assert {"pretrain/uniform_s0", "finetune/pretrain_k5_s0", "pretrain/drtl_k5_s0"} <= same(meta)
    assert not {"metatrain/maml_s0", "metatrain/drtl_k5_s0", "pretrain/more_s0", "finetune/maml_k5_s0"} & same(meta)
    assert {"pretrain/uniform_s0", "metatrain/maml_s0", "pretrain/more_s0"} <= same(cont)
    assert not {"pretrain/drtl_k5_s0", "finetune/drtl_pre_k5_s0"} & same(cont)
    assert _fingerprints(**{**base, "pretrain.iterations": "11"})["pretrain/uniform_s0"] != a["pretrain/uniform_s0"]


def test_a_run_is_keyed_by_content_not_by_how_its_paths_are_spelled(tiny_sample, tmp_path, monkeypatch):
    """The same data folders named relative or absolute, through `..`, and another outputs root give
    every run the same key; a changed pool file changes the keys of the runs that read the pool."""
    monkeypatch.chdir(tiny_sample.parent)
    rel = tiny_sample.name
    spellings = [
        {"target.pool": f"{tiny_sample}/pool", "target.test": f"{tiny_sample}/test", "aux.hr": f"[{tiny_sample}/aux_hr]",
         "outputs": str(tmp_path / "a")},
        {"target.pool": f"{rel}/pool", "target.test": f"{rel}/../{rel}/test", "aux.hr": f"[./{rel}/aux_hr]",
         "outputs": "b"},
    ]
    base = {"experiment.methods": "[bicubic, scratch, pretrain, drtl_pre]", "experiment.seeds": "[0]"}
    a, b = (_fingerprints(**base, **s) for s in spellings)
    assert a == b and len(a) > 10
    pool = tmp_path / "pool"
    shutil.copytree(tiny_sample / "pool", pool)
    (pool / "manifest.csv").write_text((pool / "manifest.csv").read_text() + "\n")  # other content, same names
    c = _fingerprints(**base, **{**spellings[0], "target.pool": str(pool)})
    changed = {k for k in a if a[k] != c[k]}
    assert {"finetune/scratch_k5_s0", "relation/drtl_k5_s0", "validate/validate"} <= changed
    assert "bank/bank" not in changed and "synthesize/synth" not in changed  # camera-free
    assert "evaluate/bicubic_s0" not in changed  # it reads only the test pairs
