"""Does a family's model restore the K shots best where pre-training on that family transfers best?

The DRN's relation measures how the target *looks*; the headroom (`drtl headroom`) measures what
matters, how well pre-training on each family transfers after fine-tuning. This probe scores the
cheapest transfer-shaped relation: each family's headroom model (pre-trained on that family alone),
applied zero-shot to the LR of the K shots, PSNR-Y against their HR (the shots only, never the
test pairs). Per K it prints the Spearman correlation between that score and the headroom's
fine-tuned test PSNR, and the PSNR that ``softmax(score / tau_db)`` family weights point at
(``expected``, as experiments/relation_vs_headroom.py scores a relation run).

    drtl headroom --params configs/control.yaml -S outputs=/tmp/ctl
    python experiments/expert_relation.py /tmp/ctl/headroom outputs/control/target/pool --shots 1 5 --seeds 0 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from relation_vs_headroom import family_psnr, score  # noqa: E402


def zero_shot(model_path: Path, shots, scale: int) -> float:
    """The expert relation's own score (drtl.stages.expert.shot_psnr) of a headroom model."""
    from drtl.modelio import load_model
    from drtl.stages.expert import shot_psnr

    return shot_psnr(load_model(model_path, expect_scale=scale)[0], shots, scale)


def main() -> None:
    from drtl.data.folder import load_pairs
    from drtl.relation.weights import softmax_weights
    from drtl.stages.shots import shot_names

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("headroom", help="the <outputs>/headroom folder of `drtl headroom`")
    ap.add_argument("pool", help="the pool the headroom's shots came from")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--tau-db", type=float, nargs="+", default=[0.05, 0.1, 0.25, 0.5])
    a = ap.parse_args()
    root = Path(a.headroom)
    test = family_psnr(root / "headroom.csv")
    hr_df = pd.read_csv(root / "headroom.csv")
    models = {p.stem: p for p in sorted((root / "pretrain").glob("*.pt"))}
    rows = []
    for k in a.shots:
        for s in a.seeds:
            shots = load_pairs(a.pool, a.scale, shot_names(a.pool, k, s))
            for g, p in models.items():
                rows.append({"shots": k, "seed": s, "group": g, "zero_shot": zero_shot(p, shots, a.scale)})
    df = pd.DataFrame(rows)
    print(df.pivot_table(index="group", columns="shots", values="zero_shot").round(3).to_markdown())
    for k, d in df.groupby("shots"):
        test_k = hr_df[hr_df.shots == k].groupby("pretrained_on")["psnr_y"].mean()
        fam = d[d.group != "uniform"].groupby("group")["zero_shot"].mean()
        rho = float(fam.rank().corr(test_k.reindex(fam.index).rank()))
        line = [f"K={k}: Spearman(zero-shot on the shots, headroom test PSNR) {rho:+.2f}; "
                f"best by zero-shot {fam.idxmax()}, best by headroom {test_k.reindex(fam.index).idxmax()}"]
        for tau in a.tau_db:
            exp = []
            for _, ds in d[d.group != "uniform"].groupby("seed"):
                w = softmax_weights(ds["zero_shot"].to_numpy(), tau)
                exp.append(score(dict(zip(ds["group"], w)), test)["expected"])
            line.append(f"tau_db {tau}: expected {np.mean(exp):.3f}")
        print("; ".join(line))
    print(f"uniform over families: {np.mean(list(test.values())):.3f}; best family {max(test, key=test.get)} "
          f"{max(test.values()):.3f}")


if __name__ == "__main__":
    main()
