"""The whole DAG in one process: synthesize -> relation -> pre-train / meta-train -> fine-tune ->
evaluate -> report, for every (method, shots, seed) of ``params['experiment']``.

This is the plain-Python orchestrator (``drtl experiment``); DVC and Kubeflow call the same stage
functions one run at a time. Finished runs are skipped when rerun with the same inputs: each run
folder holds ``fingerprint.json`` (the params and input runs it was made from), so an interrupted
experiment resumes where it stopped and a changed param redoes exactly the runs it touches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from drtl.data.folder import pair_paths
from drtl.io import write_text
from drtl.stages.evaluate import evaluate
from drtl.stages.relation import relation, run_key
from drtl.stages.report import report
from drtl.stages.synthesize import synthesize
from drtl.stages.train import (finetune_dir, finetune_run, init_for, metatrain_dir, metatrain_run, pretrain_dir,
                               pretrain_run)

log = logging.getLogger("drtl")


def _fp(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cached(folder: Path, fingerprint: str, product: str) -> bool:
    f = folder / "fingerprint.json"
    return (folder / product).exists() and f.is_file() and json.loads(f.read_text()).get("fp") == fingerprint


def _mark(folder: Path, fingerprint: str) -> None:
    write_text(folder / "fingerprint.json", json.dumps({"fp": fingerprint}) + "\n")


K_INDEPENDENT = ("bicubic", "upper_bound")


def _identity(name: str) -> dict:
    """'drtl_pre_k5_s1' -> {'method': 'drtl_pre', 'shots': 5, 'seed': 1} (tags for tracking)."""
    import re

    m = re.fullmatch(r"(.+?)(?:_k(\d+))?_s(\d+)", name)
    if not m:
        return {}
    return {"method": m.group(1), "shots": int(m.group(2)) if m.group(2) else None, "seed": int(m.group(3))}


def eval_runs(params: dict) -> list[tuple[str, str, int | None, int]]:
    """(name, method, shots, seed) of every evaluation the experiment makes, in table order.

    bicubic and upper_bound do not depend on K: one evaluation per seed (shots None), which the
    report repeats for every K. The name is the evaluation folder under ``<outputs>/eval``.
    """
    ex = params["experiment"]
    runs = []
    for s in ex["seeds"]:
        for m in ex["methods"]:
            if m in K_INDEPENDENT:
                runs.append((f"{m}_s{s}", m, None, int(s)))
            else:
                runs += [(f"{m}_{run_key(k, s)}", m, int(k), int(s)) for k in ex["shots"]]
    return runs


def eval_paths(params: dict) -> list[Path]:
    return [Path(params["outputs"]) / "eval" / name / "eval.json" for name, *_ in eval_runs(params)]


def run_experiment(params: dict, echo=print) -> dict:
    t0 = time.time()
    out = Path(params["outputs"])
    tg, ex, dev = params["target"], params["experiment"], params["device"]
    scale, shots, seeds, methods = int(tg["scale"]), [int(k) for k in ex["shots"]], [int(s) for s in ex["seeds"]], ex["methods"]
    arch = params["arch"]
    every = int(params.get("log_every_s", 60))
    last = [time.time()]

    def on_log(entry):  # a line at most every `log_every_s` seconds, so long runs show life in logs
        if time.time() - last[0] >= every:
            last[0] = time.time()
            echo(f"    step {entry['step']}: loss {entry['loss']:.4f} ({entry['elapsed_s']:.0f}s)")

    data_fp = _fp([[n, lp.stat().st_size, hp.stat().st_size] for n, lp, hp in pair_paths(tg["pool"])])
    from drtl.tracking import tracker_from_params

    tracker = tracker_from_params(params)  # a no-op unless tracking.enabled

    def step(folder: Path, fp_obj, product: str, fn, what: str):
        fp = _fp(fp_obj)
        if _cached(folder, fp, product):
            return fp
        t = time.time()
        kind = what.split()[0]
        with tracker.run(kind, folder.name, {"fingerprint": fp, **_identity(folder.name)}) as run:
            fn()
            if tracker.enabled:
                if (folder / "history.json").is_file():
                    run.log_history(json.loads((folder / "history.json").read_text()))
                if product == "eval.json":
                    r = json.loads((folder / product).read_text())
                    run.log_metrics({k: r[k] for k in ("psnr_y", "ssim_y", "psnr_rgb")})
        _mark(folder, fp)
        echo(f"[{time.time() - t0:7.1f}s] {what} ({time.time() - t:.1f}s)")
        return fp

    a = params["aux"]
    synth_dir = out / "synth"
    synth_fp = step(synth_dir, ["synth", a, scale], "synth.json",
                    lambda: synthesize(a["hr"], synth_dir, scale, a["families"], a["tasks"], a["variants"],
                                       a["val_fraction"], a["max_hr_side"], a["seed"]), "synthesize")
    rel_dir = out / "relation"
    rel_fp = step(rel_dir, ["relation", synth_fp, data_fp, params["relation"], shots, seeds], "weights.json",
                  lambda: relation(synth_dir, tg["pool"], rel_dir, scale, shots, seeds, params["relation"], dev),
                  "relation graph")
    rel_metrics = json.loads((rel_dir / "relation.json").read_text())
    echo(f"  DRN accuracy: train {rel_metrics['drn_train_accuracy']:.3f}, "
         f"val {rel_metrics.get('drn_val_accuracy', float('nan')):.3f}; top tasks {rel_metrics['top_tasks']}")

    need_pre = {"pretrain"} & set(methods) or (params["finetune"]["upper_bound_init"] == "pretrain" and "upper_bound" in methods)
    pre_root, meta_root, ft_root, ev_root = out / "pretrain", out / "meta", out / "finetune", out / "eval"
    base_fp = {}
    for s in seeds:
        if need_pre:
            d = pretrain_dir(pre_root, "uniform", 0, s)
            base_fp[("pretrain", s)] = step(d, ["pre", "uniform", synth_fp, arch, params["pretrain"], s, scale], "model.pt",
                                            lambda: pretrain_run("uniform", synth_dir, rel_dir, d, arch, scale,
                                                                 params["pretrain"], s, None, dev, on_log), f"pretrain uniform s{s}")
        if "maml" in methods:
            d = metatrain_dir(meta_root, "maml", 0, s)
            base_fp[("maml", s)] = step(d, ["meta", "maml", synth_fp, arch, params["meta"], s, scale], "model.pt",
                                        lambda: metatrain_run("maml", synth_dir, rel_dir, d, arch, scale, params["meta"],
                                                              s, None, dev, on_log), f"metatrain maml s{s}")
        for k in shots:
            if "drtl_pre" in methods:
                d = pretrain_dir(pre_root, "drtl", k, s)
                base_fp[("drtl_pre", k, s)] = step(
                    d, ["pre", "drtl", synth_fp, rel_fp, arch, params["pretrain"], k, s, scale], "model.pt",
                    lambda: pretrain_run("drtl", synth_dir, rel_dir, d, arch, scale, params["pretrain"], s, k, dev, on_log),
                    f"pretrain drtl {run_key(k, s)}")
            if "drtl_meta" in methods:
                d = metatrain_dir(meta_root, "drtl", k, s)
                base_fp[("drtl_meta", k, s)] = step(
                    d, ["meta", "drtl", synth_fp, rel_fp, arch, params["meta"], k, s, scale], "model.pt",
                    lambda: metatrain_run("drtl", synth_dir, rel_dir, d, arch, scale, params["meta"], s, k, dev, on_log),
                    f"metatrain drtl {run_key(k, s)}")

    evals = []
    ft = params["finetune"]
    for name, m, k, s in eval_runs(params):
        e = ev_root / name / "eval.json"
        if m == "bicubic":
            model, ev_fp = None, ["bicubic", tg["test"]]
        else:
            kk = shots[0] if k is None else k  # upper_bound: K-independent, trained once per seed
            d = ft_root / f"upper_bound_s{s}" if m == "upper_bound" else finetune_dir(ft_root, m, kk, s)
            init = init_for(m, kk, s, pre_root, meta_root, ft["upper_bound_init"])
            parent = base_fp.get((m, s)) or base_fp.get((m, kk, s)) or (
                base_fp.get(("pretrain", s)) if m == "upper_bound" and init else None)
            fp = step(d, ["ft", m, k, s, data_fp, arch, ft, parent, scale], "model.pt",
                      lambda: finetune_run(m, tg["pool"], d, arch, scale, ft, kk, s, init, dev, on_log),
                      f"finetune {d.name}")
            model, ev_fp = d / "model.pt", [m, fp, tg["test"]]
        step(e.parent, ev_fp, "eval.json", lambda: evaluate(m, tg["test"], scale, e, model, k, s, dev),
             f"evaluate {name}")
        evals.append(e)
    rep = report(evals, out / "reports", expand_shots=shots)
    echo(f"[{time.time() - t0:7.1f}s] report: {out / 'reports' / 'results.csv'} ({rep['n_rows']} rows)")
    return rep
