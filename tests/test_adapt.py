"""`drtl adapt` end to end on a tiny camera (the sample pool: 4 pairs, K=2) with a tiny budget."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

TASKS = "[clean_bicubic,iso_blur_s1.6,gauss_noise15,jpeg_q30]"


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    from drtl.data.sample import make_sample

    root = tmp_path_factory.mktemp("sample")
    make_sample(root, scale=2, seed=0, hr_size=64, pool_size=4, test_size=2, aux_crops=1, aux_size=96)
    return root


def tiny(sample: Path) -> list[str]:
    return [f"aux.hr=[{sample / 'aux_hr'}]", f"aux.tasks={TASKS}",
            "relation.steps=10", "relation.lr_patch=16", "relation.eval_per_task=4", "relation.patches_per_image=4",
            "pretrain.iterations=4", "pretrain.lr_patch=16", "pretrain.checkpoint_every=2",
            "finetune.iterations=4", "finetune.lr_patch=16", "finetune.batch=4", "finetune.checkpoint_every=2",
            "threads=1"]


@pytest.fixture(scope="module")
def cold(sample, tmp_path_factory):
    """One cold run (empty aux cache); returns (out, cache, summary, echoed lines)."""
    from drtl.stages.adapt import adapt, adapt_params

    base = tmp_path_factory.mktemp("adapt")
    out, cache = base / "cam", base / "cache"
    lines: list[str] = []
    s = adapt(sample / "pool", 2, 2, out, adapt_params(None, tiny(sample)), seed=0, aux_cache=cache, echo=lines.append)
    return out, cache, s, lines


def _entry(cache: Path) -> Path:
    entries = [p for p in cache.iterdir() if not p.name.startswith(".") and p.name != "sample"]
    assert len(entries) == 1, entries
    return entries[0]


def test_cold_run_outputs(cold):
    from drtl.modelio import load_model

    out, cache, s, lines = cold
    model, meta = load_model(out / "model.pt", expect_scale=2)
    assert meta["recipe"]["adapt"]["shots"] == 2 and meta["recipe"]["method"] == "drtl_pre"
    assert sorted(meta["recipe"]["pairs"]) == sorted(s["shot_names"])  # fine-tuned on exactly the K shots
    assert sorted(s["shot_names"] + s["rest_names"]) == sorted(p.stem for p in (out / "data" / "all" / "HR").iterdir())
    assert not set(s["shot_names"]) & set(s["rest_names"])
    assert s["aux_cache"]["hit"] is False and s["aux_cache"]["drn_trained"] is True
    table = pd.read_csv(out / "relation" / "ranking.csv")
    assert len(table) == 4 and abs(table["weight"].sum() - 1.0) < 1e-6
    assert list(table["weight"]) == sorted(table["weight"], reverse=True)
    for f in ("weights.png", "weights.json", "graph.json", "graph.graphml"):
        assert (out / "relation" / f).is_file(), f
    md = (out / "summary.md").read_text()
    assert "PSNR" in md and "bicubic" in md and "drtl upscale" in md
    for task in table["task"].head(3):
        assert f"`{task}`" in md
    ev = s["eval"]
    assert ev["n_pairs"] == 2 and ev["model"]["psnr_y"] > 20 and ev["bicubic"]["psnr_y"] > 20
    assert json.loads((out / "summary.json").read_text())["eval"] == ev
    assert any("aux cache miss" in line for line in lines) and any("PSNR-Y" in line for line in lines)
    entry = _entry(cache)
    assert (entry / "drn" / "drn.pt").is_file() and (entry / "synth" / "synth.json").is_file()


def test_warm_run_reuses_the_aux_cache(cold, sample, tmp_path, capsys):
    """A second camera folder with the same cache: no synthesis, no DRN training (files untouched);
    through the CLI entry point, with MLflow tracking on when drtl.tracking is present."""
    from drtl.stages.adapt import main

    out1, cache, s1, _ = cold
    entry = _entry(cache)
    stamp = {p: p.stat().st_mtime_ns for p in (entry / "drn" / "drn.pt", entry / "synth" / "synth.json",
                                              entry / "complete.json")}
    out2 = tmp_path / "cam2"
    db = tmp_path / "mlflow.db"
    track = []
    try:
        import drtl.tracking  # noqa: F401
        import mlflow  # noqa: F401

        track = ["-S", "tracking.enabled=true", "-S", f"tracking.uri=sqlite:///{db}"]
    except ImportError:
        pass
    argv = ["--pairs", str(sample / "pool"), "--scale", "2", "--shots", "2", "--out", str(out2),
            "--aux-cache", str(cache)] + [x for o in tiny(sample) for x in ("-S", o)] + track
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "aux cache hit" in printed and "PSNR-Y" in printed
    s2 = json.loads((out2 / "summary.json").read_text())
    assert s2["aux_cache"]["hit"] is True and s2["aux_cache"]["drn_trained"] is False
    assert s2["aux_cache"]["fingerprint"] == s1["aux_cache"]["fingerprint"]
    assert "synthesize" not in s2["timings_s"] and "drn" not in s2["timings_s"]
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    # same camera, same shots, same DRN: the same relation weights
    assert json.loads((out2 / "relation" / "weights.json").read_text()) == \
        json.loads((out1 / "relation" / "weights.json").read_text())
    if track:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{db}")
        exp = client.get_experiment_by_name("drtl")
        runs = client.search_runs([exp.experiment_id], "tags.stage = 'adapt'")
        assert len(runs) == 1 and "psnr_y" in runs[0].data.metrics


def test_target_only_params_share_the_cache_and_uniform_pretrain_is_reused(cold, sample, tmp_path):
    from drtl.stages.adapt import adapt, adapt_params

    _, cache, s1, _ = cold
    p = adapt_params(None, tiny(sample) + ["relation.weighting=false", "relation.tau=0.2"])
    a = adapt(sample / "pool", 2, 2, tmp_path / "u1", p, aux_cache=cache, echo=lambda _: None)
    b = adapt(sample / "pool", 2, 2, tmp_path / "u2", p, aux_cache=cache, echo=lambda _: None)
    assert a["aux_cache"]["hit"] and a["aux_cache"]["fingerprint"] == s1["aux_cache"]["fingerprint"]
    assert a["method"] == "pretrain" and a["uniform_pretrain_cache_hit"] is False
    assert b["uniform_pretrain_cache_hit"] is True and not (tmp_path / "u2" / "pretrain").exists()
    w = json.loads((tmp_path / "u1" / "relation" / "weights.json").read_text())["k2_s0"]
    assert len(set(w.values())) == 1  # uniform


def test_corrupt_lr_stops_before_training(sample, tmp_path, capsys):
    from drtl.stages.adapt import main

    pairs = tmp_path / "pairs"
    shutil.copytree(sample / "pool", pairs)
    victim = sorted((pairs / "LR").iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:60])  # truncated PNG
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["--pairs", str(pairs), "--scale", "2", "--shots", "2", "--out", str(out), "--aux-cache", str(cache)]
    assert main(argv + [x for o in tiny(sample) for x in ("-S", o)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("drtl: error:") and "\n" not in err
    assert "fails validation" in err and victim.name in err
    assert not (out / "model.pt").exists() and not (out / "pretrain").exists() and not (out / "finetune").exists()
    assert not cache.exists() or not any(cache.iterdir())  # nothing synthesized, no DRN


def test_wrong_scale_and_bad_inputs(sample, tmp_path):
    from drtl.errors import ConfigError, DataError
    from drtl.stages.adapt import adapt, adapt_params

    p = adapt_params(None, tiny(sample))
    with pytest.raises(ConfigError, match=r"x2 .*not x3; pass --scale 2") as exc:
        adapt(sample / "pool", 3, 2, tmp_path / "o3", p, aux_cache=tmp_path / "c", echo=lambda _: None)
    assert "\n" not in str(exc.value)
    with pytest.raises(DataError, match="holds only 4 pairs"):
        adapt(sample / "pool", 2, 5, tmp_path / "o5", p, aux_cache=tmp_path / "c", echo=lambda _: None)
    with pytest.raises(ConfigError, match="--layout"):
        adapt(sample / "aux_hr", 2, 2, tmp_path / "o6", p, aux_cache=tmp_path / "c", echo=lambda _: None)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a `drtl adapt` output folder"):
        adapt(sample / "pool", 2, 2, tmp_path / "mine", p, aux_cache=tmp_path / "c", echo=lambda _: None)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "c").exists()


def test_builtin_aux_sources_and_fingerprint(tmp_path):
    from drtl.stages.adapt import adapt_params, aux_fingerprint, resolve_aux_sources

    [src] = resolve_aux_sources(["@sample"], tmp_path)
    assert Path(src) == tmp_path / "sample" / "aux_hr" and any((Path(src) / "HR").iterdir())
    p = adapt_params()
    fp, _ = aux_fingerprint(p, [src], 2)
    q = adapt_params(None, ["relation.tau=0.5", "relation.weighting=false", "finetune.iterations=7"])
    assert aux_fingerprint(q, [src], 2)[0] == fp                     # target-only / training params
    assert aux_fingerprint(adapt_params(None, ["relation.steps=7"]), [src], 2)[0] != fp
    assert aux_fingerprint(p, [src], 3)[0] != fp


def test_registered_pairs_are_downscaled_like_city100(sample, tmp_path):
    """A paired folder whose LR images have the HR size (registered captures) is imported by the
    City100 protocol: LR = MATLAB-bicubic downscale by 1/scale."""
    import numpy as np

    from drtl.data.folder import load_pairs, pair_paths
    from drtl.degradations.resize import imresize
    from drtl.io import read_image, write_image
    from drtl.stages.adapt import import_pairs

    src = tmp_path / "registered"
    for name, lp, hp in pair_paths(sample / "pool")[:2]:
        hr = read_image(hp)
        write_image(src / "HR" / hp.name, hr)
        write_image(src / "LR" / lp.name, imresize(read_image(lp), scale=2.0))  # HR-sized LR
    used = import_pairs(src, tmp_path / "out", 2)
    assert used.startswith("paired (registered")
    for name, lr, hr in load_pairs(tmp_path / "out", 2):
        assert lr.shape[0] * 2 == hr.shape[0]
        expect = imresize(read_image(src / "LR" / f"{name}.png"), scale=0.5)
        assert np.array_equal(lr, expect)
