"""Stage: the distortion-relation graph.

1. Train the Distortion Relation Network (DRN) and its memory bank (one prototype per auxiliary
   task) on LR patches of the *train* auxiliary images; report its task-classification accuracy
   on the held-out *val* auxiliary images. With the optional input ``drn`` (a ``drn.pt`` this
   stage wrote, e.g. from ``drtl adapt``'s aux cache) that network is used instead of training one.
2. For every (shots K, seed): embed the LR images of the K target shots only (the test pairs are
   never read), relation weights w = softmax(cos(target, prototype_i) / tau), the knowledge graph
   (JSON + GraphML), a ranking table and a plot of the weights.

Outputs under OUT: ``drn.pt``, ``drn_eval.json``, ``weights.json`` ({"k5_s0": {task: w}}),
``graphs/k<K>_s<S>/{graph.json,graph.graphml,weights.png,ranking.csv}``, ``relation.json`` (metrics).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from drtl.archs import build_arch
from drtl.data.folder import load_pairs, staged_folder
from drtl.data.patches import PairSampler
from drtl.stages.shots import run_key, shot_names
from drtl.errors import ConfigError, DataError
from drtl.relation import (DRNConfig, build_graph, embed_images, evaluate_drn, export_graph, plot_weights,
                           ranking_table, shape_weights, similarities, softmax_weights, train_drn,
                           uniform_weights)
from drtl.relation.drnfile import save_drn
from drtl.relation.fitted import (FITTED_FAMILY, FITTED_TASK, camera_path, fit_shots, fitted_score,
                                  reproduction_scores, save_camera, task_pairs, train_hrs)
from drtl.stages.synthesize import load_synth


def _samplers(pairs, scale, patch):
    try:
        return [PairSampler(p, scale, patch, augment=True) for p in pairs]
    except DataError as exc:
        raise ConfigError(f"relation.lr_patch={patch}: {exc}") from None


def _load_drn(path: str | Path):
    """(encoder, bank, task names, families, DRN config, metrics, its drn_eval.json path and content)
    from a ``drn.pt`` this stage wrote."""
    from drtl.relation.drnfile import load_drn

    encoder, bank, state = load_drn(path)
    ev_path = Path(path).with_name("drn_eval.json")
    ev = json.loads(ev_path.read_text()) if ev_path.is_file() else {}
    acc = (ev.get("history") or {}).get("accuracy") or []  # final_accuracy: mean over the last 10% of steps
    metrics = {"drn_train_accuracy": float(np.mean(acc[-max(1, len(acc) // 10):])) if acc else float("nan"),
               "n_tasks": len(state["tasks"])}
    if "accuracy" in ev:
        metrics["drn_val_accuracy"] = float(ev["accuracy"])
        metrics["drn_val_image_accuracy"] = float(ev["aggregated_accuracy"])
    return encoder.eval(), bank, list(state["tasks"]), list(state["families"]), dict(state["config"]), metrics, ev_path, ev


def _check_synth(synth: str | Path, names: list[str], scale: int, drn: str | Path) -> None:
    from drtl.degradations.tasks import load_tasks

    info = json.loads((Path(synth) / "synth.json").read_text())
    if info["scale"] != scale:
        raise ConfigError(f"{synth} was synthesized at x{info['scale']} but the target scale is x{scale}")
    if [t.name for t in load_tasks(Path(synth) / "tasks.yaml")] != names:
        raise ConfigError(f"{drn}: its tasks are not those of {synth}; train the DRN on these tasks")


def _graph_csv(tmp: Path, key: str, name: str, lines: list[str]) -> None:
    """``graphs/<key>/<name>``: a small CSV of one (K, seed)'s relation, header first."""
    g = tmp / "graphs" / key
    g.mkdir(parents=True, exist_ok=True)
    (g / name).write_text("\n".join(lines) + "\n")


class _Relation(NamedTuple):
    """One (K, seed)'s relation: weights = softmax(score / tau) over ``names``; ``shown`` is each
    task's similarity in the ranking table (the scores, or with the expert relation its family
    expert's PSNR); ``info`` goes to ``relation.json``'s ``pair_relation``."""

    names: list
    fams: list
    protos: np.ndarray
    sims: np.ndarray
    score: np.ndarray
    tau: float
    info: dict
    shown: np.ndarray


class _ShotRelation:
    """What the K pairs add to the DRN's relation: the camera-fitted task (``relation.fitted``) and
    the reproduction similarity (``relation.similarity``: ``reproduction`` or ``joint``); see
    drtl.relation.fitted. Per (K, seed) it also writes ``graphs/<key>/reproduction.csv``."""

    def __init__(self, rp: dict, synth, names: list[str], fams: list[str], scale: int, encoder, lr_patch: int,
                 protos: np.ndarray, device: str, arch: dict):
        from drtl.degradations.tasks import load_tasks

        if synth is None or not (Path(synth) / "synth.json").is_file():
            raise ConfigError("relation.fitted / relation.similarity=reproduction|joint|expert need the synthesized "
                              "bank (--synth): its tasks and training HR images")
        self.rp, self.names, self.scale, self.encoder, self.lr_patch = rp, names, scale, encoder, lr_patch
        self.tasks = load_tasks(Path(synth) / "tasks.yaml")
        self.experts = None
        if rp["similarity"] == "expert":  # the family experts train on the whole bank (drtl.stages.expert)
            from drtl.stages.expert import Experts

            tasks, pairs, _ = load_synth(synth, "train")
            self.experts = Experts(rp, tasks, pairs, scale, device, arch)
            self.hrs = train_hrs(pairs[0])
        else:
            self.hrs = train_hrs(load_synth(synth, "train", [names[0]])[1][0]) if rp["fitted"] else []
        self.fams, self.base, self.cache = fams, protos, {}

    @staticmethod
    def needed(rp: dict) -> bool:
        return bool(rp["fitted"]) or rp["similarity"] != "drn"

    def __call__(self, tmp: Path, key: str, shots_k, seed: int, emb, sims) -> _Relation:
        """The relation of these shots, with the fitted task appended when ``relation.fitted``."""
        rp, names, info = self.rp, list(self.names), {}
        protos = fit = psnr = None
        if rp["similarity"] in ("reproduction", "joint"):
            psnr = reproduction_scores(self.tasks, shots_k, self.scale, self.cache)
            info["best_bank_psnr"] = round(float(psnr.max()), 3)
        if rp["fitted"]:
            cam = fit_shots(shots_k, self.scale, seed)
            noise = float(rp["fitted_noise"])
            save_camera(camera_path(tmp, key), cam, noise)
            fit = task_pairs(cam, self.hrs, seed, noise)
            protos = embed_images(self.encoder, [lr for lr, _ in fit], self.lr_patch, int(rp["patches_per_image"]),
                                  hr_images=[hr for _, hr in fit])
            cos = float(similarities(emb, protos[None])[0])
            sims = np.append(sims, cos)
            info["fitted_cosine"] = round(cos, 4)
            if psnr is not None:
                fitted_psnr = fitted_score(cam, shots_k, self.scale)  # unrounded into the softmax
                info["fitted_psnr"] = round(fitted_psnr, 3)
                psnr = np.append(psnr, fitted_psnr)
            names.append(FITTED_TASK)
        fams = self.fams + ([FITTED_FAMILY] if protos is not None else [])
        if self.experts is not None:  # each family's expert restoring the shots: softmax over families
            from drtl.stages.expert import task_logits

            fam_psnr = self.experts.scores(shots_k, fit, FITTED_FAMILY)
            info["expert_psnr"] = {f: round(v, 3) for f, v in fam_psnr.items()}
            score, tau = task_logits(fams, fam_psnr, float(rp["tau_db"])), 1.0
            shown = np.array([fam_psnr[f] for f in fams])
            _graph_csv(tmp, key, "expert.csv", ["family,psnr_db"] + [
                f"{f},{v:.4f}" for f, v in sorted(fam_psnr.items(), key=lambda x: -x[1])])
        elif psnr is None:
            score, tau = sims, float(rp["tau"])
        elif rp["similarity"] == "reproduction":
            score, tau = psnr, float(rp["tau_db"])
        else:  # joint: a task must reproduce the shots in pixels and look like them to the DRN
            score, tau = psnr / float(rp["tau_db"]) + sims / float(rp["tau"]), 1.0
        if psnr is not None:
            _graph_csv(tmp, key, "reproduction.csv", ["task,family,psnr_db,cosine"] + [
                f"{n},{f},{p:.4f},{c:.4f}" for n, f, p, c in zip(names, fams, psnr, sims)])
        protos = self.base if protos is None else np.vstack([self.base, protos[None]])
        return _Relation(names, fams, protos, sims, score, tau, info, shown if self.experts is not None else score)


def relation(synth: str | Path, pool: str | Path, out: str | Path, scale: int, shots: list[int], seeds: list[int],
             params: dict, device: str = "cpu", drn: str | Path | None = None, *, arch: dict) -> dict:
    """``drn``: a trained ``drn.pt`` (this stage's format) to use instead of training one; ``arch``:
    the network of the expert relation's family experts (``relation.similarity: expert``)."""
    rp = params
    if drn is not None:
        encoder, bank, names, fams, cfg_d, metrics, ev_path, ev = _load_drn(drn)
        if synth is not None and (Path(synth) / "synth.json").is_file():
            _check_synth(synth, names, scale, drn)
        lr_patch = int(cfg_d["lr_patch"])
    else:
        tasks, train_pairs, _ = load_synth(synth, "train")
        _, val_pairs, info = load_synth(synth, "val")
        if info["scale"] != scale:
            raise ConfigError(f"{synth} was synthesized at x{info['scale']} but the target scale is x{scale}")
        gen = torch.Generator().manual_seed(int(rp["seed"]))
        encoder = build_arch({"name": "drn", **rp["drn"]}, generator=gen)
        cfg = DRNConfig(steps=int(rp["steps"]), batch_per_task=int(rp["batch_per_task"]), lr_patch=int(rp["lr_patch"]),
                        lr=float(rp["lr"]), temperature=float(rp["temperature"]), device=device)
        bank, hist = train_drn(encoder, _samplers(train_pairs, scale, cfg.lr_patch), cfg, gen)
        encoder = encoder.cpu().eval()
        bank = bank.cpu()
        metrics = {"drn_train_accuracy": float(hist["final_accuracy"]), "n_tasks": len(tasks)}
        if val_pairs and val_pairs[0]:
            ev = evaluate_drn(encoder, bank, _samplers(val_pairs, scale, cfg.lr_patch), int(rp["eval_per_task"]),
                              cfg.lr_patch, torch.Generator().manual_seed(int(rp["seed"]) + 1))
            metrics["drn_val_accuracy"] = float(ev["accuracy"])
            metrics["drn_val_image_accuracy"] = float(ev["aggregated_accuracy"])
        else:
            ev = {}
        names = [t.name for t in tasks]
        fams = [t.family for t in tasks]
        lr_patch = cfg.lr_patch
    protos = bank.numpy()
    with staged_folder(out) as tmp:
        if drn is not None:  # the same files as when trained here
            shutil.copyfile(drn, tmp / "drn.pt")
            if ev_path.is_file():
                shutil.copyfile(ev_path, tmp / "drn_eval.json")
        else:
            save_drn(tmp / "drn.pt", encoder, bank, names, fams, cfg.to_dict())
            (tmp / "drn_eval.json").write_text(json.dumps({**ev, "tasks": names, "history": {
                "loss": hist["loss"], "accuracy": hist["accuracy"]}}, indent=1) + "\n")
        weights, top, best_cos, extra = {}, {}, {}, {}
        ctx = (_ShotRelation(rp, synth, names, fams, scale, encoder, lr_patch, protos, device, arch)
               if _ShotRelation.needed(rp) else None)
        for k in shots:
            for s in seeds:
                key = run_key(k, s)
                shots_k = load_pairs(pool, scale, shot_names(pool, k, s))
                emb = embed_images(encoder, [lr for _, lr, _ in shots_k], lr_patch, int(rp["patches_per_image"]),
                                   hr_images=[hr for _, _, hr in shots_k])
                sims = similarities(emb, protos)
                best_cos[key] = round(float(np.max(sims)), 4)
                r = _Relation(names, fams, protos, sims, sims, float(rp["tau"]), {}, sims)
                if ctx is not None:  # the fitted task and / or the reproduction relation (drtl.relation.fitted)
                    r = ctx(tmp, key, shots_k, s, emb, sims)
                    extra[key] = r.info
                w = (shape_weights(softmax_weights(r.score, r.tau), float(rp["mix"]), int(rp["top_k"]))
                     if rp["weighting"] else uniform_weights(len(r.names)))
                weights[key] = {n: float(x) for n, x in zip(r.names, w)}
                if FITTED_TASK in weights[key]:
                    extra[key]["fitted_weight"] = round(weights[key][FITTED_TASK], 4)
                g = tmp / "graphs" / key
                export_graph(build_graph(r.names, r.fams, r.protos, emb, float(rp["tau"]), weights=w), g)
                table = ranking_table(r.names, r.fams, r.shown, w)
                table.to_csv(g / "ranking.csv", index=False)
                plot_weights(r.names, w, g / "weights.png", title=f"relation weights, K={k}, seed {s}", families=r.fams)
                top[key] = table["task"].head(3).tolist()
        (tmp / "weights.json").write_text(json.dumps(weights, indent=1) + "\n")
        first = run_key(shots[0], seeds[0]) if shots and seeds else None  # no shots: the DRN alone (drtl bank)
        metrics["top_tasks"] = top
        metrics["weight_entropy"] = {k: float(-(np.array(list(v.values())) * np.log(np.array(list(v.values())) + 1e-12)).sum())
                                     for k, v in weights.items()}
        metrics["top_task"] = top[first][0] if first else None
        # what the relation report shows: the weight each family gets, the target's
        # best cosine to any prototype, and the DRN's held-out accuracy per family
        all_fams = list(dict.fromkeys(fams + ([FITTED_FAMILY] if rp["fitted"] else [])))
        fam_of = {**dict(zip(names, fams)), FITTED_TASK: FITTED_FAMILY}
        metrics["family_weight"] = {k: {f: round(sum(x for n, x in v.items() if fam_of[n] == f), 4) for f in all_fams}
                                    for k, v in weights.items()}
        metrics["best_cosine"] = best_cos
        if extra:  # per (K, seed): the fitted task's weight, cosine and reproduction PSNR; the bank's best PSNR
            metrics["pair_relation"] = extra
        if ev.get("per_task_accuracy"):
            acc = ev["per_task_accuracy"]
            metrics["drn_val_accuracy_family"] = {
                f: round(float(np.mean([a for a, ff in zip(acc, fams) if ff == f])), 4) for f in dict.fromkeys(fams)}
        (tmp / "relation.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def run(params: dict, inputs: dict, out: Path, on_log=None) -> dict:
    """Stage contract (drtl.stages): DRN, memory bank and the relation weights of every (K, seed).

    ``inputs["drn"]``: a trained ``drn.pt`` (same format); then no DRN is trained, only the target's
    shots are embedded (``synth`` is then only checked to hold the DRN's tasks)."""
    ex = params["experiment"]
    return relation(inputs.get("synth") or Path(params["outputs"]) / "synth", params["target"]["pool"], out,
                    int(params["target"]["scale"]), [int(k) for k in ex["shots"]], [int(s) for s in ex["seeds"]],
                    params["relation"], params["device"], inputs.get("drn"), arch=params["arch"])
