"""``drtl adapt``: a super-resolution model for *your* camera from K of its LR/HR pairs, in one command.

    drtl adapt --pairs DIR --scale S --shots K --out OUT [--params P] [-S k=v] [--seed N]
               [--aux-cache DIR | --bank DIR] [--layout auto|paired|city100|realsr|drealsr] [--names 001-020]

A small plan (:mod:`drtl.plan`) over the camera's data, run by :func:`drtl.orchestrate.experiment.run_plan`
(every stage call goes through :func:`drtl.runner.execute`, which writes each run's record):

1. data (:mod:`drtl.orchestrate.adapt_data`): import ``DIR`` into ``OUT/data/all``; split it into
   the K shots ``OUT/data/shots`` and the rest ``OUT/data/rest`` (the evaluation pairs);
2. ``validate`` the shots and the rest (disjoint); a failure is one line and nothing trains;
3. the aux entry (:mod:`drtl.orchestrate.bank`): the aux cache entry ``AUX_CACHE/<key>/`` (key: aux
   params, content of the auxiliary HR files, the bank's params, scale), or the folder of
   ``--bank DIR`` (``drtl adapt-bank --out DIR``): ``synthesize`` into ``synth/`` and the camera-free
   ``bank`` stage (the DRN, or the family experts, as the relation needs) into ``bank/`` when
   absent, reused as is when complete;
4. ``relation`` of the camera's K shots over the entry's tasks and bank;
5. ``pretrain``: the bank's uniform model (trained into ``uniform/<key>/`` once, then reused), which
   DRTL-Pre continues with ``pretrain.drtl_continue`` relation-weighted steps (with
   ``relation.weighting: false`` the uniform model itself) -> ``finetune`` on the K shots, keeping the
   best of its checks on held-out strips of the shots and stopping early -> ``evaluate`` the model and
   bicubic on the rest;
6. ``OUT/model.pt`` (the fine-tuned model with the adapt recipe), ``OUT/summary.{md,json}``; the run
   records are logged to MLflow when ``tracking.enabled``.

Rerunning with the same ``OUT`` resumes: a run whose inputs did not change is skipped, an
interrupted training run resumes from its checkpoint, a run whose inputs changed starts afresh.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from drtl.orchestrate.adapt_data import (CACHE_VERSION, LAYOUTS, SAMPLE_TOKEN, aux_fingerprint,  # noqa: F401
                                         default_cache_root, detect_layout, import_pairs, out_folder,
                                         resolve_aux_sources, split_pairs)
from drtl.orchestrate.bank import execute_runs, build_bank, clock, ensure_aux, uniform_run  # noqa: F401

EVAL_TILE = 512  # LR tile side for evaluating the model: whole image up to 512 px, bounded memory above


# ------------------------------------------------------------------------------------------ params
ADAPT_PROFILE = Path(__file__).resolve().parents[1] / "profiles" / "adapt.yaml"


def adapt_profile() -> dict:
    """The overlay (over drtl.config.DEFAULTS) of the CPU ``adapt`` budget: drtl/profiles/adapt.yaml."""
    import yaml

    return yaml.safe_load(ADAPT_PROFILE.read_text())


def adapt_params(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> dict:
    """DEFAULTS <- adapt_profile() <- the params file ``path`` (optional) <- ``-S`` overrides, checked."""
    from drtl.config import DEFAULTS, _merge, load_params

    return load_params(path, overrides, base=_merge(DEFAULTS, adapt_profile()))


# ------------------------------------------------------------------------------------------ the plan
def adapt_runs(p: dict, out: Path, entry: Path, shots: int, seed: int, evaluate: bool) -> list:
    """The camera's runs: relation (cached DRN) -> [uniform pre-training, into the aux entry, only when
    the entry lacks it] -> DRTL-Pre (continuing the uniform model when ``pretrain.drtl_continue`` > 0)
    -> finetune -> evaluate model + bicubic."""
    from drtl.methods import METHODS, init_source
    from drtl.plan import Roots, evaluate_run, finetune_run, relation_run, source_chain

    r = Roots(str(out), p["target"]["pool"], p["target"]["test"], str(out / "reports"))
    m = METHODS["drtl_pre"] if p["relation"]["weighting"] else METHODS["pretrain"]
    synth = str(entry / "synth")
    rel = relation_run(r, "drtl", shots, seed, p)
    rel = replace(rel, inputs={**rel.inputs, "synth": synth, **({"bank": str(entry / "bank")} if "bank" in rel.inputs
                                                                 else {})}, deps=())
    runs, made = [rel], {}  # made: run id -> the model file it writes (or wrote, when reused)

    def in_plan(deps) -> tuple:  # the dependencies that are runs of this plan (not reused files)
        ids = {x.id for x in runs}
        return tuple(d for d in deps if d in ids)

    for run in source_chain(r, init_source(m, p["finetune"]), shots, seed, p):
        if run.stage == "relation":  # rel, above
            continue
        inputs = {**run.inputs, "synth": synth}
        if "init" in inputs:  # the upstream run of the chain (uniform pre-training)
            inputs["init"] = made[next(d for d in run.deps if d in made)]
        run = replace(run, inputs=inputs, deps=in_plan(run.deps))
        camera_free = "relation" not in run.inputs  # lives in the aux entry, reused from there
        if camera_free:
            run = replace(run, out=uniform_run(p, entry, seed).out)
        made[run.id] = f"{run.out}/model.pt"
        if not (camera_free and Path(made[run.id]).is_file()):
            runs.append(run)
    ft = finetune_run(r, m, shots, seed, p)
    ft = replace(ft, inputs={**ft.inputs, "init": made[ft.deps[0]]}, deps=in_plan(ft.deps))
    runs.append(ft)
    if evaluate:
        model = evaluate_run(r, m, shots, seed, p)
        runs += [replace(model, inputs={**model.inputs, "tile": EVAL_TILE}),
                 evaluate_run(r, METHODS["bicubic"], shots, seed, p)]
    return runs


def _ranking(rel_dir: Path, key: str):
    import pandas as pd

    table = pd.read_csv(rel_dir / "graphs" / key / "ranking.csv")
    return table.sort_values(["weight", "similarity"], ascending=False, kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------------------ adapt
def adapt(pairs, scale: int, shots: int, out, params: dict, seed: int = 0, aux_cache=None, echo=print,
          layout: str = "auto", names: list[str] | None = None, bank=None) -> dict:
    """Adapt an SR model to a camera from its K shots; returns the summary dict (also OUT/summary.json)."""
    from drtl.config import check_params
    from drtl.data.folder import pair_paths
    from drtl.data.validate import check_folder
    from drtl.errors import ConfigError
    from drtl.modelio import load_model, save_model
    from drtl.orchestrate.adapt_summary import write_summary
    from drtl.plan import validate_run, Roots
    from drtl.stages.shots import run_key

    t0, say = clock(echo)

    for what, v, ok in (("--scale", scale, (2, 3, 4)), ("--shots", shots, None)):
        if isinstance(v, bool) or int(v) != v or (int(v) not in ok if ok else int(v) < 1):
            raise ConfigError(f"{what} must be {'2, 3 or 4' if ok else 'a positive integer'}, got {v}")
    scale, shots, seed = int(scale), int(shots), int(seed)
    out = Path(out)
    data = out / "data"
    p = copy.deepcopy(params)
    p["target"].update(scale=scale, pool=str(data / "shots"), test=str(data / "rest"))
    p["experiment"].update(shots=[shots], seeds=[seed])
    p["outputs"] = str(out)
    check_params(p)
    out_folder(out)

    # 1. data: import + split (great-expectations, 3-4 s of imports, loads meanwhile for step 2)
    _preload("great_expectations")
    timings = {}
    t = time.time()
    used = import_pairs(pairs, data / "all", scale, layout, names)
    n_all = len(pair_paths(data / "all"))
    shot_list, rest = split_pairs(data, shots, seed, scale, label=str(pairs))
    timings["import"] = round(time.time() - t, 2)
    say(f"imported {n_all} pairs ({used}) into {data / 'all'}")
    say(f"K={shots} shots (seed {seed}): {', '.join(shot_list)}; "
        + (f"{len(rest)} pairs kept for evaluation" if rest else "no pair left for evaluation"))

    # 2. validation (nothing is cached or trained before it passes)
    if rest:
        recs = execute_runs(p, [validate_run(Roots(str(out), p["target"]["pool"], p["target"]["test"], ""))], say, t0)
        timings["validate"] = recs["validate/validate"].duration_s
    else:  # the validate stage needs test pairs: check the shots alone
        t = time.time()
        check_folder(data / "shots", scale)
        timings["validate"] = round(time.time() - t, 2)
    say(f"validated {n_all} pairs at x{scale}")

    # 3. the aux cache entry
    cache_root = Path(aux_cache) if aux_cache else default_cache_root()
    p["aux"]["hr"] = resolve_aux_sources(p["aux"]["hr"], cache_root, say)
    aux = ensure_aux(p, cache_root, say, bank)
    timings.update(aux.pop("timings", {}))
    entry = Path(aux["path"])

    # 4-5. relation, pre-training, fine-tuning, evaluation
    runs = adapt_runs(p, out, entry, shots, seed, evaluate=bool(rest))
    rel, ft = runs[0], next(r for r in runs if r.stage == "finetune")
    pres, evals = [r for r in runs if r.stage == "pretrain"], [r for r in runs if r.stage == "evaluate"]
    uniform_cached = not any("relation" not in r.inputs for r in pres)
    if uniform_cached:
        say(f"uniform pre-trained model reused from {uniform_run(p, entry, seed).out}")
    recs = execute_runs(p, runs, say, t0)
    for run in runs:
        if recs[run.id].started >= t0:
            timings[run.stage] = round(timings.get(run.stage, 0) + recs[run.id].duration_s, 2)
    key = run_key(shots, seed)
    table = _ranking(Path(rel.out), key)
    top = table.head(5)
    say("closest auxiliary distortions: " + ", ".join(f"{x.task} ({x.weight:.3f})" for x in top.itertuples()))

    # 6. the model file with the adapt recipe
    model, meta = load_model(Path(ft.out) / "model.pt", expect_scale=scale)
    method = ft.inputs["method"]
    recipe = {**meta["recipe"], "adapt": {
        "pairs": str(pairs), "layout": used, "scale": scale, "shots": shots, "seed": seed,
        "shot_names": shot_list, "method": method, "aux_fingerprint": aux["fingerprint"],
        "top_tasks": [{"task": x.task, "family": x.family, "weight": float(x.weight)} for x in top.itertuples()],
        "params": params}}
    save_model(out / "model.pt", model, recipe)

    ev = None
    if evals:
        m_ev, b_ev = (json.loads((Path(e.out) / "eval.json").read_text()) for e in evals)
        ev = {"n_pairs": len(rest), "model": {k: m_ev[k] for k in ("psnr_y", "ssim_y")},
              "bicubic": {k: b_ev[k] for k in ("psnr_y", "ssim_y")},
              "gain_psnr_y": m_ev["psnr_y"] - b_ev["psnr_y"], "gain_ssim_y": m_ev["ssim_y"] - b_ev["ssim_y"]}
        say(f"PSNR-Y {ev['model']['psnr_y']:.3f} dB vs bicubic {ev['bicubic']['psnr_y']:.3f} dB "
            f"({ev['gain_psnr_y']:+.3f}); SSIM-Y {ev['model']['ssim_y']:.4f} vs {ev['bicubic']['ssim_y']:.4f}")

    rel_metrics = json.loads((Path(rel.out) / "relation.json").read_text())
    summary = {
        "format": "drtl-adapt-summary", "version": CACHE_VERSION,
        "pairs": str(pairs), "layout": used, "scale": scale, "shots": shots, "seed": seed, "method": method,
        "n_pairs": n_all, "shot_names": shot_list, "rest_names": rest,
        "aux_cache": {k: aux.get(k) for k in ("path", "fingerprint", "hit", "drn_trained", "synthesized",
                                               "n_tasks", "n_images", "drn_train_accuracy", "drn_val_accuracy")},
        "uniform_pretrain_cache_hit": uniform_cached or any(
            recs[r.id].started < t0 for r in pres if "relation" not in r.inputs),
        "ran": {"pretrain": any(recs[r.id].started >= t0 for r in pres), "finetune": recs[ft.id].started >= t0},
        "runs": {r.id: r.out for r in runs},
        "relation": {"run": rel.name, "weighting": bool(p["relation"]["weighting"]), "tau": float(p["relation"]["tau"]),
                     "entropy": rel_metrics["weight_entropy"][key],
                     "top": [{"task": x.task, "family": x.family, "similarity": float(x.similarity),
                              "weight": float(x.weight)} for x in top.itertuples()]},
        "eval": ev, "timings_s": {**timings, "total": round(time.time() - t0, 2)},
        "model": str(out / "model.pt"), "threads": _threads(),
    }
    write_summary(summary, out)

    # 7. tracking: the records of this invocation's runs, in one process
    if p["tracking"]["enabled"]:
        _track(p, runs, aux, entry, summary, say)
    say(f"done in {summary['timings_s']['total']:.0f}s: {out / 'model.pt'} (summary: {out / 'summary.md'})")
    return summary


def _track(p: dict, runs: list, aux: dict, entry: Path, summary: dict, say) -> None:
    from drtl.orchestrate.experiment import track
    from drtl.plan import Run

    built = [Run("synthesize", "synth", str(entry / "synth")), Run("bank", "bank", str(entry / "bank"))]
    invocation = {"orchestrator": "drtl adapt", "pairs": summary["pairs"], "out": str(Path(summary["model"]).parent),
                  "shots": summary["shots"], "seed": summary["seed"], "aux_fingerprint": aux["fingerprint"]}
    track(p, (built if not aux["hit"] else []) + runs, invocation, say)


def _preload(module: str) -> None:
    """Import ``module`` in a daemon thread, so its import time overlaps the caller's work (a later
    ``import`` of it waits for this one; a failure here is left to that import to report)."""
    import importlib
    import threading

    def load():
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the real import reports it
            pass

    threading.Thread(target=load, name=f"preload-{module}", daemon=True).start()


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())
