"""Does a camera-fitted auxiliary task help? (docs/results.md, docs/history.md)

On a validation split (e.g. configs/city100_x2_val.yaml: shots from 001-005, evaluation on
006-010, never the test pairs), for each K: fit :func:`drtl.degradations.fitted.fit_camera` to the
K shots, degrade the bank's training HR images with it, and pre-train on those pairs; then
fine-tune on the same K shots with the profile's budget and evaluate on the split's evaluation
pairs. Variants (``--variant``):

- ``fit_cont``: the uniform pre-trained model continued ``--steps`` steps on the fitted task only;
- ``fit_mix``: the same continuation, half the weight on the fitted task, half spread uniformly
  over the bank;
- ``uni_cont``: the same continuation with uniform weights over the bank (the equal-compute control);
- ``fit_fresh``: fresh weights, pre-trained with the profile's budget on the fitted task only.

The uniform model and the synthesized bank come from a ``drtl experiment`` run of the same params
(``outputs/<...>/pretrain/uniform_s<S>``). Prints one row per (variant, K) with PSNR-Y and writes
``--out/results.csv``. Example::

    drtl experiment --params configs/city100_x2_val.yaml -S tracking.enabled=false
    python experiments/fitted_camera.py --params configs/city100_x2_val.yaml --out /tmp/fitted
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from drtl.config import load_params
from drtl.data.folder import load_pairs
from drtl.degradations.fitted import apply_fitted
from drtl.relation import fitted
from drtl.stages.evaluate import evaluate
from drtl.stages.shots import shot_names
from drtl.stages.synthesize import load_synth
from drtl.stages.train import _samplers, _save, _start_model, finetune_run, train_config
from drtl.train import pretrain


def fit_shots(pool, scale: int, shots: int, seed: int):
    """The K shots of (shots, seed) as (name, lr, hr) and the camera fitted to them."""
    shot = load_pairs(pool, scale, shot_names(pool, shots, seed))
    return shot, fitted.fit_shots(shot, scale, seed)


def reproduce(tasks, pool, test, scale: int, seed: int, shots, out: Path) -> None:
    """PSNR (RGB, border 2 s) of each degradation's LR against the camera's real LR on the evaluation pairs."""
    import pandas as pd

    from drtl.degradations.tasks import make_pair
    from drtl.metrics import psnr

    ev = load_pairs(test, scale)
    rows = []
    for t in tasks:
        rng = np.random.default_rng(seed)
        v = [psnr(make_pair(hr, t, scale, rng)[0], lr, crop_border=2 * scale, y_channel=False) for _, lr, hr in ev]
        rows.append({"degradation": t.name, "family": t.family, "psnr_rgb": float(np.mean(v))})
    for k in shots:
        cam = fit_shots(pool, scale, k, seed)[1]
        v = [psnr(apply_fitted(hr, cam), lr, crop_border=2 * scale, y_channel=False) for _, lr, hr in ev]
        rows.append({"degradation": f"fitted_k{k}", "family": "fitted", "psnr_rgb": float(np.mean(v))})
    df = pd.DataFrame(rows).sort_values("psnr_rgb", ascending=False)
    df.to_csv(out / "reproduce.csv", index=False)
    print(df.groupby("family")["psnr_rgb"].max().sort_values(ascending=False).round(2).to_string())
    print(df.head(8).round(2).to_string(index=False))


def drn_view(root: Path, tasks, bank, hrs, pool, scale: int, seed: int, shots, patches: int) -> None:
    """Cosines in the trained DRN's embedding (mean over each task's pairs, grid crops)."""
    from drtl.relation import embed_images
    from drtl.relation.drnfile import load_drn

    enc, _, state = load_drn(root / "relation" / "drn.pt")
    patch = int(state["config"].get("lr_patch", 32))

    def emb(lrs, hrs_):
        return embed_images(enc, lrs, patch, patches, hr_images=hrs_)

    means = np.stack([emb([lr for lr, _ in p[::2]], [hr for _, hr in p[::2]]) for p in bank])
    for k in shots:
        shot, cam = fit_shots(pool, scale, k, seed)
        target = emb([lr for _, lr, _ in shot], [hr for _, _, hr in shot])
        cos = means @ target
        print(f"K={k} seed {seed}: best bank task {cos.max():.3f} ({tasks[int(cos.argmax())].name})")
        for ns in (1.0, 0.3, 0.0):
            rng = np.random.default_rng(0)
            c = float(emb([apply_fitted(hr, cam, rng, ns) for hr in hrs], hrs) @ target)
            print(f"  fitted, noise x{ns}: {c:.3f}, rank {int((cos > c).sum()) + 1} of {len(cos) + 1}")


def summarise(root: Path, dirs: list[Path], out: Path) -> None:
    """Per-image rows of every eval.json (the variants' and the experiment's), then paired comparisons."""
    import re

    import pandas as pd

    from drtl.methods import METHODS
    from drtl.stats import comparisons, markdown

    rows = []
    for ev in [p for d in dirs for p in d.glob("*/eval.json")] + list((root / "eval").glob("*/eval.json")):
        m = re.fullmatch(r"(.+?)(?:_k(\d+))?_s(\d+)", ev.parent.name)
        rep = json.loads(ev.read_text())
        for im in rep["per_image"]:
            rows.append({"method": m.group(1), "shots": int(m.group(2) or 0), "seed": int(m.group(3)),
                         "image": im["name"], "psnr_y": im["psnr_y"]})
    images = pd.DataFrame(rows)
    table = images.groupby(["method", "shots"])["psnr_y"].mean().unstack().round(3)
    mine = sorted(set(images["method"]) - set(METHODS) - {"uni_cont"})  # the variants (any --tag)
    pairs = [(m, b) for m in mine for b in ("uni_cont", "pretrain", "drtl_pre")] + [
        ("uni_cont", "pretrain"), ("drtl_pre", "pretrain")]
    comp = comparisons(images, pairs)
    text = table.to_markdown() + "\n\n" + markdown(comp) + "\n"
    (out / "comparisons.md").write_text(text)
    print(text)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shots", type=int, nargs="+", default=None)
    ap.add_argument("--steps", type=int, default=200, help="continuation steps (fit_cont, fit_mix, uni_cont)")
    ap.add_argument("--variant", action="append", default=None,
                    choices=["fit_cont", "fit_mix", "uni_cont", "fit_fresh"])
    ap.add_argument("--tag", default="", help="appended to the variants' run names (e.g. n0), so that "
                    "--summarise can compare settings")
    ap.add_argument("--noise-scale", type=float, default=1.0,
                    help="the fitted noise's std is scaled by this (0: the fitted filter without noise)")
    ap.add_argument("--drn", action="store_true",
                    help="only print where the relation stage's DRN puts the fitted task: the cosine of the "
                         "target's embedding to the fitted task's mean embedding (at noise scales 1, 0.3, 0) "
                         "against the bank tasks' mean embeddings")
    ap.add_argument("--reproduce", action="store_true",
                    help="only print how well each bank task and the fitted camera reproduce the evaluation "
                         "pairs' LR from their HR (PSNR, RGB)")
    ap.add_argument("--summarise", nargs="+", metavar="DIR", default=None,
                    help="only compare: the variants' runs in DIR... against the experiment's own rows "
                         "(outputs/<...>/eval), paired per image and seed, written to --out/comparisons.md")
    ap.add_argument("-S", dest="overrides", action="append", default=[])
    a = ap.parse_args(argv)
    params = load_params(a.params, a.overrides)
    torch.set_num_threads(int(params.get("threads") or 1))
    scale, pool, test = int(params["target"]["scale"]), params["target"]["pool"], params["target"]["test"]
    root = Path(params["outputs"])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.summarise:  # reads eval.json files only
        return summarise(root, [Path(d) for d in a.summarise], out)
    uniform = root / "pretrain" / f"uniform_s{a.seed}" / "model.pt"
    tasks, bank, _ = load_synth(root / "synth", "train")
    hrs = fitted.train_hrs(bank[0])  # the training HR images (shared by every task)
    shots = a.shots or params["experiment"]["shots"]
    if a.drn:
        return drn_view(root, tasks, bank, hrs, pool, scale, a.seed, shots, int(params["relation"]["patches_per_image"]))
    if a.reproduce:
        return reproduce(tasks, pool, test, scale, a.seed, shots, out)
    rows = []
    for k in shots:
        shot, cam = fit_shots(pool, scale, k, a.seed)
        fit = fitted.fitted_pairs(cam, hrs, seed=1000 + a.seed, noise_scale=a.noise_scale, variants=2)
        print(f"K={k}: fitted on {[n for n, _, _ in shot]}, fit PSNR {cam.fit_psnr:.2f} dB, {len(fit)} fitted pairs",
              flush=True)
        for variant in a.variant or ["fit_cont", "fit_mix", "uni_cont", "fit_fresh"]:
            name = variant if variant == "uni_cont" or not a.tag else f"{variant}_{a.tag}"
            run = out / f"{name}_k{k}_s{a.seed}"
            if not (run / "eval.json").is_file():
                section = dict(params["pretrain"])
                if variant != "fit_fresh":
                    section["iterations"] = a.steps
                cfg = train_config(section, a.seed, params["device"])
                model = _start_model(params["arch"], scale, a.seed, None if variant == "fit_fresh" else uniform)
                n = len(bank)
                if variant in ("fit_cont", "fit_fresh"):
                    samplers, w = _samplers([fit], scale, cfg.lr_patch, "pretrain"), None
                elif variant == "fit_mix":
                    samplers = _samplers([fit] + bank, scale, cfg.lr_patch, "pretrain")
                    w = [0.5] + [0.5 / n] * n
                else:
                    samplers, w = _samplers(bank, scale, cfg.lr_patch, "pretrain"), None
                pretrain(model, samplers, w, cfg, tasks_per_step=section.get("tasks_per_step"))
                _save(run / "pre", model.cpu(), {"stage": "pretrain", "method": variant, "seed": a.seed,
                                                 "shots": k, "train": cfg.to_dict()}, {})
                ft = dict(params["finetune"])
                finetune_run("drtl_pre", pool, run / "ft", params["arch"], scale, ft, k, a.seed,
                             init=run / "pre" / "model.pt", device=params["device"])
                evaluate(variant, test, scale, run / "eval.json", run / "ft" / "model.pt", k, a.seed)
            rep = json.loads((run / "eval.json").read_text())
            rows.append({"variant": name, "shots": k, "seed": a.seed, "psnr_y": rep["psnr_y"],
                         "fit_psnr": cam.fit_psnr})
            print(f"  {name:10s} K={k} PSNR-Y {rep['psnr_y']:.3f}", flush=True)
    import pandas as pd

    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)


if __name__ == "__main__":
    main()
