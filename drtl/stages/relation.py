"""Stage: the distortion relation of one (K, seed), the camera-dependent half of the relation.

Reads only the K shots of the pool (the test pairs are never read), the synthesized tasks and the
camera-free bank (:mod:`drtl.stages.bank`: the DRN and / or the family experts, whichever the
similarity needs). The run's variant (``--method``, :data:`drtl.methods.RELATIONS`) fixes the
similarity (:mod:`drtl.similarity`) and whether the camera-fitted task joins the bank
(``relation.fitted``, :mod:`drtl.relation.fitted`); ``drtl`` takes both from the profile.
Weights w = softmax(logits / tau), shaped by ``relation.mix`` / ``relation.top_k``
(``relation.weighting: false``: uniform).

Outputs under OUT: ``weights.json`` ({"k5_s0": {task: w}}), ``relation.json`` (metrics),
``graphs/k<K>_s<S>/{graph.json,graph.graphml,weights.png,ranking.csv}`` (+ ``reproduction.csv`` /
``expert.csv`` for those similarities), ``fitted/k<K>_s<S>.json`` (the fitted camera).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from drtl.data.folder import load_pairs, staged_folder
from drtl.errors import ConfigError
from drtl.methods import RELATIONS
from drtl.relation.fitted import FITTED_FAMILY, FITTED_TASK
from drtl.similarity import get_similarity
from drtl.stages.shots import run_key, shot_names


# the similarities that score the composed tasks (the DRN and the reproduction PSNR have no score for them)
COMPOSED_SIMILARITIES = ("expert", "uniform", "fitted")


def _csv(g: Path, name: str, lines: list[str]) -> None:
    g.mkdir(parents=True, exist_ok=True)
    (g / name).write_text("\n".join(lines) + "\n")


class Cell:
    """One (K, seed): the shots, the bank's tasks (plus the fitted task when it joins), and what a
    similarity asks for, measured on first use (the DRN's cosines, the reproduction PSNR, the family
    experts' PSNR). ``info`` collects what ``relation.json`` reports about the cell."""

    def __init__(self, rp: dict, synth, bank, shots, scale: int, seed: int, fitted: bool, graphs: Path,
                 fitted_path: Path, device: str, arch: dict, composed: bool = False):
        from drtl.degradations.tasks import load_tasks
        from drtl.stages.bank import read_bank

        self.rp, self.shots, self.scale, self.seed, self.graphs = rp, shots, scale, seed, graphs
        self.device, self.arch, self.bank = device, arch, bank
        self.tasks = load_tasks(Path(synth) / "tasks.yaml")
        self.names, self.fams = [t.name for t in self.tasks], [t.family for t in self.tasks]
        self.info: dict = {}
        self.held = read_bank(bank) if bank is not None else None  # bank.json: parts, tasks, families
        if self.held is not None:
            if self.held["tasks"] != self.names:
                raise ConfigError(f"{bank}: its tasks are not those of {synth}; rebuild the bank on these tasks")
            if int(self.held["scale"]) != scale:
                raise ConfigError(f"{bank} was built at x{self.held['scale']} but the target scale is x{scale}")
        self.fit = None
        if fitted:
            from drtl.relation.fitted import fit_shots, save_camera, task_pairs, train_hrs
            from drtl.stages.synthesize import load_synth

            self.cam = fit_shots(shots, scale, seed)
            noise = float(rp["fitted_noise"])
            save_camera(fitted_path, self.cam, noise)
            hrs = train_hrs(load_synth(synth, "train", [self.names[0]])[1][0])
            self.fit = task_pairs(self.cam, hrs, seed, noise)
            self.names, self.fams = self.names + [FITTED_TASK], self.fams + [FITTED_FAMILY]
        self.composed = None  # the composed tasks' pairs (drtl.relation.composed), after the fitted task
        if composed:
            if not fitted:
                raise ConfigError("relation.composed needs relation.fitted: true (its tasks start with the fitted filter)")
            from drtl.relation.composed import COMPOSED_FAMILY, all_composed_pairs

            names, self.composed = all_composed_pairs(self.cam, hrs, self.tasks, seed, noise)
            self.names, self.fams = self.names + names, self.fams + [COMPOSED_FAMILY] * len(names)
        self._cos = self._psnr = self._drn = None

    # -------------------------------------------------------------- what the similarities read
    def drn(self):
        """(encoder, prototypes of every task incl. the fitted one, target embedding), loaded once."""
        if self._drn is None:
            from drtl.relation import embed_images
            from drtl.relation.drnfile import load_drn

            if self.bank is None or not (Path(self.bank) / "drn.pt").is_file():
                raise ConfigError("this similarity needs the DRN: build the bank with --parts drn")
            encoder, mem, state = load_drn(Path(self.bank) / "drn.pt")
            encoder = encoder.eval()
            lr_patch, ppi = int(state["config"]["lr_patch"]), int(self.rp["patches_per_image"])
            emb = embed_images(encoder, [lr for _, lr, _ in self.shots], lr_patch, ppi,
                               hr_images=[hr for _, _, hr in self.shots])
            protos = mem.numpy()
            if self.fit is not None:
                fp = embed_images(encoder, [lr for lr, _ in self.fit], lr_patch, ppi, hr_images=[hr for _, hr in self.fit])
                protos = np.vstack([protos, fp[None]])
            self._drn = (encoder, protos, emb)
        return self._drn

    def cosines(self) -> np.ndarray:
        if self._cos is None:
            from drtl.relation import similarities

            _, protos, emb = self.drn()
            self._cos = similarities(emb, protos)
            n_bank = len(self.tasks)
            self.info["best_cosine"] = round(float(np.max(self._cos[:n_bank])), 4)
            if self.fit is not None:
                self.info["fitted_cosine"] = round(float(self._cos[-1]), 4)
        return self._cos

    def reproduction(self) -> np.ndarray:
        if self._psnr is None:
            from drtl.relation.fitted import fitted_score, reproduction_scores

            psnr = reproduction_scores(self.tasks, self.shots, self.scale, {})
            self.info["best_bank_psnr"] = round(float(psnr.max()), 3)
            if self.fit is not None:
                fitted_psnr = fitted_score(self.cam, self.shots, self.scale)  # unrounded into the softmax
                self.info["fitted_psnr"] = round(fitted_psnr, 3)
                psnr = np.append(psnr, fitted_psnr)
            self._psnr = psnr
            cos = self.cosines() if self._has_drn() else [float("nan")] * len(psnr)
            _csv(self.graphs, "reproduction.csv", ["task,family,psnr_db,cosine"] + [
                f"{n},{f},{p:.4f},{c:.4f}" for n, f, p, c in zip(self.names, self.fams, psnr, cos)])
        return self._psnr

    def expert_psnr(self) -> dict[str, float]:
        from drtl.stages.expert import Experts

        if self.bank is None or not (Path(self.bank) / "experts").is_dir():
            raise ConfigError("the expert similarity needs the family experts: build the bank with --parts experts")
        experts = Experts.from_bank(self.bank, self.held["families"], self.rp, self.scale, self.device, self.arch)
        extra = {FITTED_FAMILY: [self.fit]} if self.fit is not None else {}
        if self.composed is not None:
            from drtl.relation.composed import COMPOSED_FAMILY

            extra[COMPOSED_FAMILY] = self.composed
        fam_psnr = experts.scores(self.shots, extra)
        self.info["expert_psnr"] = {f: round(v, 3) for f, v in fam_psnr.items()}
        _csv(self.graphs, "expert.csv", ["family,psnr_db"] + [
            f"{f},{v:.4f}" for f, v in sorted(fam_psnr.items(), key=lambda x: -x[1])])
        return fam_psnr

    def family_logits(self, family_psnr: dict, tau_db: float) -> np.ndarray:
        from drtl.stages.expert import task_logits

        return task_logits(self.fams, family_psnr, tau_db)

    def fitted_mask(self) -> np.ndarray:
        if self.fit is None:
            raise ConfigError("this relation puts its weight on the fitted task: it needs relation.fitted")
        return np.array([n == FITTED_TASK for n in self.names])

    def _has_drn(self) -> bool:
        return self.bank is not None and (Path(self.bank) / "drn.pt").is_file()


def relation(synth, bank, pool, out, scale: int, shots: int, seed: int, rp: dict, variant: str = "drtl",
             device: str = "cpu", *, arch: dict) -> dict:
    """The relation of the K shots of ``pool`` (seed ``seed``) to the tasks of ``synth``."""
    from drtl.relation import build_graph, export_graph, plot_weights, ranking_table, shape_weights, \
        softmax_weights, uniform_weights

    if variant not in RELATIONS:
        raise ConfigError(f"relation --method must be one of {', '.join(RELATIONS)}, got {variant!r}")
    sim_name, fitted, composed = RELATIONS[variant].resolve(rp)
    sim = get_similarity(sim_name)
    if composed and sim_name not in COMPOSED_SIMILARITIES:
        raise ConfigError(f"relation.composed works with relation.similarity {' / '.join(COMPOSED_SIMILARITIES)}, "
                          f"not {sim_name!r}: set relation.composed: false or change the similarity")
    key = run_key(shots, seed)
    shots_k = load_pairs(pool, scale, shot_names(pool, shots, seed))
    with staged_folder(out) as tmp:
        g = tmp / "graphs" / key
        cell = Cell(rp, synth, bank, shots_k, scale, seed, fitted, g, tmp / "fitted" / f"{key}.json", device, arch,
                    composed)
        scored = sim.score(cell)
        w = (shape_weights(softmax_weights(scored.logits, scored.tau), float(rp["mix"]), int(rp["top_k"]))
             if rp["weighting"] else uniform_weights(len(cell.names)))
        weights = {key: {n: float(x) for n, x in zip(cell.names, w)}}
        if "drn" in sim.needs:
            _, protos, emb = cell.drn()
            graph = build_graph(cell.names, cell.fams, protos, emb, float(rp["tau"]), weights=w)
        else:
            graph = build_graph(cell.names, cell.fams, None, None, scored.tau, weights=w, scores=scored.shown)
        export_graph(graph, g)
        table = ranking_table(cell.names, cell.fams, scored.shown, w)
        table.to_csv(g / "ranking.csv", index=False)
        plot_weights(cell.names, w, g / "weights.png", title=f"relation weights, K={shots}, seed {seed}",
                     families=cell.fams)
        (tmp / "weights.json").write_text(json.dumps(weights, indent=1) + "\n")
        wv = np.array(list(weights[key].values()))
        info = dict(cell.info)
        if FITTED_TASK in weights[key]:
            info["fitted_weight"] = round(weights[key][FITTED_TASK], 4)
        fam_of = dict(zip(cell.names, cell.fams))
        metrics = {"similarity": sim_name, "fitted": fitted, "composed": composed, "n_tasks": len(cell.names),
                   "top_tasks": {key: table["task"].head(3).tolist()}, "top_task": table["task"].iloc[0],
                   "weight_entropy": {key: float(-(wv * np.log(wv + 1e-12)).sum())},
                   "family_weight": {key: {f: round(sum(x for n, x in weights[key].items() if fam_of[n] == f), 4)
                                           for f in dict.fromkeys(cell.fams)}}}
        if "best_cosine" in info:
            metrics["best_cosine"] = {key: info["best_cosine"]}
        if info:
            metrics["pair_relation"] = {key: info}
        (tmp / "relation.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def run(params: dict, inputs: dict, out: Path, on_log=None) -> dict:
    """Stage contract (drtl.stages): the relation of one (K, seed) of ``target.pool``."""
    if inputs.get("shots") is None:
        raise ConfigError("relation needs --shots K (and --seed): it weighs the tasks for those K shots")
    return relation(inputs.get("synth") or Path(params["outputs"]) / "synth", inputs.get("bank"),
                    params["target"]["pool"], out, int(params["target"]["scale"]), int(inputs["shots"]),
                    int(inputs.get("seed") or 0), params["relation"], inputs.get("method") or "drtl",
                    params["device"], arch=params["arch"])
