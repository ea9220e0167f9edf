"""Paired comparisons across several output folders of the same profile run at different budgets
(for example uniform pre-training 400 / 1600 / 3200 steps on the City100 validation split), side
by side: each folder's rows (mean PSNR-Y per K) and its comparisons with the two-way bootstrap
interval of :mod:`drtl.stats`, so a DRTL-vs-twin gap can be read as a function of the budget.

Each folder is an ``outputs`` root of ``drtl experiment`` (it reads ``eval/*/eval.json``; the
report stage need not have run). Made with, for N in 400 1600 3200 (``synth/`` and ``bank/`` were
copied from the first folder: their keys do not depend on the budget; the runs without
``drn_fitted`` need a bank of experts only, and were given the first folder's DRN + experts bank
with its ``fingerprint.json`` set to the experts-only key, since the expert relation reads only
the experts, trained with the same seed)::

    drtl experiment --params configs/city100_x2.yaml -S target.pool=data/city100_x2_val/pool \\
      -S target.test=data/city100_x2_val/test -S outputs=/work/runs/bN -S threads=1 \\
      -S tracking.enabled=false -S 'experiment.shots=[1,5]' -S 'experiment.seeds=[0,1]' \\
      -S pretrain.iterations=N -S 'experiment.methods=[bicubic,pretrain,uni_cont,fitted_only,drtl_pre]'

    .venv/bin/python research/budget_sweep.py 400=/work/runs/b400 1600=/work/runs/b1600 3200=/work/runs/b3200
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from drtl.stages.report import collect
from drtl.stats import IMAGE_COLUMNS, comparisons

PAIRS = (("pretrain", "bicubic"), ("uni_cont", "pretrain"), ("fitted_only", "uni_cont"), ("drtl_pre", "uni_cont"),
         ("drtl_pre", "fitted_only"), ("drn_fitted", "uni_cont"), ("drn_fitted", "fitted_only"))


def folder_tables(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    paths = sorted(root.glob("eval/*/eval.json"))
    images: list = []
    rows = collect(paths, expand_shots=None, images=images)
    img = pd.DataFrame(images, columns=IMAGE_COLUMNS)
    present = set(img["method"])
    comp = comparisons(img, pairs=[p for p in PAIRS if set(p) <= present])
    return rows, comp


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="LABEL=OUTPUTS_ROOT, e.g. 400=/work/runs/b400")
    a = ap.parse_args(argv)
    means, comps = [], []
    for spec in a.folders:
        label, _, root = spec.partition("=")
        rows, comp = folder_tables(Path(root))
        m = rows[rows["shots"] > 0].groupby(["method", "shots"])["psnr_y"].agg(["mean", "std", "count"])
        means.append(m.assign(budget=label).reset_index())
        comps.append(comp.assign(budget=label))
    m = pd.concat(means)
    print("mean PSNR-Y (dB) over seeds, per budget and K")
    print(m.pivot_table(index="method", columns=["budget", "shots"], values="mean", sort=False).round(3)
          .to_string())
    c = pd.concat(comps)
    c["cell"] = c.apply(lambda r: f"{r.mean_diff:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] ({r.seed_means})", axis=1)
    print("\npaired differences (two-way bootstrap 95 % interval; per-seed means)")
    for (a_, b_), g in c.groupby(["a", "b"], sort=False):
        print(f"\n{a_} - {b_}")
        print(g.pivot_table(index="budget", columns="shots", values="cell", aggfunc="first", sort=False).to_string())


if __name__ == "__main__":
    main()
