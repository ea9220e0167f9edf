"""Headroom: can any reweighting of the bank change the fine-tuned result on this camera?

Pre-train one model per task family (w = 1 on the family's tasks, 0 elsewhere) and one on the
uniform mixture (or only the ``groups`` asked for), with the params' pre-training budget; fine-tune each on the K shots of
``target.pool`` with the params' fine-tuning budget; evaluate on ``target.test``. Run it on a
*validation split* of the pool (e.g. shots from City100 001-005, evaluation on 006-010), never on
the test pairs. The report gives the spread between the best and the worst family, and the
Spearman correlation between this ranking and the weight the DRN gives each family (summed relation
weights for the same K shots), written to ``<outputs>/headroom/``.

    drtl headroom --params configs/city100_x2_val.yaml
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def headroom(params: dict, echo=print, groups: list[str] | None = None) -> dict:
    from drtl.config import apply_threads
    from drtl.errors import ConfigError
    from drtl.io import write_text
    from drtl.modelio import save_model
    from drtl.orchestrate.experiment import run_plan
    from drtl.records import sha256_json
    from drtl.plan import bank_run, cells, relation_needs, relation_run, roots, synthesize_run, validate_run
    from drtl.similarity import bank_parts
    from drtl.stages.evaluate import run as evaluate
    from drtl.stages.synthesize import load_synth
    from drtl.stages.train import finetune_run, group_model

    apply_threads(params)
    r = roots(params)
    rels = {(k, s): relation_run(r, "drtl", k, s, params) for k, s in cells(params)}
    needs = relation_needs("drtl", params)
    run_plan(params, [validate_run(r), synthesize_run(r), *([bank_run(r, bank_parts(needs))] if needs else []),
                      *rels.values()], echo)  # the executor of drtl experiment: resumable, cached
    out = Path(params["outputs"]) / "headroom"
    tasks, pairs, _ = load_synth(r.folder("synthesize"), "train")
    fams = list(dict.fromkeys(t.family for t in tasks))
    scale = int(params["target"]["scale"])
    fp = Path(r.folder("synthesize")) / "fingerprint.json"
    synth_key = fp.read_text() if fp.is_file() else None
    known = ["uniform", *fams]
    bad = sorted(set(groups or ()) - set(known))
    if bad:
        raise ConfigError(f"headroom --groups: unknown {', '.join(bad)}; choose from {', '.join(known)}")
    rows = []
    for group in [g for g in known if not groups or g in groups]:
        w = [1.0 if group in ("uniform", t.family) else 0.0 for t in tasks]
        model_path, key_path = out / "pretrain" / f"{group}.pt", out / "pretrain" / f"{group}.json"
        key = sha256_json({"group": group, "pretrain": params["pretrain"], "arch": params["arch"], "scale": scale,
                           "device": params["device"], "synth": synth_key})
        if not (model_path.is_file() and key_path.is_file() and key_path.read_text() == key):
            model = group_model(pairs, w, params["arch"], params["pretrain"], scale, params["device"])
            save_model(model_path, model, {"stage": "pretrain", "method": f"headroom_{group}"})
            write_text(key_path, key)  # reused only by a run with the same budget, arch and bank
        for k in params["experiment"]["shots"]:
            for s in params["experiment"]["seeds"]:
                ft = out / "finetune" / f"{group}_k{k}_s{s}"
                finetune_run("pretrain", r.pool, ft, params["arch"], scale, params["finetune"], int(k), int(s),
                             init=model_path, device=params["device"])
                ev = evaluate(params, {"method": group, "data": r.test, "model": str(ft / "model.pt")}, None)
                rel = json.loads((Path(rels[(int(k), int(s))].out) / "relation.json").read_text())
                fw = rel.get("family_weight", {}).get(f"k{k}_s{s}", {}).get(group)
                rows.append({"pretrained_on": group, "shots": int(k), "seed": int(s), "psnr_y": ev["psnr_y"],
                             "family_weight": fw})
                echo(f"headroom {group:>14} K={k} s{s}: {ev['psnr_y']:.3f} dB (DRN family weight {fw})")
    df = pd.DataFrame(rows)
    df.to_csv(out / "headroom.csv", index=False, float_format="%.4f")
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
