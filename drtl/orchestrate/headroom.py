"""Headroom: can any reweighting of the bank change the fine-tuned result on this camera?

Pre-train one model per task family (w = 1 on the family's tasks, 0 elsewhere) and one on the
uniform mixture (or only the ``groups`` asked for), with the params' pre-training budget; fine-tune each on the K shots of
``target.pool`` with the params' fine-tuning budget; evaluate on ``target.test``. Run it on a
*validation split* of the pool (e.g. shots from City100 001-005, evaluation on 006-010), never on
the test pairs. The report gives the spread between the best and the worst family, and the
Spearman correlation between this ranking and the weight the relation gives each family (summed
relation weights for the same K shots), written to ``<outputs>/headroom/``. Every run (the group
pre-trainings ``pretrain/headroom_<group>``, their fine-tunings and evaluations) is a plan run of the
executor of ``drtl experiment``: resumable and keyed by content, so a run is reused only by a run
with the same inputs.

    drtl headroom --params configs/city100_x2_val.yaml
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def headroom_runs(params: dict, groups: list[str]) -> tuple[list, dict]:
    """The plan of the headroom: validation, tasks, bank, the relation of every (K, seed), one
    pre-training per group (``pretrain --group``: w = 1 on the family's tasks, all 1 for
    ``uniform``), and per (group, K, seed) a fine-tuning and an evaluation. Returns (runs,
    {(group, K, seed): the evaluation run, and (K, seed): the relation run})."""
    from dataclasses import replace

    from drtl.methods import METHODS, SOURCES
    from drtl.plan import (Run, bank_for, cells, finetune_run, relation_run, roots, source_run, synthesize_run,
                           validate_run)

    r = roots(params)
    runs = [validate_run(r), synthesize_run(r), *bank_for(r, params)]
    at: dict = {}
    for k, s in cells(params):
        at[(k, s)] = relation_run(r, "drtl", k, s, params)
        runs.append(at[(k, s)])
    for group in groups:
        pre = source_run(r, SOURCES["pretrain_uniform"], None, 0, params)
        name = f"headroom_{group}"
        pre = replace(pre, name=name, out=r.folder("pretrain", name), inputs={**pre.inputs, "group": group}, group="")
        runs.append(pre)
        for k, s in cells(params):
            ft = finetune_run(r, METHODS["pretrain"], k, s, params)
            name = f"headroom_{group}_k{k}_s{s}"
            ft = replace(ft, name=name, out=r.folder("finetune", name), inputs={**ft.inputs, "init": f"{pre.out}/model.pt"},
                         deps=(pre.id,), group="")
            ev = Run("evaluate", name, r.folder("evaluate", name), {"method": group, "shots": k, "seed": s,
                                                                    "data": r.test, "model": f"{ft.out}/model.pt"},
                     (ft.id,))
            runs += [ft, ev]
            at[(group, k, s)] = ev
    return runs, at


def headroom(params: dict, echo=print, groups: list[str] | None = None) -> dict:
    from drtl.config import apply_threads
    from drtl.errors import ConfigError
    from drtl.io import write_text
    from drtl.orchestrate.experiment import run_plan
    from drtl.plan import cells, roots, synthesize_run, validate_run
    from drtl.stages.synthesize import load_synth

    apply_threads(params)
    r = roots(params)
    run_plan(params, [validate_run(r), synthesize_run(r)], echo)  # the families of the bank
    tasks, _, _ = load_synth(r.folder("synthesize"), "train")
    known = ["uniform", *dict.fromkeys(t.family for t in tasks)]
    bad = sorted(set(groups or ()) - set(known))
    if bad:
        raise ConfigError(f"headroom --groups: unknown {', '.join(bad)}; choose from {', '.join(known)}")
    chosen = [g for g in known if not groups or g in groups]
    runs, at = headroom_runs(params, chosen)
    run_plan(params, runs, echo)  # the executor of drtl experiment: resumable, keyed by content
    rows = []
    for group in chosen:
        for k, s in cells(params):
            ev = json.loads((Path(at[(group, k, s)].out) / "eval.json").read_text())
            rel = json.loads((Path(at[(k, s)].out) / "relation.json").read_text())
            fw = rel.get("family_weight", {}).get(f"k{k}_s{s}", {}).get(group)
            rows.append({"pretrained_on": group, "shots": k, "seed": s, "psnr_y": ev["psnr_y"], "family_weight": fw})
            echo(f"headroom {group:>14} K={k} s{s}: {ev['psnr_y']:.3f} dB (relation family weight {fw})")
    out = Path(params["outputs"]) / "headroom"
    df = pd.DataFrame(rows)
    write_text(out / "headroom.csv", df.to_csv(index=False, float_format="%.4f"))
    summary = summarise(df)
    write_text(out / "headroom.json", json.dumps(summary, indent=1) + "\n")
    echo(json.dumps(summary, indent=1))
    return summary


def summarise(df: pd.DataFrame) -> dict:
    """Per K: the best and worst family, their spread, the uniform mixture and the Spearman correlation
    between the families' PSNR and their DRN weight (None when it is undefined: one family, or a
    constant column). Plain JSON values only."""
    summary = {}
    for k, d in df.groupby("shots"):
        fam = d[d.pretrained_on != "uniform"].groupby("pretrained_on").agg(psnr=("psnr_y", "mean"),
                                                                           weight=("family_weight", "mean"))
        uni = d[d.pretrained_on == "uniform"]["psnr_y"]
        if fam.empty:  # --groups uniform
            summary[f"k{k}"] = {"uniform_db": round(float(uni.mean()), 4)}
            continue
        rho = float(fam["psnr"].rank().corr(fam["weight"].rank())) if fam["weight"].notna().all() else None
        summary[f"k{k}"] = {"best": fam["psnr"].idxmax(), "worst": fam["psnr"].idxmin(),
                            "spread_db": round(float(fam["psnr"].max() - fam["psnr"].min()), 4),
                            "uniform_db": round(float(uni.mean()), 4) if len(uni) else None,
                            "best_db": round(float(fam["psnr"].max()), 4),
                            "spearman_psnr_vs_drn_weight": None if rho is None or pd.isna(rho) else round(rho, 3)}
    return summary
