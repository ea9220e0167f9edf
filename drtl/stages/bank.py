"""Stage: the bank, the camera-free half of the relation.

What the similarities of the plan need (:mod:`drtl.similarity`), built over the synthesized tasks
and nothing of the target, so one bank serves every K, seed and camera (``drtl adapt`` reuses it):

- ``drn``: the Distortion Relation Network (DRN) and its memory bank (one prototype per auxiliary
  task), trained on LR patches of the *train* auxiliary images; its task-classification accuracy on
  the held-out *val* images goes to ``drn_eval.json`` and the metrics;
- ``experts``: one expert per task family, pre-trained from fresh weights on that family's tasks
  alone (the profile's ``arch``, the recipe ``relation.expert``; :mod:`drtl.stages.expert`).

Outputs under OUT: ``bank.json`` (parts, tasks, families, metrics), ``drn.pt`` + ``drn_eval.json``
(part ``drn``), ``experts/<family>.pt`` (part ``experts``, drtl model files).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from drtl.data.folder import staged_folder
from drtl.errors import ConfigError, DataError

BANK_FILE = "bank.json"


def _samplers(pairs, scale, patch):
    from drtl.data.patches import PairSampler

    try:
        return [PairSampler(p, scale, patch, augment=True) for p in pairs]
    except DataError as exc:
        raise ConfigError(f"relation.lr_patch={patch}: {exc}") from None


def train_bank_drn(rp: dict, train_pairs, val_pairs, scale: int, device: str):
    """(encoder, memory bank, DRN config, metrics, drn_eval content) trained on the bank's pairs."""
    from drtl.archs import build_arch
    from drtl.relation import DRNConfig, evaluate_drn, train_drn

    gen = torch.Generator().manual_seed(int(rp["seed"]))
    encoder = build_arch({"name": "drn", **rp["drn"]}, generator=gen)
    cfg = DRNConfig(steps=int(rp["steps"]), batch_per_task=int(rp["batch_per_task"]), lr_patch=int(rp["lr_patch"]),
                    lr=float(rp["lr"]), temperature=float(rp["temperature"]), device=device)
    bank, hist = train_drn(encoder, _samplers(train_pairs, scale, cfg.lr_patch), cfg, gen)
    encoder, bank = encoder.cpu().eval(), bank.cpu()
    metrics = {"drn_train_accuracy": float(hist["final_accuracy"])}
    ev = {}
    if val_pairs and val_pairs[0]:
        ev = evaluate_drn(encoder, bank, _samplers(val_pairs, scale, cfg.lr_patch), int(rp["eval_per_task"]),
                          cfg.lr_patch, torch.Generator().manual_seed(int(rp["seed"]) + 1))
        metrics["drn_val_accuracy"] = float(ev["accuracy"])
        metrics["drn_val_image_accuracy"] = float(ev["aggregated_accuracy"])
    return encoder, bank, cfg, metrics, {**ev, "history": {"loss": hist["loss"], "accuracy": hist["accuracy"]}}


def build(synth, out, scale: int, parts: str, rp: dict, device: str = "cpu", *, arch: dict) -> dict:
    """The bank of ``parts`` (``drn``, ``experts`` or ``drn+experts``) over the tasks of ``synth``."""
    from drtl.modelio import save_model
    from drtl.relation.drnfile import save_drn
    from drtl.stages.synthesize import load_synth

    have = set(str(parts).split("+"))
    if not have or have - {"drn", "experts"}:
        raise ConfigError(f"bank --parts must be drn, experts or drn+experts, got {parts!r}")
    tasks, train_pairs, info = load_synth(synth, "train")
    if info["scale"] != scale:
        raise ConfigError(f"{synth} was synthesized at x{info['scale']} but the target scale is x{scale}")
    names, fams = [t.name for t in tasks], [t.family for t in tasks]
    metrics: dict = {"n_tasks": len(tasks)}
    with staged_folder(out) as tmp:
        if "drn" in have:
            _, val_pairs, _ = load_synth(synth, "val")
            encoder, mem, cfg, m, ev = train_bank_drn(rp, train_pairs, val_pairs, scale, device)
            metrics.update(m)
            save_drn(tmp / "drn.pt", encoder, mem, names, fams, cfg.to_dict())
            (tmp / "drn_eval.json").write_text(json.dumps({**ev, "tasks": names}, indent=1) + "\n")
            if ev.get("per_task_accuracy"):
                acc = ev["per_task_accuracy"]
                metrics["drn_val_accuracy_family"] = {
                    f: round(float(np.mean([a for a, ff in zip(acc, fams) if ff == f])), 4) for f in dict.fromkeys(fams)}
        if "experts" in have:
            from drtl.stages.expert import Experts

            experts = Experts(rp, tasks, train_pairs, scale, device, arch)
            for family, model in experts.train().items():
                save_model(tmp / "experts" / f"{family}.pt", model, {"stage": "bank", "family": family,
                                                                     "expert": dict(rp["expert"])})
            metrics["n_experts"] = len(experts.models)
        (tmp / BANK_FILE).write_text(json.dumps({"parts": sorted(have), "scale": scale, "tasks": names,
                                                 "families": fams, "metrics": metrics}, indent=1) + "\n")
    return metrics


def read_bank(path) -> dict:
    """``bank.json`` of a bank folder; one-line DataError when it is not one."""
    f = Path(path) / BANK_FILE
    if not f.is_file():
        raise DataError(f"{path}: not a bank folder (no {BANK_FILE}); run `drtl bank` first")
    return json.loads(f.read_text())


def run(params: dict, inputs: dict, out: Path, on_log=None) -> dict:
    """Stage contract (drtl.stages): the camera-free bank (``inputs["parts"]``) over ``inputs["synth"]``."""
    return build(inputs.get("synth") or Path(params["outputs"]) / "synth", out, int(params["target"]["scale"]),
                 inputs["parts"], params["relation"], params["device"], arch=params["arch"])
