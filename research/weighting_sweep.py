"""Weighting choices (2026-11-30, docs/history.md): tau, mixing with uniform and top-k, on a validation split.

The relation stage's DRN and the target's cosines do not depend on how the weights are shaped, so
this script reuses one run of the validation experiment and only redoes what the weights change:
for each variant it recomputes ``weights.json`` from the cosines in the relation graphs
(``w = shape_weights(softmax(cos / tau), mix, top_k)``, :mod:`drtl.relation.weights`), then runs
DRTL-Pre, its fine-tuning and its evaluation with the ordinary stage commands. It prints one row
per (variant, K): PSNR-Y on the validation split's evaluation pairs, the paired difference to
uniform pre-training (``pretrain``, the same fine-tuning) with a bootstrap 95 % interval, the
effective number of tasks and the weight of the top family.

    drtl data import city100 ../shared/datasets/city100-iphonex data/city100_x2_val/pool --scale 2 --names 001-005
    drtl data import city100 ../shared/datasets/city100-iphonex data/city100_x2_val/test --scale 2 --names 006-010
    drtl experiment --params configs/city100_x2_val.yaml          # relation, uniform pre-training, pretrain rows
    python experiments/weighting_sweep.py --params configs/city100_x2_val.yaml \\
        --variant tau=0.05 --variant tau=0.02 --variant tau=0.2 --variant mix=0.5 --variant top_k=5

It reads only the validation split named by the params (never a test split of the table). Runs
already done (their ``eval.json`` exists) are reused, so an interrupted sweep resumes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from drtl.config import load_params
from drtl.methods import run_name
from drtl.relation.weights import effective_tasks, shape_weights, softmax_weights
from drtl.stats import bootstrap_ci

KNOBS = {"tau": float, "mix": float, "top_k": int}


def parse_variant(text: str, base: dict) -> dict:
    """'tau=0.02,mix=0.5' -> {'tau': 0.02, 'mix': 0.5, 'top_k': base's} (unknown knobs refused)."""
    out = {k: KNOBS[k](base.get(k, 0)) for k in KNOBS}
    for part in filter(None, text.split(",")):
        key, _, val = part.partition("=")
        if key not in KNOBS or not val:
            raise SystemExit(f"--variant {text!r}: use KEY=VALUE with KEY in {', '.join(KNOBS)}")
        out[key] = KNOBS[key](val)
    return out


def slug(v: dict) -> str:
    return f"tau{v['tau']:g}_mix{v['mix']:g}_top{v['top_k']}"


def variant_weights(relation: Path, v: dict) -> tuple[dict, dict]:
    """weights.json for variant ``v`` from the graphs' cosines, and {key: (n_eff, top family, its share)}."""
    base = json.loads((relation / "weights.json").read_text())
    out, info = {}, {}
    for key, wmap in base.items():
        rows = _ranking(relation / "graphs" / key / "ranking.csv")
        names = list(wmap)
        sims = np.array([rows[n][0] for n in names])
        w = shape_weights(softmax_weights(sims, v["tau"]), v["mix"], v["top_k"])
        out[key] = {n: float(x) for n, x in zip(names, w)}
        fam: dict[str, float] = {}
        for n, x in zip(names, w):
            fam[rows[n][1]] = fam.get(rows[n][1], 0.0) + float(x)
        top = max(fam, key=fam.get)
        info[key] = (effective_tasks(w), top, fam[top])
    return out, info


def _ranking(path: Path) -> dict[str, tuple[float, str]]:
    import csv

    with open(path, newline="") as f:
        return {r["task"]: (float(r["similarity"]), r["family"]) for r in csv.DictReader(f)}


def drtl(*args: str) -> None:
    exe = Path(sys.executable).with_name("drtl")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "drtl.cli"]
    r = subprocess.run([*cmd, *args])
    if r.returncode != 0:
        raise SystemExit(f"drtl {' '.join(args[:3])} ... failed ({r.returncode})")


def per_image(path: Path) -> dict[str, float]:
    return {r["name"]: r["psnr_y"] for r in json.loads(path.read_text())["per_image"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True, help="the validation split's params (e.g. configs/city100_x2_val.yaml)")
    ap.add_argument("--variant", action="append", required=True, help="KEY=VALUE[,KEY=VALUE] over tau, mix, top_k")
    ap.add_argument("--out", help="sweep folder (default: <outputs>/sweep)")
    a = ap.parse_args()
    params = load_params(a.params)
    root = Path(params["outputs"])
    out = Path(a.out) if a.out else root / "sweep"
    relation, synth = root / "relation", root / "synth"
    if not (relation / "weights.json").is_file():
        raise SystemExit(f"{relation}: no relation run; run `drtl experiment --params {a.params}` first")
    pool, test = params["target"]["pool"], params["target"]["test"]
    shots, seeds = params["experiment"]["shots"], params["experiment"]["seeds"]
    ps = ["--params", a.params]
    print("| variant | K | seed | PSNR-Y | drtl_pre - pretrain [95 % CI] | effective tasks | top family |")
    print("|---|---|---|---|---|---|---|")
    for text in a.variant:
        v = parse_variant(text, params["relation"])
        vdir = out / slug(v)
        weights, info = variant_weights(relation, v)
        (vdir / "relation").mkdir(parents=True, exist_ok=True)
        (vdir / "relation" / "weights.json").write_text(json.dumps(weights, indent=1) + "\n")
        for k in shots:
            for s in seeds:
                name = run_name("drtl_pre", k, s)
                ev = vdir / "eval" / name / "eval.json"
                if not ev.is_file():
                    pre, ft = vdir / "pretrain" / run_name("drtl", k, s), vdir / "finetune" / name
                    drtl("pretrain", *ps, "--method", "drtl", "--shots", str(k), "--seed", str(s), "--synth", str(synth),
                         "--relation", str(vdir / "relation"), "--out", str(pre))
                    drtl("finetune", *ps, "--method", "drtl_pre", "--shots", str(k), "--seed", str(s),
                         "--init", str(pre / "model.pt"), "--pool", pool, "--out", str(ft))
                    drtl("evaluate", *ps, "--method", "drtl_pre", "--shots", str(k), "--seed", str(s),
                         "--data", test, "--model", str(ft / "model.pt"), "--out", str(ev))
                mine, twin = per_image(ev), per_image(root / "eval" / run_name("pretrain", k, s) / "eval.json")
                d = np.array([mine[n] - twin[n] for n in sorted(twin)])
                lo, hi = bootstrap_ci(d)
                n_eff, fam, share = info[f"k{k}_s{s}"]
                print(f"| {text} | {k} | {s} | {np.mean(list(mine.values())):.3f} | {d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] "
                      f"| {n_eff:.1f} | {fam} {share:.0%} |", flush=True)


if __name__ == "__main__":
    main()
