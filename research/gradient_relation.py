"""Would a gradient-based relation find the families that help? (docs/results.md, docs/history.md)

The DRN's weights are what the positive control misses: pre-training on the held-out task's own
family alone is +0.25 dB above uniform at K=1, and the DRN gives that family no weight. This script
measures an alternative relation that needs no embedding: at the uniform pre-trained model, the
cosine between the gradient of the pixel loss on each auxiliary task and the gradient on the K
target shots (a task-affinity measure: training on a task whose gradient points where the target's
does moves the model towards the target). Weights = softmax(cos / tau), summed per family and
scored against a headroom table made on the same split (``experiments/relation_vs_headroom.py``'s
expected PSNR, weight on the best two families, Spearman).

    python experiments/gradient_relation.py --params configs/control.yaml \\
        --model outputs/control/pretrain/uniform_s0/model.pt --headroom outputs/control/headroom/headroom.csv

Reads the params' synth folder and target pool; the test pairs are never read. Nothing here
chooses a setting; it measures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from relation_vs_headroom import family_psnr, score

from drtl.config import load_params
from drtl.data.folder import load_pairs
from drtl.data.patches import PairSampler
from drtl.modelio import load_model
from drtl.relation import softmax_weights
from drtl.stages.shots import shot_names
from drtl.stages.synthesize import load_synth
from drtl.train.common import pixel_loss


def mean_gradient(model, sampler, batches: int, batch: int, gen) -> torch.Tensor:
    """The pixel-loss gradient of ``model`` (flattened), averaged over ``batches`` batches."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = torch.zeros(sum(p.numel() for p in params))
    for _ in range(batches):
        lr, hr = sampler.sample(batch, gen)
        grads = torch.autograd.grad(pixel_loss(model(lr), hr, "l1"), params)
        total += torch.cat([g.reshape(-1) for g in grads])
    return total / batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--model", required=True, help="the uniform pre-trained model (pretrain/uniform_s<S>/model.pt)")
    ap.add_argument("--headroom", help="headroom.csv of `drtl headroom` on the same split")
    ap.add_argument("--shots", type=int, nargs="+", default=None, help="default: experiment.shots")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default: experiment.seeds")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--taus", type=float, nargs="+", default=[0.02, 0.05, 0.1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--center", action="store_true",
                    help="subtract the bank's mean gradient (the uniform objective's own direction) first")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    params = load_params(a.params, [])
    scale = int(params["target"]["scale"])
    tasks, pairs, _ = load_synth(Path(params["outputs"]) / "synth", "train")
    fams = [t.family for t in tasks]
    model, _ = load_model(a.model, expect_scale=scale)
    model.train()
    gen = torch.Generator().manual_seed(0)
    g_tasks = torch.stack([mean_gradient(model, PairSampler(p, scale, a.patch), a.batches, a.batch, gen)
                           for p in pairs])
    g_mean = g_tasks.mean(0) if a.center else torch.zeros(g_tasks.shape[1])
    g_tasks = torch.nn.functional.normalize(g_tasks - g_mean, dim=1)
    psnr = family_psnr(Path(a.headroom)) if a.headroom else None
    print("| K | seed | tau | top family (weight) | weight on the headroom's best family | expected PSNR | best 2 | Spearman |")
    print("|---|---|---|---|---|---|---|---|")
    pool = params["target"]["pool"]
    for k in a.shots or params["experiment"]["shots"]:
        for s in a.seeds or params["experiment"]["seeds"]:
            shots = [(lr, hr) for _, lr, hr in load_pairs(pool, scale, shot_names(pool, k, s))]
            g_t = mean_gradient(model, PairSampler(shots, scale, a.patch), a.batches, a.batch, gen)
            cos = (g_tasks @ torch.nn.functional.normalize(g_t - g_mean, dim=0)).numpy()
            fam_cos = {f: float(np.max(cos[[i for i, x in enumerate(fams) if x == f]])) for f in dict.fromkeys(fams)}
            print(f"<!-- K={k} s{s} family max cosine: "
                  + ", ".join(f"{f} {c:+.2f}" for f, c in sorted(fam_cos.items(), key=lambda kv: -kv[1])) + " -->")
            for tau in a.taus:
                w = softmax_weights(cos, tau)
                fw: dict[str, float] = {}
                for f, x in zip(fams, w):
                    fw[f] = fw.get(f, 0.0) + float(x)
                top = max(fw, key=fw.get)
                if psnr:
                    sc = score(fw, psnr)
                    best = max(psnr, key=psnr.get)
                    print(f"| {k} | {s} | {tau} | {top} ({fw[top]:.2f}) | {fw.get(best, 0.0):.2f} "
                          f"| {sc['expected']:.3f} | {sc['best2']:.2f} | {sc['rho']:+.2f} |")
                else:
                    print(f"| {k} | {s} | {tau} | {top} ({fw[top]:.2f}) | | | | |")


if __name__ == "__main__":
    main()
