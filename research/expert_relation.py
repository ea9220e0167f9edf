"""Does a family's model restore the K shots best where pre-training on that family transfers best?

The DRN's relation measures how the target *looks*; the headroom (`drtl headroom`) measures what
matters, how well pre-training on each family transfers after fine-tuning. This probe scores the
cheapest transfer-shaped relation: each family's headroom model (pre-trained on that family alone),
applied zero-shot to the LR of the K shots, PSNR-Y against their HR (the shots only, never the
test pairs). Per K it prints the Spearman correlation between that score and the headroom's
fine-tuned test PSNR, and the PSNR that ``softmax(score / tau_db)`` family weights point at
(``expected``, as experiments/relation_vs_headroom.py scores a relation run).

With ``--adapt PARAMS`` it also prints the ``adapted`` score: each model fine-tuned with the
``finetune`` recipe of PARAMS on the top of the K shots, PSNR-Y on their held-out bottom strips
(what the finetune stage validates on; still no test pairs).

    drtl headroom --params configs/control.yaml -S outputs=/tmp/ctl
    python experiments/expert_relation.py /tmp/ctl/headroom outputs/control/target/pool --shots 1 5 --seeds 0 1
    python experiments/expert_relation.py /tmp/ctl/headroom outputs/control/target/pool --adapt configs/control.yaml
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


def adapted(model_path: Path, shots, scale: int, section: dict, seed: int) -> float:
    """The score after adaptation: the model fine-tuned on the top of the K shots with the
    ``finetune`` recipe (best weights kept on the held-out bottom strips, as the finetune stage
    does), then PSNR-Y on those strips. What DRTL needs is the model that transfers *after*
    fine-tuning; a zero-shot score also rewards a model that merely does little harm."""
    from drtl.data.patches import PairSampler, split_rows, strip_cut
    from drtl.modelio import load_model
    from drtl.stages.expert import shot_psnr
    from drtl.stages.train import train_config
    from drtl.train.finetune import finetune

    frac, cfg = float(section["val_fraction"]), train_config(section, seed, "cpu")
    train, val = split_rows([(lr, hr) for _, lr, hr in shots], scale, frac, cfg.lr_patch)
    cuts = [(name, lr, hr, strip_cut(lr.shape[0], frac, cfg.lr_patch)) for name, lr, hr in shots]
    strips = [(name, lr[cut:], hr[cut * scale:]) for name, lr, hr, cut in cuts if cut is not None]
    model = load_model(model_path, expect_scale=scale)[0]
    finetune(model, PairSampler(train, scale, cfg.lr_patch), cfg, val=val,
             eval_every=int(section.get("eval_every", 5)))
    return shot_psnr(model.cpu().eval(), strips, scale)


def main() -> None:
    from drtl.data.folder import load_pairs
    from drtl.stages.shots import shot_names

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("headroom", help="the <outputs>/headroom folder of `drtl headroom`")
    ap.add_argument("pool", help="the pool the headroom's shots came from")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--tau-db", type=float, nargs="+", default=[0.05, 0.1, 0.25, 0.5])
    ap.add_argument("--adapt", metavar="PARAMS", help="also score each model after the finetune recipe of "
                    "this params file on the shots (the `adapted` score)")
    a = ap.parse_args()
    section = None
    if a.adapt:
        from drtl.config import load_params
        section = load_params(a.adapt)["finetune"]
    root = Path(a.headroom)
    test = family_psnr(root / "headroom.csv")
    hr_df = pd.read_csv(root / "headroom.csv")
    models = {p.stem: p for p in sorted((root / "pretrain").glob("*.pt"))}
    rows = []
    for k in a.shots:
        for s in a.seeds:
            shots = load_pairs(a.pool, a.scale, shot_names(a.pool, k, s))
            for g, p in models.items():
                row = {"shots": k, "seed": s, "group": g, "zero_shot": zero_shot(p, shots, a.scale)}
                if section is not None:
                    row["adapted"] = adapted(p, shots, a.scale, section, s)
                rows.append(row)
    df = pd.DataFrame(rows)
    for col in ["zero_shot"] + (["adapted"] if section is not None else []):
        print(f"\n## score: {col}")
        print(df.pivot_table(index="group", columns="shots", values=col).round(3).to_markdown())
        report(df.rename(columns={col: "score"}), hr_df, test, a.tau_db)
    print(f"uniform over families: {np.mean(list(test.values())):.3f}; best family {max(test, key=test.get)} "
          f"{max(test.values()):.3f}")


def report(df: pd.DataFrame, hr_df: pd.DataFrame, test: dict, taus) -> None:
    """Per K: Spearman between the score and the headroom, and the PSNR the weights point at."""
    from drtl.relation.weights import softmax_weights

    for k, d in df.groupby("shots"):
        test_k = hr_df[hr_df.shots == k].groupby("pretrained_on")["psnr_y"].mean()
        fam = d[d.group != "uniform"].groupby("group")["score"].mean()
        rho = float(fam.rank().corr(test_k.reindex(fam.index).rank()))
        line = [f"K={k}: Spearman(score on the shots, headroom test PSNR) {rho:+.2f}; "
                f"best by score {fam.idxmax()}, best by headroom {test_k.reindex(fam.index).idxmax()}"]
        for tau in taus:
            exp = []
            for _, ds in d[d.group != "uniform"].groupby("seed"):
                w = softmax_weights(ds["score"].to_numpy(), tau)
                exp.append(score(dict(zip(ds["group"], w)), test)["expected"])
            line.append(f"tau_db {tau}: expected {np.mean(exp):.3f}")
        print("; ".join(line))


if __name__ == "__main__":
    main()
