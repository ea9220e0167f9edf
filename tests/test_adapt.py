"""`drtl adapt` end to end on a tiny camera (the sample pool: 4 pairs, K=2) with a tiny budget:
outputs, the aux cache (hit by content), resume after an interruption, validation, bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import tiny_overrides

TASKS = "[clean_bicubic,iso_blur_s1.6,gauss_noise15,jpeg_q30]"


@pytest.fixture(scope="module")
def sample(tiny_sample) -> Path:
    return tiny_sample


def tiny(sample: Path) -> list[str]:
    """The tiny profile's budgets (configs/tiny.yaml) over the adapt profile, with checkpoints every 2
    steps (the resume tests) and a DRTL-Pre continuation of 2 steps."""
    return [f"aux.hr=[{sample / 'aux_hr'}]", f"aux.tasks={TASKS}", *tiny_overrides(("relation", "pretrain", "finetune")),
            "pretrain.iterations=4", "pretrain.drtl_continue=2", "pretrain.checkpoint_every=2",
            "finetune.iterations=4", "finetune.checkpoint_every=2", "threads=1", "tracking.enabled=false"]


@pytest.fixture(scope="module")
def cold(sample, tmp_path_factory):
    """One cold run (empty aux cache); returns (out, cache, summary, echoed lines)."""
    from drtl.orchestrate.adapt import adapt, adapt_params

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
    graphs = out / "relation" / "drtl_k2_s0" / "graphs" / "k2_s0"
    table = pd.read_csv(graphs / "ranking.csv").sort_values("weight", ascending=False)
    assert len(table) == 4 and abs(table["weight"].sum() - 1.0) < 1e-6
    for f in ("weights.png", "graph.json", "graph.graphml"):
        assert (graphs / f).is_file(), f
    assert (out / "relation" / "drtl_k2_s0" / "weights.json").is_file()
    md = (out / "summary.md").read_text()
    assert "PSNR" in md and "bicubic" in md and "drtl upscale" in md
    for task in table["task"].head(3):
        assert f"`{task}`" in md
    ev = s["eval"]
    assert ev["n_pairs"] == 2 and ev["model"]["psnr_y"] > 20 and ev["bicubic"]["psnr_y"] > 20
    assert json.loads((out / "summary.json").read_text())["eval"] == ev
    # the printed summary: cache miss, every run of the plan, the closest distortions, the gain
    printed = "\n".join(lines)
    for what in ("aux cache miss", "synthesized 4 auxiliary tasks", "DRN trained", "validate validate",
                 "relation drtl_k2_s0", "pretrain drtl_k2_s0", "finetune drtl_pre_k2_s0", "evaluate drtl_pre_k2_s0",
                 "evaluate bicubic_s0", "closest auxiliary distortions: " + table["task"].iloc[0], "PSNR-Y", "done in"):
        assert what in printed, what
    assert f"PSNR-Y {ev['model']['psnr_y']:.3f} dB vs bicubic {ev['bicubic']['psnr_y']:.3f} dB" in printed
    entry = _entry(cache)
    assert (entry / "bank" / "drn.pt").is_file() and (entry / "synth" / "synth.json").is_file()
    assert not (entry / "bank" / "weights.json").exists()  # the camera's relation is not shared
    # every stage call went through the runner: one run record per run
    from drtl.records import read_record

    for run_out in s["runs"].values():
        assert read_record(run_out).duration_s > 0
    assert read_record(entry / "synth").stage == "synthesize" and read_record(entry / "bank").stage == "bank"


def test_warm_run_reuses_the_aux_cache(cold, sample, tmp_path, capsys):
    """A second camera folder with the same cache: no synthesis, no DRN training (files untouched);
    through the CLI entry point, with MLflow tracking on when drtl.tracking is present."""
    from drtl.cli import main

    out1, cache, s1, _ = cold
    entry = _entry(cache)
    stamp = {p: p.stat().st_mtime_ns for p in (entry / "bank" / "drn.pt", entry / "synth" / "synth.json",
                                              entry / "complete.json")}
    out2 = tmp_path / "cam2"
    db = tmp_path / "mlflow.db"
    track = ["-S", "tracking.enabled=true", "-S", f"tracking.uri=sqlite:///{db}"]
    import drtl.tracking

    can_track = hasattr(drtl.tracking, "log_records")
    argv = ["adapt", "--pairs", str(sample / "pool"), "--scale", "2", "--shots", "2", "--out", str(out2),
            "--aux-cache", str(cache)] + [x for o in tiny(sample) for x in ("-S", o)] + track
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "aux cache hit" in printed and "PSNR-Y" in printed
    s2 = json.loads((out2 / "summary.json").read_text())
    assert s2["aux_cache"]["hit"] is True and s2["aux_cache"]["drn_trained"] is False
    assert s2["aux_cache"]["fingerprint"] == s1["aux_cache"]["fingerprint"]
    assert "synthesize" not in s2["timings_s"] and "bank" not in s2["timings_s"]
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    # same camera, same shots, same DRN: the same relation weights
    assert json.loads((out2 / "relation" / "drtl_k2_s0" / "weights.json").read_text()) == \
        json.loads((out1 / "relation" / "drtl_k2_s0" / "weights.json").read_text())
    assert s2["ran"] == {"pretrain": True, "finetune": True}  # a new camera folder trains
    if can_track:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{db}")
        exp = client.get_experiment_by_name("drtl")
        runs = client.search_runs([exp.experiment_id], "tags.stage = 'evaluate'")
        assert len(runs) == 2 and all("psnr_y" in r.data.metrics for r in runs)
    else:  # tracking on but drtl.tracking.log_records not there yet: one warning line, the run still works
        assert "warning: tracking.enabled" in printed


def test_target_only_params_share_the_cache_and_uniform_pretrain_is_reused(cold, sample, tmp_path):
    """The cold run's DRTL-Pre continued the uniform model it trained into the aux entry; a run with
    uniform weights (other target-only params) reuses that model and trains no pre-training."""
    from drtl.modelio import load_model
    from drtl.orchestrate.adapt import adapt, adapt_params

    out1, cache, s1, lines = cold
    assert s1["uniform_pretrain_cache_hit"] is False and any("pretrain uniform_s0" in x for x in lines)
    uniform = Path(s1["aux_cache"]["path"]) / "uniform"
    (key,) = [d.name for d in uniform.iterdir()]
    drtl = load_model(Path(s1["runs"]["pretrain/drtl_k2_s0"]) / "model.pt")[1]["recipe"]
    assert drtl["init"] == str(uniform / key / "model.pt") and drtl["train"]["iterations"] == 2  # drtl_continue
    p = adapt_params(None, tiny(sample) + ["relation.weighting=false", "relation.tau=0.2"])
    a = adapt(sample / "pool", 2, 2, tmp_path / "u1", p, aux_cache=cache, echo=lambda _: None)
    assert a["aux_cache"]["hit"] and a["aux_cache"]["fingerprint"] == s1["aux_cache"]["fingerprint"]
    assert a["method"] == "pretrain" and a["uniform_pretrain_cache_hit"] is True
    assert a["ran"] == {"pretrain": False, "finetune": True} and not (tmp_path / "u1" / "pretrain").exists()
    ft = load_model(tmp_path / "u1" / "model.pt")[1]["recipe"]
    assert ft["init"] == str(uniform / key / "model.pt")
    w = json.loads((tmp_path / "u1" / "relation" / "drtl_k2_s0" / "weights.json").read_text())["k2_s0"]
    assert len(set(w.values())) == 1  # uniform
    # drtl_continue 0: DRTL-Pre trains from scratch (the experiment's default), no uniform model needed
    q = adapt_params(None, tiny(sample) + ["pretrain.drtl_continue=0"])
    c = adapt(sample / "pool", 2, 2, tmp_path / "u2", q, aux_cache=cache, echo=lambda _: None)
    rec = load_model(Path(c["runs"]["pretrain/drtl_k2_s0"]) / "model.pt")[1]["recipe"]
    assert rec["init"] is None and rec["train"]["iterations"] == 4


def test_bank_folder_is_built_once_and_reused(sample, tmp_path, capsys, monkeypatch):
    """`drtl adapt-bank --out DIR` builds tasks, bank (DRN) and uniform model (no camera needed: run where no
    data folder exists); `drtl adapt --bank DIR` trains only the camera's runs; a bank built for
    other DRN params is refused in one line."""
    from drtl.cli import main

    monkeypatch.chdir(tmp_path)  # no data/sample here: the bank must not look for a target

    bank = tmp_path / "bank"
    opts = [x for o in tiny(sample) for x in ("-S", o)]
    assert main(["adapt-bank", "--out", str(bank), "--scale", "2", "--aux-cache", str(tmp_path / "c"), *opts]) == 0
    assert "bank ready" in capsys.readouterr().out
    models = list((bank / "uniform").glob("*/model.pt"))
    assert len(models) == 1 and (bank / "bank" / "drn.pt").is_file()
    stamp = {p: p.stat().st_mtime_ns for p in bank.rglob("*") if p.is_file()}
    out = tmp_path / "cam"
    assert main(["adapt", "--pairs", str(sample / "pool"), "--scale", "2", "--shots", "2", "--out", str(out),
                 "--bank", str(bank), *opts]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["aux_cache"]["hit"] and s["uniform_pretrain_cache_hit"] and s["ran"]["pretrain"]
    assert {p: p.stat().st_mtime_ns for p in bank.rglob("*") if p.is_file()} == stamp  # read only
    code = main(["adapt", "--pairs", str(sample / "pool"), "--scale", "2", "--shots", "2", "--out", str(out),
                 "--bank", str(bank), *opts, "-S", "relation.steps=11"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "was built for other auxiliary/bank params" in err[0]


def test_rerun_resumes_and_skips_unchanged_runs(cold, sample, tmp_path):
    """Kill fine-tuning after its step-2 checkpoint (Ctrl-C), rerun: it resumes at step 2 and the
    finished runs are reused; a third run reuses everything; other shots (seed) retrain."""
    from drtl.orchestrate.adapt import adapt, adapt_params

    _, cache, _, _ = cold
    p = adapt_params(None, tiny(sample) + ["finetune.log_every=1", "log_every_s=0"])
    out = tmp_path / "cam"
    seen = []

    def interrupt(line):
        seen.append(line)
        if any("pretrain drtl_k2_s0" in x for x in seen) and "step 3:" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        adapt(sample / "pool", 2, 2, out, p, aux_cache=cache, echo=interrupt)
    ft = out / "finetune" / "drtl_pre_k2_s0"
    assert (ft / ".ckpt.pt").is_file() and not (ft / "model.pt").exists()
    lines = []
    s = adapt(sample / "pool", 2, 2, out, p, aux_cache=cache, echo=lines.append)
    assert s["ran"] == {"pretrain": False, "finetune": True}
    assert json.loads((ft / "history.json").read_text())["resumed_from"] == [2]
    assert any("reused: validate/validate" in x for x in lines)
    assert any("reused: relation/drtl_k2_s0, pretrain/drtl_k2_s0" in x for x in lines)
    again = adapt(sample / "pool", 2, 2, out, p, aux_cache=cache, echo=lambda _: None)
    assert again["ran"] == {"pretrain": False, "finetune": False} and again["eval"] == s["eval"]
    # changed inputs: that run's folder (and its final checkpoint) is discarded, it trains afresh
    q = adapt_params(None, tiny(sample) + ["finetune.iterations=6"])
    other = adapt(sample / "pool", 2, 2, out, q, aux_cache=cache, echo=lambda _: None)
    assert other["ran"] == {"pretrain": False, "finetune": True}
    assert json.loads((ft / "history.json").read_text()).get("resumed_from", []) == []


def test_corrupt_lr_stops_before_training(sample, tmp_path, capsys):
    from drtl.cli import main

    pairs = tmp_path / "pairs"
    shutil.copytree(sample / "pool", pairs)
    victim = sorted((pairs / "LR").iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:60])  # truncated PNG
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["adapt", "--pairs", str(pairs), "--scale", "2", "--shots", "2", "--out", str(out), "--aux-cache", str(cache)]
    assert main(argv + [x for o in tiny(sample) for x in ("-S", o)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("drtl: error:") and "\n" not in err
    assert "fails validation" in err and victim.name in err
    assert not (out / "model.pt").exists() and not (out / "pretrain").exists() and not (out / "finetune").exists()
    assert not cache.exists() or not any(cache.iterdir())  # nothing synthesized, no DRN


def test_wrong_scale_and_bad_inputs(sample, tmp_path):
    from drtl.errors import ConfigError, DataError
    from drtl.orchestrate.adapt import adapt, adapt_params

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
    from drtl.orchestrate.adapt import adapt_params, aux_fingerprint, resolve_aux_sources

    [src] = resolve_aux_sources(["@sample"], tmp_path)
    assert Path(src) == tmp_path / "sample" / "aux_hr" and any((Path(src) / "HR").iterdir())
    p = adapt_params()
    fp, _ = aux_fingerprint(p, [src], 2)
    # keyed by content, not by path, time or size: a copy elsewhere hits; one changed pixel misses;
    # a renamed file misses too (image names seed the synthesized degradations and the val split)
    import numpy as np

    from drtl.io import read_image, write_image

    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    assert aux_fingerprint(p, [str(copy)], 2)[0] == fp
    first = sorted((copy / "HR").iterdir())[0]
    img = read_image(first)
    img[0, 0, 0] = np.uint8(img[0, 0, 0] ^ 1)
    write_image(first, img)
    assert aux_fingerprint(p, [str(copy)], 2)[0] != fp
    renamed = tmp_path / "renamed"
    shutil.copytree(src, renamed)
    f = sorted((renamed / "HR").iterdir())[0]
    f.rename(f.with_name("zz_" + f.name))
    assert aux_fingerprint(p, [str(renamed)], 2)[0] != fp
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
    from drtl.orchestrate.adapt_data import import_pairs

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


def test_the_bank_reads_no_camera_and_serves_every_camera(cold, sample, tmp_path):
    """The bank stage reads no target (its params name a pool that does not exist); a relation run
    over the bank it builds gives the adapt run's weights, whichever bank folder it reads."""
    from drtl.orchestrate.adapt import adapt_params
    from drtl.runner import execute

    out, cache, _, _ = cold
    synth = _entry(cache) / "synth"
    p = adapt_params(None, tiny(sample))
    p["target"].update(pool=str(tmp_path / "no_such_pool"), test=str(tmp_path / "no_such_test"))
    execute("bank", p, {"parts": "drn", "synth": str(synth)}, tmp_path / "bank")
    assert json.loads((tmp_path / "bank" / "bank.json").read_text())["parts"] == ["drn"]
    p["target"]["pool"] = str(out / "data" / "shots")
    execute("relation", p, {"method": "drtl", "shots": 2, "seed": 0, "synth": str(synth), "bank": str(tmp_path / "bank")},
            tmp_path / "rel")
    assert (json.loads((tmp_path / "rel" / "weights.json").read_text())
            == json.loads((out / "relation" / "drtl_k2_s0" / "weights.json").read_text()))


def test_every_pair_a_shot_trains_without_evaluation(cold, sample, tmp_path):
    from drtl.orchestrate.adapt import adapt, adapt_params

    _, cache, _, _ = cold
    s = adapt(sample / "pool", 2, 4, tmp_path / "all", adapt_params(None, tiny(sample)), aux_cache=cache,
              echo=lambda _: None)
    assert s["eval"] is None and s["rest_names"] == [] and (tmp_path / "all" / "model.pt").is_file()
    assert "nothing was evaluated" in (tmp_path / "all" / "summary.md").read_text()
