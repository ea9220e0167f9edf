"""Made-up run records shaped like a pipeline run (no training): for the tracking tests, the MLflow UI test,
the tracking benchmark and ``scripts/mlflow_ui_screenshot.py --demo``.

:func:`write_demo_records` writes, under ``root``, what the stage wrapper writes: run folders with a
``run.json``, a small history and a small artifact each, evaluation outputs ``eval/<name>.json``
with ``eval/<name>.run.json``, two paired-folder manifests as inputs, and a report record whose
``aggregate.csv`` / ``results.md`` / ``psnr_vs_shots.png`` come from the made-up evaluations.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from drtl.methods import METHODS, init_source, run_name
from drtl.records import RunRecord, write_record

PROV = {"git_commit": "0" * 40, "git_dirty": False, "dvc_lock_sha256": "1" * 64, "params_sha256": "2" * 64}


def _psnr(method: str, shots, seed: int) -> float:
    base = {"bicubic": 27.7, "scratch": 28.1, "pretrain": 28.4, "maml": 28.3, "drtl_pre": 28.45,
            "drtl_meta": 28.35, "upper_bound": 28.2}.get(method, 28.0)
    return round(base + (0.05 * (shots or 0) ** 0.5 if shots else 0) + 0.01 * seed, 4)


def _manifest(folder: Path, n: int) -> dict:
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    rows = ["name,hr_path,lr_path,hr_width,hr_height,lr_width,lr_height,scale,hr_sha256,lr_sha256"]
    rows += [f"{i:03d},HR/{i:03d}.png,LR/{i:03d}.png,64,64,32,32,2,{'a' * 64},{'b' * 64}" for i in range(n)]
    text = "\n".join(rows) + "\n"
    (folder / "manifest.csv").write_text(text)
    return {"path": str(folder), "digest": hashlib.sha256(text.encode()).hexdigest()}


def write_demo_records(root: str | Path, methods=("scratch", "drtl_pre"), shots=(1, 5), seeds=(0,),
                       steps: int = 5, report: bool = True) -> list[RunRecord]:
    """Write the records of a made-up pipeline run under ``root``; returns them as read back (in
    the order written: stages, then per method / seed / K)."""
    from drtl.records import read_record

    root = Path(root)
    pool = {**_manifest(root / "data" / "pool", 5), "context": "target_pool"}
    test = {**_manifest(root / "data" / "test", 3), "context": "target_test"}
    t = time.time() - 3600.0  # an hour ago, one run after the other
    paths = []

    def run(stage, name, ident, params, metrics=None, history=True, inputs=(), artifact="model.pt"):
        nonlocal t
        folder = root / stage / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / artifact).write_bytes(b"w" * 256)
        hist = None
        if history:
            log = [{"step": s, "loss": round(0.1 / s, 5), "lr": 1e-4 * (1 - s / (steps + 1)), "elapsed_s": 0.1 * s}
                   for s in range(1, steps + 1)]
            (folder / "history.json").write_text(json.dumps({"kind": stage, "iterations": steps, "log": log,
                                                             "wall_s": 0.1 * steps}))
            hist = "history.json"
        rec = RunRecord(stage=stage, name=name, identity=ident, params=params, metrics=metrics or {}, history=hist,
                        artifacts=[artifact], inputs=list(inputs), provenance=PROV, started=t, duration_s=2.5)
        t += 3
        paths.append(write_record(folder, rec))

    run("synthesize", "synth", {}, {"aux.tasks": 29, "aux.seed": 0}, {"n_tasks": 29}, history=False,
        artifact="tasks.yaml")
    run("relation", "relation", {}, {"relation.tau": 0.05}, {"drn_train_accuracy": 0.48, "drn_val_accuracy": 0.4},
        inputs=[pool])
    evals = []
    sources_done = set()
    for m in methods:
        meth = METHODS[m]
        ks = list(shots) if meth.per_shot else [None]
        for seed in seeds:
            for k in ks:
                src = init_source(meth, {"upper_bound_init": "pretrain"})
                if src is not None:
                    sk = k if src.per_shot else None
                    if (src.key, sk, seed) not in sources_done:
                        sources_done.add((src.key, sk, seed))
                        run(src.stage, src.name(sk, seed), {"method": src.variant, "shots": sk, "seed": seed},
                            {f"{src.stage}.iterations": steps}, {"final_loss": 0.01}, inputs=[pool])
                name = run_name(m, k, seed)
                if meth.trains:  # upper_bound's record says shots=1 (the CLI default): dropped when logged
                    run("finetune", name, {"method": m, "shots": k if meth.per_shot else 1, "seed": seed},
                        {"finetune.iterations": steps, "finetune.lr": 1e-4}, {"final_loss": 0.02}, inputs=[pool])
                psnr = _psnr(m, k, seed)
                ev = {"method": m, "shots": k, "seed": seed, "psnr_y": psnr, "ssim_y": round(0.83 + psnr / 1000, 4),
                      "psnr_rgb": psnr - 1.5, "per_image": [{"name": "000", "psnr_y": psnr}], "n_images": 3,
                      "scale": 2, "crop_border": 2}
                (root / "eval").mkdir(parents=True, exist_ok=True)
                (root / "eval" / f"{name}.json").write_text(json.dumps(ev))
                rec = RunRecord(stage="evaluate", name=name, identity={"method": m, "shots": k, "seed": seed},
                                params={"evaluate.scale": 2, "evaluate.crop_border": 2},
                                metrics={key: ev[key] for key in ("psnr_y", "ssim_y", "psnr_rgb", "per_image",
                                                                  "n_images")},
                                artifacts=[f"{name}.json"], inputs=[test], provenance=PROV, started=t, duration_s=0.5)
                t += 1
                paths.append(write_record(root / "eval" / f"{name}.json", rec))
                evals.append(ev)
    if report:
        import pandas as pd

        from drtl.results import COLUMNS, sort_rows, write_report

        df = pd.DataFrame(evals)[COLUMNS]
        fixed, free = df[df["shots"].notna()], df[df["shots"].isna()]
        full = pd.concat([fixed] + [free.assign(shots=k) for k in shots], ignore_index=True)
        full["shots"] = full["shots"].astype(int)
        out = root / "reports"
        write_report(sort_rows(full), out)
        rec = RunRecord(stage="report", name="report", params={"report.expand_shots": list(shots)},
                        metrics={f"{m}_k{k}_psnr_y": 0.0 for m in methods for k in shots},
                        artifacts=["results.csv", "aggregate.csv", "results.md", "psnr_vs_shots.png"],
                        provenance=PROV, started=t, duration_s=1.0)
        paths.append(write_record(out, rec))
    return [read_record(p) for p in paths]
