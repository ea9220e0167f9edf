"""Does a relation run give its weight to the families that help this camera? (docs/results.md)

`drtl headroom` (run on a validation split of the pool, never on test pairs) measures, for each
family of the bank, the fine-tuned PSNR after pre-training on that family alone. This script scores
one or more relation runs made on the same validation split against that ranking, so that a DRN
choice (its input, its training) is made on the validation split only:

- ``expected``: sum over families of (family weight x the family's headroom PSNR), the PSNR the
  weighting points at (uniform weights give the mean over families);
- ``best-2``: the weight on the two best families of the headroom;
- ``rho``: Spearman correlation between family weight and family PSNR;
- the top family and its weight.

    drtl headroom --params configs/city100_x2_val.yaml ...
    drtl relation --params configs/city100_x2_val.yaml --synth outputs/city100_x2_val/synth --out /tmp/rel_a -S ...
    python experiments/relation_vs_headroom.py outputs/city100_x2_val/headroom/headroom.csv /tmp/rel_a /tmp/rel_b
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd


def family_psnr(headroom_csv: Path) -> dict[str, float]:
    """{family: mean PSNR-Y} of a headroom table (the uniform row left out)."""
    acc: dict[str, list[float]] = {}
    with open(headroom_csv, newline="") as f:
        for r in csv.DictReader(f):
            if r["pretrained_on"] != "uniform":
                acc.setdefault(r["pretrained_on"], []).append(float(r["psnr_y"]))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def score(weights: dict[str, float], psnr: dict[str, float]) -> dict:
    fams = sorted(psnr)
    w = np.array([weights.get(f, 0.0) for f in fams])
    p = np.array([psnr[f] for f in fams])
    w = w / w.sum() if w.sum() > 0 else np.full(len(fams), 1 / len(fams))
    best2 = set(sorted(fams, key=psnr.get)[-2:])
    rho = float(pd.Series(w).rank().corr(pd.Series(p).rank()))  # Spearman, as `drtl headroom` computes it
    top = fams[int(np.argmax(w))]
    return {"expected": float(w @ p), "best2": float(sum(x for f, x in zip(fams, w) if f in best2)), "rho": rho,
            "top": top, "top_w": float(w.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("headroom", help="headroom.csv of `drtl headroom` on the validation split")
    ap.add_argument("relation", nargs="+", help="relation run folders (relation.json) on the same split")
    a = ap.parse_args()
    psnr = family_psnr(Path(a.headroom))
    uniform = float(np.mean(list(psnr.values())))
    best = max(psnr, key=psnr.get)
    print(f"headroom: best family {best} {psnr[best]:.3f} dB, mean over families {uniform:.3f} dB\n")
    print("| relation run | DRN held-out acc | K | runs | expected PSNR | weight on best 2 | Spearman | top family |")
    print("|---|---|---|---|---|---|---|---|")
    for rel in a.relation:
        meta = json.loads((Path(rel) / "relation.json").read_text())
        by_k: dict[str, list[dict]] = {}
        for key, fw in meta["family_weight"].items():
            by_k.setdefault(key.split("_")[0], []).append(score(fw, psnr))
        for k, rows in sorted(by_k.items(), key=lambda kv: int(kv[0][1:])):
            tops = sorted({r["top"] for r in rows})
            print(f"| {Path(rel).name} | {meta['drn_val_accuracy']:.2f} | {k[1:]} | {len(rows)} "
                  f"| {np.mean([r['expected'] for r in rows]):.3f} | {np.mean([r['best2'] for r in rows]):.2f} "
                  f"| {np.nanmean([r['rho'] for r in rows]):+.2f} | {', '.join(tops)} |")


if __name__ == "__main__":
    main()
