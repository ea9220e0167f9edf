"""Does a camera-fitted auxiliary task help? (issue 10: "a family fitted to the camera's own statistics")

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
from drtl.degradations.fitted import apply_fitted, fit_camera
from drtl.stages.evaluate import evaluate
from drtl.stages.shots import shot_names
from drtl.stages.synthesize import load_synth
from drtl.stages.train import _samplers, _save, _start_model, finetune_run, train_config
from drtl.train import pretrain


def fitted_pairs(cam, hrs, seed: int, variants: int = 2):
    rng = np.random.default_rng(seed)
    return [(apply_fitted(hr, cam, rng), hr) for hr in hrs for _ in range(variants)]


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
        cam = fit_camera([(lr, hr) for _, lr, hr in load_pairs(pool, scale, shot_names(pool, k, seed))], scale, seed=seed)
        v = [psnr(apply_fitted(hr, cam), lr, crop_border=2 * scale, y_channel=False) for _, lr, hr in ev]
        rows.append({"degradation": f"fitted_k{k}", "family": "fitted", "psnr_rgb": float(np.mean(v))})
    df = pd.DataFrame(rows).sort_values("psnr_rgb", ascending=False)
    df.to_csv(out / "reproduce.csv", index=False)
    print(df.groupby("family")["psnr_rgb"].max().sort_values(ascending=False).round(2).to_string())
    print(df.head(8).round(2).to_string(index=False))


def summarise(root: Path, dirs: list[Path], out: Path) -> None:
    """Per-image rows of every eval.json (the variants' and the experiment's), then paired comparisons."""
    import re

    import pandas as pd

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
    pairs = [(a, b) for a, b in [("fit_cont", "pretrain"), ("fit_cont", "uni_cont"), ("uni_cont", "pretrain"),
                                 ("fit_mix", "uni_cont"), ("fit_fresh", "pretrain"), ("fit_cont", "drtl_pre"),
                                 ("drtl_pre", "pretrain")]]
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
    uniform = root / "pretrain" / f"uniform_s{a.seed}" / "model.pt"
    tasks, bank, _ = load_synth(root / "synth", "train")
    hrs = list({id(h): h for _, h in bank[0]}.values())
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.summarise:
        return summarise(root, [Path(d) for d in a.summarise], out)
    if a.reproduce:
        return reproduce(tasks, pool, test, scale, a.seed, a.shots or params["experiment"]["shots"], out)
    rows = []
    for k in a.shots or params["experiment"]["shots"]:
        names = shot_names(pool, k, a.seed)
        cam = fit_camera([(lr, hr) for _, lr, hr in load_pairs(pool, scale, names)], scale, seed=a.seed)
        fit = fitted_pairs(cam, hrs, seed=1000 + a.seed)
        print(f"K={k}: fitted on {names}, fit PSNR {cam.fit_psnr:.2f} dB, {len(fit)} fitted pairs", flush=True)
        for variant in a.variant or ["fit_cont", "fit_mix", "uni_cont", "fit_fresh"]:
            run = out / f"{variant}_k{k}_s{a.seed}"
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
            rows.append({"variant": variant, "shots": k, "seed": a.seed, "psnr_y": rep["psnr_y"],
                         "fit_psnr": cam.fit_psnr})
            print(f"  {variant:10s} K={k} PSNR-Y {rep['psnr_y']:.3f}", flush=True)
    import pandas as pd

    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)


if __name__ == "__main__":
    main()
