"""``drtl adapt``: a super-resolution model for *your* camera from K of its LR/HR pairs, in one command.

    drtl adapt --pairs DIR --scale S --shots K --out OUT [--params P] [-S k=v] [--seed N]
               [--aux-cache DIR] [--layout auto|paired|city100|realsr|drealsr] [--names 001-020]

A small plan (:mod:`drtl.plan`) over the camera's data, run by :func:`drtl.orchestrate.experiment.run_plan`
(every stage call goes through :func:`drtl.runner.execute`, which writes each run's record):

1. data (:mod:`drtl.orchestrate.adapt_data`): import ``DIR`` into ``OUT/data/all``; split it into
   the K shots ``OUT/data/shots`` and the rest ``OUT/data/rest`` (the evaluation pairs);
2. ``validate`` the shots and the rest (disjoint); a failure is one line and nothing trains;
3. the auxiliary cache entry ``AUX_CACHE/<key>/`` (key: aux params, content of the auxiliary HR
   files, DRN params, scale): ``synthesize`` into ``synth/`` and the DRN of stage ``relation`` into
   ``drn/`` when absent, reused as is when complete;
4. ``relation`` of the camera with the cached DRN (input ``drn``): only the K shots are embedded;
5. ``pretrain`` (DRTL-Pre, relation-weighted; with ``relation.weighting: false`` uniform, cached in
   the aux entry) -> ``finetune`` on the K shots -> ``evaluate`` the model and bicubic on the rest;
6. ``OUT/model.pt`` (the fine-tuned model with the adapt recipe), ``OUT/summary.{md,json}``; the run
   records are logged to MLflow when ``tracking.enabled``.

Rerunning with the same ``OUT`` resumes: a run whose inputs did not change is skipped, an
interrupted training run resumes from its checkpoint, a run whose inputs changed starts afresh.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from drtl.orchestrate.adapt_data import (CACHE_VERSION, LAYOUTS, SAMPLE_TOKEN, aux_fingerprint,  # noqa: F401
                                         default_cache_root, detect_layout, import_pairs, out_folder,
                                         resolve_aux_sources, split_pairs)

_CHECKPOINTED = ("pretrain", "metatrain", "finetune")  # stages that resume from a checkpoint in their folder
EVAL_TILE = 512  # LR tile side for evaluating the model: whole image up to 512 px, bounded memory above


# ------------------------------------------------------------------------------------------ params
def adapt_profile() -> dict:
    """Param overrides (over drtl.config.DEFAULTS) of the CPU ``adapt`` budget (docs/adapt.md)."""
    return {
        "threads": 0,                      # torch default: one thread per core
        "log_every_s": 10,                 # a progress line at least this often during training
        "aux": {"hr": [SAMPLE_TOKEN], "variants": 1, "max_hr_side": 256},
        "relation": {"steps": 150, "batch_per_task": 2, "lr_patch": 24},
        "pretrain": {"iterations": 300, "batch": 4, "tasks_per_step": 4, "lr_patch": 32, "log_every": 25,
                     "checkpoint_every": 50},
        "finetune": {"iterations": 300, "batch": 16, "lr_patch": 32, "log_every": 25, "checkpoint_every": 50},
    }


def adapt_params(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> dict:
    """DEFAULTS <- adapt_profile() <- the params file ``path`` (optional) <- ``-S`` overrides, checked."""
    from drtl.config import DEFAULTS, _merge, load_params

    return load_params(path, overrides, base=_merge(DEFAULTS, adapt_profile()))


# ------------------------------------------------------------------------------------------ aux cache
class _Lost(Exception):
    """Another process completed the same aux entry while this one built it."""


def _complete(entry: Path) -> bool:
    return all((entry / f).is_file() for f in ("complete.json", "synth/synth.json", "drn/drn.pt"))


def ensure_aux(p: dict, cache_root: Path, say) -> dict:
    """The aux cache entry of ``p`` (``aux.hr`` resolved): reused when complete, else built by the
    ``synthesize`` and ``relation`` stages in a dot-prefixed temp folder renamed when complete."""
    from drtl.data.folder import staged_folder
    from drtl.io import write_text
    from drtl.records import read_record, write_record
    from drtl.runner import execute

    key, covers = aux_fingerprint(p, p["aux"]["hr"], p["target"]["scale"])
    entry = Path(cache_root) / key
    if _complete(entry):
        info = json.loads((entry / "complete.json").read_text())
        say(f"aux cache hit: {entry} ({info.get('n_tasks')} tasks; DRN val accuracy "
            f"{info.get('drn_val_accuracy', float('nan')):.3f})")
        return {"path": str(entry), "fingerprint": key, "hit": True, "drn_trained": False, "synthesized": False,
                **info}
    say(f"aux cache miss: building {entry}")
    try:
        with staged_folder(entry, guard=False) as tmp:
            t = time.time()
            m = execute("synthesize", p, {}, tmp / "synth", name="synth")
            took = {"synthesize": round(time.time() - t, 2)}
            say(f"synthesized {m['n_tasks']} auxiliary tasks x {m['n_images']} HR images")
            t = time.time()
            rm = execute("relation", p, {"synth": str(tmp / "synth")}, tmp / "drn", name="drn")
            took["drn"] = round(time.time() - t, 2)
            rec = read_record(tmp / "drn")  # keep the DRN only: this camera's relation is not shared
            for f in ("weights.json", "graphs", "relation.json"):
                shutil.rmtree(tmp / "drn" / f) if (tmp / "drn" / f).is_dir() else (tmp / "drn" / f).unlink()
            rec.artifacts = [a for a in rec.artifacts if (tmp / "drn" / a).exists()]
            write_record(tmp / "drn", rec)
            say(f"DRN trained: accuracy train {rm['drn_train_accuracy']:.3f}, "
                f"val {rm.get('drn_val_accuracy', float('nan')):.3f}")
            info = {"n_tasks": m["n_tasks"], "n_images": m["n_images"],
                    **{k: rm[k] for k in ("drn_train_accuracy", "drn_val_accuracy") if k in rm},
                    "covers": covers, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            write_text(tmp / "complete.json", json.dumps(info, indent=1, default=str) + "\n")
            if _complete(entry):  # another process finished the same entry meanwhile: keep theirs
                raise _Lost()
    except _Lost:
        return ensure_aux(p, cache_root, say)
    return {"path": str(entry), "fingerprint": key, "hit": False, "drn_trained": True, "synthesized": True,
            "timings": took, **info}


# ------------------------------------------------------------------------------------------ the plan
def adapt_runs(p: dict, out: Path, entry: Path, shots: int, seed: int, evaluate: bool) -> list:
    """The camera's runs: relation (cached DRN) -> pretrain -> finetune -> evaluate model + bicubic."""
    from drtl.methods import METHODS, init_source
    from drtl.orchestrate.experiment import run_fingerprint
    from drtl.plan import Roots, evaluate_run, finetune_run, relation_run, source_run

    r = Roots(str(out), p["target"]["pool"], p["target"]["test"], str(out / "reports"))
    m = METHODS["drtl_pre"] if p["relation"]["weighting"] else METHODS["pretrain"]
    synth = str(entry / "synth")
    rel = replace(relation_run(r), inputs={"synth": synth, "drn": str(entry / "drn" / "drn.pt")}, deps=())
    src = init_source(m, p["finetune"])
    pre = source_run(r, src, shots, seed, p)
    pre = replace(pre, inputs={**pre.inputs, "synth": synth}, deps=tuple(d for d in pre.deps if d == rel.id))
    if not src.weighted:  # does not depend on the camera: cached in the aux entry, by its fingerprint
        pre = replace(pre, out=str(entry / "uniform" / run_fingerprint(pre, p, {}, {})))
    ft = finetune_run(r, m, shots, seed, p)
    ft = replace(ft, inputs={**ft.inputs, "init": f"{pre.out}/model.pt"})
    runs = [rel, pre, ft]
    if evaluate:
        model = evaluate_run(r, m, shots, seed, p)
        runs += [replace(model, inputs={**model.inputs, "tile": EVAL_TILE}),
                 evaluate_run(r, METHODS["bicubic"], shots, seed, p)]
    return runs


def _discard_stale(p: dict, runs: list) -> None:
    """Mark each run folder with its input fingerprint before it runs, and empty a folder that holds
    the work of other inputs (so a checkpoint is only resumed by the run that wrote it)."""
    from drtl.io import write_text
    from drtl.orchestrate.experiment import FINGERPRINT, run_fingerprint

    done, outs = {}, {r.id: r.out for r in runs}
    for run in runs:
        fp = done[run.id] = run_fingerprint(run, p, done, outs)
        folder, mark = Path(run.out), Path(run.out) / FINGERPRINT
        old = json.loads(mark.read_text()).get("fp") if mark.is_file() else None
        if old != fp:
            if folder.exists():
                shutil.rmtree(folder)
            if run.stage in _CHECKPOINTED:  # the other stages replace their folder atomically
                write_text(mark, json.dumps({"fp": fp}) + "\n")


def _execute(p: dict, runs: list, say, t0: float) -> dict:
    """run_plan over ``runs``; returns {run id: its record} and says which runs were reused."""
    from drtl.orchestrate.experiment import run_plan
    from drtl.records import read_record

    _discard_stale(p, runs)
    run_plan(p, runs, lambda line: say(re.sub(r"^\[\s*[\d.]+s\] ", "", line)))  # one clock: adapt's
    recs = {r.id: read_record(r.out) for r in runs}
    reused = [i for i, rec in recs.items() if rec.started < t0]
    if reused:
        say(f"unchanged inputs, reused: {', '.join(reused)}")
    return recs


def _ranking(rel_dir: Path, key: str):
    import pandas as pd

    table = pd.read_csv(rel_dir / "graphs" / key / "ranking.csv")
    return table.sort_values(["weight", "similarity"], ascending=False, kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------------------ adapt
def adapt(pairs, scale: int, shots: int, out, params: dict, seed: int = 0, aux_cache=None, echo=print,
          layout: str = "auto", names: list[str] | None = None) -> dict:
    """Adapt an SR model to a camera from its K shots; returns the summary dict (also OUT/summary.json)."""
    from drtl.config import check_params
    from drtl.data.folder import pair_paths
    from drtl.data.validate import check_folder
    from drtl.errors import ConfigError
    from drtl.modelio import load_model, save_model
    from drtl.orchestrate.adapt_summary import write_summary
    from drtl.plan import validate_run, Roots
    from drtl.stages.shots import run_key

    t0 = time.time()

    def say(msg: str) -> None:
        echo(f"[{time.time() - t0:6.1f}s] {msg}")

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

    # 1. data: import + split
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
        recs = _execute(p, [validate_run(Roots(str(out), p["target"]["pool"], p["target"]["test"], ""))], say, t0)
        timings["validate"] = recs["validate/validate"].duration_s
    else:  # the validate stage needs test pairs: check the shots alone
        t = time.time()
        check_folder(data / "shots", scale)
        timings["validate"] = round(time.time() - t, 2)
    say(f"validated {n_all} pairs at x{scale}")

    # 3. the aux cache entry
    cache_root = Path(aux_cache) if aux_cache else default_cache_root()
    p["aux"]["hr"] = resolve_aux_sources(p["aux"]["hr"], cache_root, say)
    aux = ensure_aux(p, cache_root, say)
    timings.update(aux.pop("timings", {}))
    entry = Path(aux["path"])

    # 4-5. relation, pre-training, fine-tuning, evaluation
    runs = adapt_runs(p, out, entry, shots, seed, evaluate=bool(rest))
    rel, pre, ft, *evals = runs
    recs = _execute(p, runs, say, t0)
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
        "uniform_pretrain_cache_hit": None if p["relation"]["weighting"] else recs[pre.id].started < t0,
        "ran": {"pretrain": recs[pre.id].started >= t0, "finetune": recs[ft.id].started >= t0},
        "runs": {r.id: r.out for r in runs},
        "relation": {"weighting": bool(p["relation"]["weighting"]), "tau": float(p["relation"]["tau"]),
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

    built = [Run("synthesize", "synth", str(entry / "synth")), Run("relation", "drn", str(entry / "drn"))]
    invocation = {"orchestrator": "drtl adapt", "pairs": summary["pairs"], "out": str(Path(summary["model"]).parent),
                  "shots": summary["shots"], "seed": summary["seed"], "aux_fingerprint": aux["fingerprint"]}
    track(p, (built if not aux["hit"] else []) + runs, invocation, say)


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


# ------------------------------------------------------------------------------------------ CLI
def _cmd_adapt(a) -> None:
    from drtl.config import apply_threads
    from drtl.data.importers import parse_names

    params = adapt_params(a.params, a.set)
    apply_threads(params)
    s = adapt(a.pairs, a.scale, a.shots, a.out, params, seed=a.seed, aux_cache=a.aux_cache,
              echo=lambda line: print(line, flush=True), layout=a.layout, names=parse_names(a.names))
    if s["eval"]:
        e = s["eval"]
        print(f"adapted x{s['scale']} model for K={s['shots']} -> {s['model']}: PSNR-Y {e['model']['psnr_y']:.3f} dB "
              f"vs bicubic {e['bicubic']['psnr_y']:.3f} dB on {e['n_pairs']} remaining pairs", flush=True)
    else:
        print(f"adapted x{s['scale']} model for K={s['shots']} -> {s['model']} (no pair left to evaluate)", flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m drtl.orchestrate.adapt --pairs ...``: the same as ``drtl adapt ...``."""
    from drtl.cli import main as drtl_main

    return drtl_main(["adapt", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
