"""Stage ``adapt``: a super-resolution model for *your* camera from K of its LR/HR pairs, in one command.

    drtl adapt --pairs DIR --scale S --shots K --out OUT [--params P] [-S k=v] [--seed N]
               [--aux-cache DIR] [--layout auto|paired|city100|realsr|drealsr] [--names 001-020]

What it does (every step is a function of the stages the pipeline uses):

1. import ``DIR`` into ``OUT/data/all`` (a paired folder ``HR/`` + ``LR/``, copied byte for byte;
   a paired folder whose LR has the HR size, i.e. registered captures, is downscaled like City100;
   or a raw layout read by :func:`drtl.data.importers.import_dataset`: City100 ``NNNH/NNNL.PNG`` is
   detected, RealSR / DRealSR need ``--layout``);
2. validate it (:func:`drtl.data.validate.check_folder`); a failure is one line and nothing trains;
3. split: the K shots (first K of the seed's permutation, :func:`drtl.data.splits.few_shot_names`)
   go to ``OUT/data/shots``, the other pairs to ``OUT/data/rest`` (the evaluation set);
4. the auxiliary side, cached across cameras in ``AUX_CACHE/<fingerprint>/`` (default root
   ``$DRTL_CACHE_DIR/aux``, else ``$XDG_CACHE_HOME/drtl/aux``, else ``~/.cache/drtl/aux``): the
   synthesized tasks (``synth/``, stage ``synthesize``) and the trained distortion relation network
   + memory bank (``drn/drn.pt``, same file format as stage ``relation``). The fingerprint covers the
   ``aux`` params (with the names and sizes of the auxiliary HR files), the ``relation`` params
   except those that only concern the target (``tau``, ``weighting``, ``patches_per_image``) and the
   scale; an entry is written atomically (built in a dot-prefixed temp folder, then renamed) and
   reused as is whenever the fingerprint matches;
5. the relation of this camera to every auxiliary distortion: embed the K shots' LR images with the
   cached DRN, ``w = softmax(cos / tau)``, ``OUT/relation/{weights.json, ranking.csv, weights.png,
   graph.json, graph.graphml}``;
6. DRTL-Pre: relation-weighted pre-training on the auxiliary tasks (``OUT/pretrain``), then
   fine-tuning on the K shots (``OUT/finetune``); with ``relation.weighting: false`` the weights
   are uniform, so the uniform pre-trained model is cached in the aux entry and reused;
7. evaluation on ``OUT/data/rest`` (when any pair remains) against bicubic on the same pairs;
8. ``OUT/model.pt`` (the fine-tuned model; its recipe names the camera data, K, seed, relation top
   tasks and the aux fingerprint), ``OUT/summary.md``, ``OUT/summary.json``; MLflow when
   ``tracking.enabled``.

Rerunning with the same ``OUT`` resumes: a training step whose inputs did not change is skipped,
an interrupted one resumes from its checkpoint (``checkpoint_every`` in the adapt profile).

Params: the built-in *adapt* profile (:func:`adapt_profile`, a CPU budget) over
:data:`drtl.config.DEFAULTS`; ``--params P`` is merged over it, then ``-S`` overrides. The adapt
profile's auxiliary HR images are the built-in sample's ``aux_hr`` (``aux.hr: ['@sample']``), built
into the cache root (``AUX_CACHE/sample``) with :func:`drtl.data.sample.make_sample` when absent.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

from drtl.errors import ConfigError, DataError, DRTLError, ModelError

CACHE_VERSION = 1
SAMPLE_TOKEN = "@sample"
LAYOUTS = ("auto", "paired", "city100", "realsr", "drealsr")
# relation params that only concern the target (not the DRN): excluded from the aux fingerprint
_TARGET_ONLY = ("tau", "weighting", "patches_per_image")
_MARKER = ".drtl-adapt.json"
EVAL_TILE = 512  # LR tile side for evaluating the model: whole image up to 512 px, bounded memory above


# ------------------------------------------------------------------------------------------ params
def adapt_profile() -> dict:
    """Param overrides (over drtl.config.DEFAULTS) of the CPU ``adapt`` budget.

    Sized so that City100 K=5 (x2, 20 pairs) adapts in a few minutes on 2 cores with a cold aux
    cache; see docs/adapt.md for the measured timings.
    """
    return {
        "threads": 0,                      # torch default: one thread per core
        "log_every_s": 10,                 # a progress line at least this often during training
        "aux": {"hr": [SAMPLE_TOKEN], "variants": 1, "max_hr_side": 256},
        "relation": {"steps": 150, "batch_per_task": 2, "lr_patch": 24},
        "pretrain": {"iterations": 300, "batch": 4, "tasks_per_step": 4, "lr_patch": 32, "log_every": 25,
                     "checkpoint_every": 50},
        "finetune": {"iterations": 300, "batch": 16, "lr_patch": 32, "log_every": 25, "checkpoint_every": 50},
    }


def adapt_params(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> dict:
    """DEFAULTS <- adapt_profile() <- the params file ``path`` (optional) <- ``-S`` overrides, checked."""
    from drtl.config import DEFAULTS, _merge, load_params

    return load_params(path, overrides, base=_merge(DEFAULTS, adapt_profile()))


# ------------------------------------------------------------------------------------------ helpers
def _fp(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def default_cache_root() -> Path:
    if os.environ.get("DRTL_CACHE_DIR"):
        return Path(os.environ["DRTL_CACHE_DIR"]) / "aux"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "drtl" / "aux"


def _replaced_dir(dest: Path):
    """Build a folder in a dot-prefixed temp sibling; on success it replaces ``dest`` (else vanishes)."""
    from drtl.data.folder import staged_folder

    return staged_folder(dest, guard=False)


def _json(path: Path, obj) -> None:
    from drtl.io import write_text

    write_text(path, json.dumps(obj, indent=1, default=str) + "\n")


class _Clock:
    def __init__(self, echo):
        self.t0 = time.time()
        self.echo = echo
        self.timings: dict[str, float] = {}

    def say(self, msg: str) -> None:
        self.echo(f"[{time.time() - self.t0:6.1f}s] {msg}")

    @contextlib.contextmanager
    def stage(self, name: str):
        t = time.time()
        yield
        self.timings[name] = round(self.timings.get(name, 0.0) + time.time() - t, 2)


def _throttled(clock: _Clock, every_s: float, what: str):
    last = [time.time()]

    def on_log(entry):
        if time.time() - last[0] >= every_s:
            last[0] = time.time()
            clock.say(f"  {what} step {entry['step']}: loss {entry['loss']:.4f}")

    return on_log


# ------------------------------------------------------------------------------------------ 1. import
def detect_layout(src: Path) -> str:
    """'paired' (HR/ + LR/) or 'city100' (NNNH.PNG + NNNL.PNG); anything else needs --layout."""
    if (src / "HR").is_dir() and (src / "LR").is_dir():
        return "paired"
    if any(re.fullmatch(r"\d+H\.png", p.name, re.IGNORECASE) for p in src.iterdir()):
        return "city100"
    raise ConfigError(f"{src}: cannot tell the layout (no HR/ + LR/ subfolders, no City100 NNNH.PNG files); "
                      f"pass --layout paired|city100|realsr|drealsr")


def _size_ratio(hr: tuple[int, int], lr: tuple[int, int]) -> int | None:
    for r in (1, 2, 3, 4, 5, 6, 7, 8):
        if lr[0] * r <= hr[0] < lr[0] * r + r and lr[1] * r <= hr[1] < lr[1] * r + r:
            return r
    return None


def _import_paired(src: Path, dst: Path, scale: int, names: list[str] | None) -> str:
    """Copy a paired folder byte for byte (its manifest too, so validation checks the hashes).

    Registered pairs (every LR at the HR size) are downscaled like City100 instead. A folder whose
    pairs are at another scale is refused with the scale to pass.
    """
    from drtl.data.folder import MANIFEST, pair_paths, write_pairs
    from drtl.data.importers import _pairs
    from drtl.io import image_info

    paths = pair_paths(src)
    if names is not None:
        by = {n: (lp, hp) for n, lp, hp in paths}
        missing = [n for n in names if n not in by]
        if missing:
            raise DataError(f"{src}: no pair named {', '.join(missing[:5])}")
        paths = [(n, *by[n]) for n in names]
    ratios = {}
    for n, lp, hp in paths:
        try:
            hi, li = image_info(hp), image_info(lp)
        except DataError:
            continue  # unreadable: validation names it
        ratios[n] = _size_ratio((hi["height"], hi["width"]), (li["height"], li["width"]))
    found = {r for r in ratios.values()}
    if found == {1}:
        write_pairs(dst, _pairs(src, {n: hp for n, _, hp in paths}, {n: lp for n, lp, _ in paths},
                                [n for n, _, _ in paths], scale), scale)
        return "paired (registered LR at HR size, downscaled)"
    wrong = sorted(r for r in found if r not in (None, scale))
    if wrong:
        bad = next(n for n, r in ratios.items() if r == wrong[0])
        raise ConfigError(f"{src}: the pairs are x{wrong[0]} (e.g. {bad}: HR = {wrong[0]} x LR), not x{scale}; "
                          f"pass --scale {wrong[0]}")
    with _replaced_dir(dst) as tmp:
        (tmp / "HR").mkdir()
        (tmp / "LR").mkdir()
        for _, lp, hp in paths:
            shutil.copyfile(hp, tmp / "HR" / hp.name)
            shutil.copyfile(lp, tmp / "LR" / lp.name)
        if names is None and (src / MANIFEST).is_file():
            shutil.copyfile(src / MANIFEST, tmp / MANIFEST)
    return "paired"


def import_pairs(src, dst, scale: int, layout: str = "auto", names: list[str] | None = None) -> str:
    """Import the camera's pairs into the paired folder ``dst``; returns the layout used."""
    from drtl.data.importers import import_dataset

    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: pairs folder not found")
    if layout not in LAYOUTS:
        raise ConfigError(f"--layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = detect_layout(src)
    if layout == "paired":
        return _import_paired(src, Path(dst), scale, names)
    import_dataset(layout, src, dst, scale, names)
    return layout


# ------------------------------------------------------------------------------------------ 3. split
def _copy_subset(src: Path, dst: Path, names: list[str], scale: int) -> None:
    from drtl.data.folder import pair_paths, write_manifest

    by = {n: (lp, hp) for n, lp, hp in pair_paths(src)}
    with _replaced_dir(dst) as tmp:
        (tmp / "HR").mkdir()
        (tmp / "LR").mkdir()
        for n in names:
            lp, hp = by[n]
            shutil.copyfile(hp, tmp / "HR" / hp.name)
            shutil.copyfile(lp, tmp / "LR" / lp.name)
        write_manifest(tmp, scale)


# ------------------------------------------------------------------------------------------ 4. aux cache
def resolve_aux_sources(sources: list[str], cache_root: Path, echo=None) -> list[str]:
    """``@sample`` -> ``<cache_root>/sample/aux_hr`` (built with make_sample when absent)."""
    out = []
    for s in sources:
        if str(s) == SAMPLE_TOKEN:
            root = cache_root / "sample"
            if not (root / "aux_hr" / "HR").is_dir():
                from drtl.data.sample import make_sample

                if echo:
                    echo(f"building the built-in auxiliary HR images in {root}")
                with _replaced_dir(root) as tmp:
                    make_sample(tmp, scale=2, seed=0)
            out.append(str(root / "aux_hr"))
        else:
            out.append(str(s))
    return out


def aux_fingerprint(params: dict, hr_sources: list[str], scale: int) -> tuple[str, dict]:
    """(fingerprint, what it covers) of the aux cache entry for these params."""
    from drtl.data.folder import hr_paths

    listing = []
    for src in hr_sources:
        try:
            listing.append([[n, p.stat().st_size] for n, p in hr_paths(src)])
        except DataError as exc:
            raise DataError(f"aux.hr: {exc}") from None
    aux = {k: v for k, v in params["aux"].items() if k != "hr"}
    rel = {k: v for k, v in params["relation"].items() if k not in _TARGET_ONLY}
    obj = {"version": CACHE_VERSION, "scale": int(scale), "aux": aux, "aux_hr_files": listing, "relation": rel}
    return _fp(obj), obj


def train_relation_network(synth, out, scale: int, rp: dict, device: str = "cpu", on_log=None) -> dict:
    """Train the DRN + memory bank on the synthesized tasks; write ``out/drn.pt`` and ``out/drn_eval.json``.

    The same training and the same file format as the first half of :func:`drtl.stages.relation.relation`.
    """
    import torch

    from drtl.archs import build_arch
    from drtl.relation import DRNConfig, evaluate_drn, train_drn
    from drtl.stages.relation import _samplers
    from drtl.stages.synthesize import load_synth

    tasks, train_pairs, _ = load_synth(synth, "train")
    _, val_pairs, info = load_synth(synth, "val")
    if info["scale"] != scale:
        raise ConfigError(f"{synth} was synthesized at x{info['scale']} but the target scale is x{scale}")
    gen = torch.Generator().manual_seed(int(rp["seed"]))
    encoder = build_arch({"name": "drn", **rp["drn"]}, generator=gen)
    cfg = DRNConfig(steps=int(rp["steps"]), batch_per_task=int(rp["batch_per_task"]), lr_patch=int(rp["lr_patch"]),
                    lr=float(rp["lr"]), temperature=float(rp["temperature"]), device=device,
                    log_every=max(1, min(25, int(rp["steps"]))))
    bank, hist = train_drn(encoder, _samplers(train_pairs, scale, cfg.lr_patch), cfg, gen, on_log=on_log)
    encoder, bank = encoder.cpu().eval(), bank.cpu()
    metrics = {"drn_train_accuracy": float(hist["final_accuracy"]), "n_tasks": len(tasks)}
    ev = {}
    if val_pairs and val_pairs[0]:
        ev = evaluate_drn(encoder, bank, _samplers(val_pairs, scale, cfg.lr_patch), int(rp["eval_per_task"]),
                          cfg.lr_patch, torch.Generator().manual_seed(int(rp["seed"]) + 1))
        metrics["drn_val_accuracy"] = float(ev["accuracy"])
    names = [t.name for t in tasks]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"encoder": encoder.state_dict(), "arch": encoder.arch_cfg, "bank": bank.state_dict(),
                "tasks": names, "families": [t.family for t in tasks], "config": cfg.to_dict()}, out / "drn.pt")
    (out / "drn_eval.json").write_text(json.dumps({**ev, "tasks": names, "history": {
        "loss": hist["loss"], "accuracy": hist["accuracy"]}}, indent=1, default=float) + "\n")
    return metrics


def ensure_aux(params: dict, scale: int, cache_root: Path, device: str, clock: _Clock) -> dict:
    """The aux cache entry for these params: reused when complete, else synthesized + DRN trained."""
    from drtl.stages.synthesize import synthesize

    cache_root = Path(cache_root)
    sources = resolve_aux_sources(params["aux"]["hr"], cache_root, clock.say)
    fp, covers = aux_fingerprint(params, sources, scale)
    entry = cache_root / fp
    done = entry / "complete.json"
    if done.is_file() and (entry / "drn" / "drn.pt").is_file() and (entry / "synth" / "synth.json").is_file():
        info = json.loads(done.read_text())
        clock.say(f"aux cache hit: {entry} ({info.get('n_tasks')} tasks; DRN val accuracy "
                  f"{info.get('drn_val_accuracy', float('nan')):.3f})")
        return {"path": str(entry), "fingerprint": fp, "hit": True, "drn_trained": False, "synthesized": False, **info}
    a = params["aux"]
    clock.say(f"aux cache miss: building {entry}")
    with _replaced_dir(entry) as tmp:
        with clock.stage("synthesize"):
            m = synthesize(sources, tmp / "synth", scale, a["families"], a["tasks"], a["variants"], a["val_fraction"],
                           a["max_hr_side"], a["seed"])
        clock.say(f"synthesized {m['n_tasks']} auxiliary tasks x {m['n_images']} HR images")
        every = float(params.get("log_every_s", 10))
        last = [time.time()]

        def drn_log(step, d):
            if time.time() - last[0] >= every:
                last[0] = time.time()
                clock.say(f"  DRN step {step}/{params['relation']['steps']}: loss {d['loss']:.3f}, "
                          f"accuracy {d['accuracy']:.3f}")

        with clock.stage("drn"):
            rm = train_relation_network(tmp / "synth", tmp / "drn", scale, params["relation"], device, drn_log)
        clock.say(f"DRN trained: accuracy train {rm['drn_train_accuracy']:.3f}, "
                  f"val {rm.get('drn_val_accuracy', float('nan')):.3f}")
        info = {"n_tasks": m["n_tasks"], "n_images": m["n_images"], **rm, "covers": covers,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _json(tmp / "complete.json", info)
        if done.is_file():  # another process finished the same entry meanwhile: keep theirs
            raise _Lost()
    return {"path": str(entry), "fingerprint": fp, "hit": False, "drn_trained": True, "synthesized": True, **info}


class _Lost(Exception):
    pass


# ------------------------------------------------------------------------------------------ 5. relation
def target_relation(drn_path, lr_images, rp: dict, out, key: str, title: str) -> dict:
    """Relation of the target (its K LR images) to every auxiliary task with a trained DRN.

    Writes ``out/{weights.json ({key: {task: w}}), ranking.csv, weights.png, graph.json,
    graph.graphml}``; returns {'weights', 'table' (DataFrame), 'entropy'}.
    """
    import numpy as np
    import torch

    from drtl.archs import build_arch
    from drtl.relation import (MemoryBank, build_graph, embed_images, export_graph, plot_weights, ranking_table,
                               relation_weights, similarities, uniform_weights)

    try:
        state = torch.load(drn_path, map_location="cpu", weights_only=True)
        encoder = build_arch(dict(state["arch"]))
        encoder.load_state_dict(state["encoder"])
        protos_t = state["bank"]["prototypes"]
        bank = MemoryBank(protos_t.shape[0], protos_t.shape[1])
        bank.load_state_dict(state["bank"])
    except Exception as exc:  # a damaged cache entry
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{drn_path}: unreadable relation network ({type(exc).__name__}: {first}); "
                         f"delete {Path(drn_path).parent.parent} to rebuild it") from None
    encoder.eval()
    protos = bank.numpy()
    names, fams = list(state["tasks"]), list(state["families"])
    emb = embed_images(encoder, lr_images, int(state["config"]["lr_patch"]), int(rp["patches_per_image"]))
    sims = similarities(emb, protos)
    w = relation_weights(emb, protos, float(rp["tau"])) if rp["weighting"] else uniform_weights(len(names))
    table = ranking_table(names, fams, sims, w)
    table = table.sort_values(["weight", "similarity"], ascending=False, kind="stable").reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    out = Path(out)
    with _replaced_dir(out) as tmp:
        export_graph(build_graph(names, fams, protos, emb, float(rp["tau"])), tmp)
        table.to_csv(tmp / "ranking.csv", index=False, float_format="%.6f")
        plot_weights(names, w, tmp / "weights.png", title=title, families=fams)
        weights = {n: float(x) for n, x in zip(names, w)}
        (tmp / "weights.json").write_text(json.dumps({key: weights}, indent=1) + "\n")
    ent = float(-(w * np.log(w + 1e-12)).sum())
    return {"weights": weights, "table": table, "entropy": ent}


# ------------------------------------------------------------------------------------------ steps
def _done(folder: Path, fp: str, product: str) -> bool:
    mark = folder / ".inputs.json"
    return (folder / product).is_file() and mark.is_file() and json.loads(mark.read_text()).get("fp") == fp


def _step(folder: Path, fp: str, product: str, fn) -> bool:
    """Run ``fn`` unless ``folder/product`` was made from the same inputs; True when it ran.

    The input fingerprint is written before the work starts, so an interrupted run with the same
    inputs resumes from its checkpoint; other inputs wipe the folder first.
    """
    mark = folder / ".inputs.json"
    old = json.loads(mark.read_text()).get("fp") if mark.is_file() else None
    if old == fp and (folder / product).is_file():
        return False
    if folder.exists() and old != fp:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _json(mark, {"fp": fp})
    fn()
    return True


def _out_folder(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise DataError(f"{out}: exists and is not a folder; choose another --out")
        if any(out.iterdir()) and not (out / _MARKER).is_file():
            raise DataError(f"{out}: exists and is not a `drtl adapt` output folder; refusing to write into it "
                            f"(choose another --out)")
    out.mkdir(parents=True, exist_ok=True)
    _json(out / _MARKER, {"format": "drtl-adapt", "version": CACHE_VERSION})


@contextlib.contextmanager
def _tracking(params: dict, name: str, run_params: dict, clock: _Clock):
    """A tracker run when ``tracking.enabled`` and drtl.tracking is present; else a None handle."""
    if not (params.get("tracking") or {}).get("enabled"):
        yield None
        return
    try:
        from drtl.tracking import tracker_from_params
    except ImportError:
        clock.say("tracking.enabled but drtl.tracking is not available: not logging to MLflow")
        yield None
        return
    with tracker_from_params(params).run("adapt", name, run_params, {"method": run_params.get("method")}) as handle:
        yield handle


# ------------------------------------------------------------------------------------------ the stage
def adapt(pairs, scale: int, shots: int, out, params: dict, seed: int = 0, aux_cache=None, echo=print,
          layout: str = "auto", names: list[str] | None = None) -> dict:
    """Adapt an SR model to a camera from its K shots; returns the summary dict (also OUT/summary.json)."""
    from drtl.config import check_params
    from drtl.data.folder import MANIFEST, load_pairs, pair_paths, write_manifest
    from drtl.data.splits import few_shot_names
    from drtl.data.validate import check_folder
    from drtl.stages.evaluate import evaluate
    from drtl.stages.relation import run_key
    from drtl.stages.train import finetune_run, pretrain_run

    clock = _Clock(echo)
    if isinstance(scale, bool) or int(scale) != scale or int(scale) not in (2, 3, 4):
        raise ConfigError(f"--scale must be 2, 3 or 4, got {scale}")
    if isinstance(shots, bool) or int(shots) != shots or int(shots) < 1:
        raise ConfigError(f"--shots must be a positive integer, got {shots}")
    scale, shots, seed = int(scale), int(shots), int(seed)
    params = copy.deepcopy(params)
    params["target"]["scale"] = scale
    check_params(params)
    device, arch = params["device"], params["arch"]
    out = Path(out)
    _out_folder(out)
    data = out / "data"
    every = float(params.get("log_every_s", 10))

    # 1-2. import + validate
    with clock.stage("import"):
        used = import_pairs(pairs, data / "all", scale, layout, names)
    n_all = len(pair_paths(data / "all"))
    clock.say(f"imported {n_all} pairs ({used}) into {data / 'all'}")
    with clock.stage("validate"):
        check_folder(data / "all", scale)
        if not (data / "all" / MANIFEST).is_file():
            write_manifest(data / "all", scale)
    clock.say(f"validated {n_all} pairs at x{scale}")

    # 3. split
    all_names = [n for n, _, _ in pair_paths(data / "all")]
    if shots > len(all_names):
        raise DataError(f"--shots {shots}: {pairs} holds only {len(all_names)} pairs")
    shot_list = few_shot_names(all_names, shots, seed)
    rest = [n for n in all_names if n not in set(shot_list)]
    _copy_subset(data / "all", data / "shots", shot_list, scale)
    if rest:
        _copy_subset(data / "all", data / "rest", rest, scale)
    elif (data / "rest").exists():
        shutil.rmtree(data / "rest")
    clock.say(f"K={shots} shots (seed {seed}): {', '.join(shot_list)}; "
              + (f"{len(rest)} pairs kept for evaluation" if rest else "no pair left for evaluation"))

    key = run_key(shots, seed)
    name = f"{out.name}_{key}"
    run_params = {"method": "drtl_pre" if params["relation"]["weighting"] else "pretrain", "shots": shots,
                  "seed": seed, "pairs": str(pairs), "layout": used, **params}
    with _tracking(params, name, run_params, clock) as run:
        # 4. aux side
        cache_root = Path(aux_cache) if aux_cache else default_cache_root()
        with clock.stage("aux_total"):
            try:
                aux = ensure_aux(params, scale, cache_root, device, clock)
            except _Lost:
                aux = ensure_aux(params, scale, cache_root, device, clock)
        entry = Path(aux["path"])
        synth = entry / "synth"

        # 5. relation of this camera
        with clock.stage("relation"):
            lrs = [lr for _, lr, _ in load_pairs(data / "shots", scale)]
            rel = target_relation(entry / "drn" / "drn.pt", lrs, params["relation"], out / "relation", key,
                                  f"relation of {out.name} (K={shots}) to the auxiliary distortions")
        table = rel["table"]
        top = table.head(5)
        clock.say("closest auxiliary distortions: " + ", ".join(
            f"{r.task} ({r.weight:.3f})" for r in top.itertuples()))

        # 6. pre-training (relation-weighted; uniform reused from the cache) + fine-tuning
        ft_section = params["finetune"]
        pre_section = params["pretrain"]
        train_keys = lambda s: {k: v for k, v in s.items() if k not in ("log_every", "checkpoint_every")}  # noqa: E731
        pre_ran = False
        if params["relation"]["weighting"]:
            method = "drtl_pre"
            pre_dir = out / "pretrain"
            pre_fp = _fp(["drtl", aux["fingerprint"], rel["weights"], arch, train_keys(pre_section), seed, scale])
            clock.say("pre-training: unchanged inputs, reusing " + str(pre_dir / "model.pt")
                      if _done(pre_dir, pre_fp, "model.pt") else
                      f"pre-training on the auxiliary tasks, relation-weighted ({pre_section['iterations']} steps)")
            with clock.stage("pretrain"):
                pre_ran = _step(pre_dir, pre_fp, "model.pt", lambda: pretrain_run(
                    "drtl", synth, out / "relation", pre_dir, arch, scale, pre_section, seed, shots, device,
                    _throttled(clock, every, "pretrain")))
            init = pre_dir / "model.pt"
            uniform_hit = None
        else:
            method = "pretrain"
            pre_fp = _fp(["uniform", aux["fingerprint"], arch, train_keys(pre_section), seed, scale])
            pre_dir = entry / "uniform" / pre_fp
            init = pre_dir / "model.pt"
            uniform_hit = init.is_file()
            if uniform_hit:
                clock.say(f"relation.weighting is off: reusing the cached uniform pre-trained model {init}")
            else:
                clock.say(f"relation.weighting is off: uniform pre-training ({pre_section['iterations']} steps), "
                          f"cached for reuse")
                work = out / "pretrain"
                with clock.stage("pretrain"):
                    _step(work, pre_fp, "model.pt", lambda: pretrain_run(
                        "uniform", synth, out / "relation", work, arch, scale, pre_section, seed, None, device,
                        _throttled(clock, every, "pretrain")))
                from drtl.io import atomic_path

                with atomic_path(init) as tmp:
                    shutil.copyfile(work / "model.pt", tmp)
                pre_ran = True
        shots_fp = _fp((data / "shots" / MANIFEST).read_text())  # names, sizes and sha256 of the K pairs
        ft_dir = out / "finetune"
        ft_fp = _fp([method, pre_fp, shots_fp, arch, train_keys(ft_section), shots, seed, scale])
        clock.say("fine-tuning: unchanged inputs, reusing " + str(ft_dir / "model.pt")
                  if _done(ft_dir, ft_fp, "model.pt") else
                  f"fine-tuning on the {shots} shots ({ft_section['iterations']} steps)")
        with clock.stage("finetune"):
            ft_ran = _step(ft_dir, ft_fp, "model.pt", lambda: finetune_run(
                method, data / "shots", ft_dir, arch, scale, ft_section, shots, seed, init, device,
                _throttled(clock, every, "finetune")))

        # 8a. the model file, with the adapt recipe
        from drtl.modelio import load_model, save_model

        model, meta = load_model(ft_dir / "model.pt", expect_scale=scale)
        recipe = {**meta["recipe"], "adapt": {
            "pairs": str(pairs), "layout": used, "scale": scale, "shots": shots, "seed": seed,
            "shot_names": shot_list, "method": method, "aux_fingerprint": aux["fingerprint"],
            "top_tasks": [{"task": r.task, "family": r.family, "weight": float(r.weight)} for r in top.itertuples()],
            "params": params}}
        save_model(out / "model.pt", model, recipe)

        # 7. evaluation on the remaining pairs
        ev = None
        if rest:
            clock.say(f"evaluating on the {len(rest)} remaining pairs")
            with clock.stage("evaluate"):
                m_ev = evaluate(method, data / "rest", scale, out / "eval" / "model.json", out / "model.pt", shots,
                                seed, device, tile=EVAL_TILE)
                b_ev = evaluate("bicubic", data / "rest", scale, out / "eval" / "bicubic.json")
            ev = {"n_pairs": len(rest),
                  "model": {"psnr_y": m_ev["psnr_y"], "ssim_y": m_ev["ssim_y"]},
                  "bicubic": {"psnr_y": b_ev["psnr_y"], "ssim_y": b_ev["ssim_y"]},
                  "gain_psnr_y": m_ev["psnr_y"] - b_ev["psnr_y"], "gain_ssim_y": m_ev["ssim_y"] - b_ev["ssim_y"]}
            clock.say(f"PSNR-Y {ev['model']['psnr_y']:.3f} dB vs bicubic {ev['bicubic']['psnr_y']:.3f} dB "
                      f"({ev['gain_psnr_y']:+.3f}); SSIM-Y {ev['model']['ssim_y']:.4f} "
                      f"vs {ev['bicubic']['ssim_y']:.4f}")

        total = round(time.time() - clock.t0, 2)
        summary = {
            "format": "drtl-adapt-summary", "version": CACHE_VERSION,
            "pairs": str(pairs), "layout": used, "scale": scale, "shots": shots, "seed": seed, "method": method,
            "n_pairs": n_all, "shot_names": shot_list, "rest_names": rest,
            "aux_cache": {k: aux.get(k) for k in ("path", "fingerprint", "hit", "drn_trained", "synthesized",
                                                   "n_tasks", "n_images", "drn_train_accuracy", "drn_val_accuracy")},
            "uniform_pretrain_cache_hit": uniform_hit,
            "ran": {"pretrain": bool(pre_ran), "finetune": bool(ft_ran)},
            "relation": {"weighting": bool(params["relation"]["weighting"]), "tau": float(params["relation"]["tau"]),
                         "entropy": rel["entropy"],
                         "top": [{"task": r.task, "family": r.family, "similarity": float(r.similarity),
                                  "weight": float(r.weight)} for r in top.itertuples()]},
            "eval": ev, "timings_s": {**clock.timings, "total": total},
            "model": str(out / "model.pt"), "threads": _threads(),
        }
        _json(out / "summary.json", summary)
        from drtl.io import write_text

        write_text(out / "summary.md", summary_markdown(summary, out))
        if run is not None:
            run.log_metrics({"total_s": total, **{f"time_{k}_s": v for k, v in clock.timings.items()},
                             **({"psnr_y": ev["model"]["psnr_y"], "ssim_y": ev["model"]["ssim_y"],
                                 "bicubic_psnr_y": ev["bicubic"]["psnr_y"], "bicubic_ssim_y": ev["bicubic"]["ssim_y"],
                                 "gain_psnr_y": ev["gain_psnr_y"]} if ev else {}),
                             "aux_cache_hit": float(aux["hit"]), "relation_entropy": rel["entropy"]})
            hist = ft_dir / "history.json"
            if hist.is_file():
                run.log_history(json.loads(hist.read_text()))
            for f in ("model.pt", "summary.md", "summary.json"):
                run.log_artifact(out / f)
            run.log_artifacts(out / "relation", "relation")
    clock.say(f"done in {total:.0f}s: {out / 'model.pt'} (summary: {out / 'summary.md'})")
    return summary


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


def summary_markdown(s: dict, out: Path) -> str:
    a, r, ev, t = s["aux_cache"], s["relation"], s["eval"], s["timings_s"]
    lines = [f"# drtl adapt: {Path(s['pairs']).name} (x{s['scale']}, K={s['shots']})", ""]
    lines += ["## Data", "",
              f"- source: `{s['pairs']}` ({s['layout']}), {s['n_pairs']} pairs at x{s['scale']}",
              f"- K = {s['shots']} shots (seed {s['seed']}): {', '.join(s['shot_names'])}",
              f"- evaluation: {len(s['rest_names'])} remaining pairs" if s["rest_names"] else
              "- evaluation: none (every pair is a shot)", ""]
    lines += ["## The distortions this camera resembles", "",
              f"Relation weights `softmax(cos / tau)`, tau = {r['tau']}"
              + ("" if r["weighting"] else " (weighting off: uniform weights; ranked by similarity)")
              + f"; full table `relation/ranking.csv`, plot `relation/weights.png`.", "",
              "| rank | auxiliary distortion | family | similarity | weight |", "|---:|---|---|---:|---:|"]
    lines += [f"| {i} | `{x['task']}` | {x['family']} | {x['similarity']:.3f} | {x['weight']:.3f} |"
              for i, x in enumerate(r["top"], 1)]
    lines += ["", "## Quality on the remaining pairs", ""]
    if ev:
        lines += ["PSNR / SSIM on Y (BT.601), border crop = scale.", "",
                  "| method | PSNR-Y (dB) | SSIM-Y |", "|---|---:|---:|",
                  f"| adapted model ({s['method']}) | {ev['model']['psnr_y']:.3f} | {ev['model']['ssim_y']:.4f} |",
                  f"| bicubic | {ev['bicubic']['psnr_y']:.3f} | {ev['bicubic']['ssim_y']:.4f} |",
                  f"| gain | {ev['gain_psnr_y']:+.3f} | {ev['gain_ssim_y']:+.4f} |"]
    else:
        lines += ["No pair was left out of the K shots, so nothing was evaluated (PSNR unknown); "
                  "give more pairs than --shots to measure the gain over bicubic."]
    lines += ["", "## Timings", "",
              f"Aux cache `{a['path']}`: " + ("reused (no synthesis, no DRN training)." if a["hit"] else
                                              "built by this run (synthesis + DRN training)."), "",
              "| step | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in t.items()]
    lines += ["", f"({s['threads']} torch threads.)", "", "## Use the model", "", "```bash",
              f"drtl upscale IMG_OR_FOLDER --model {out / 'model.pt'} --out DIR", "```", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ CLI
def _cmd_adapt(a) -> None:
    from drtl.data.importers import parse_names

    from drtl.config import apply_threads

    params = adapt_params(a.params, a.set)
    apply_threads(params)
    s = adapt(a.pairs, a.scale, a.shots, a.out, params, seed=a.seed, aux_cache=a.aux_cache,
              echo=lambda line: print(line, flush=True), layout=a.layout, names=parse_names(a.names))
    if s["eval"]:
        e = s["eval"]
        print(f"adapted x{s['scale']} model for K={s['shots']} -> {s['model']}: PSNR-Y {e['model']['psnr_y']:.3f} dB "
              f"vs bicubic {e['bicubic']['psnr_y']:.3f} dB on {e['n_pairs']} remaining pairs", flush=True)
    else:
        print(f"adapted x{s['scale']} model for K={s['shots']} -> {s['model']} (no pair left to evaluate)", flush=True)


def add_adapt_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``drtl adapt`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "adapt", help="adapt an SR model to your camera from K of its LR/HR pairs (DRTL-Pre, one command)",
        description="Import, validate and split your camera's pairs, relate them to the (cached) auxiliary "
                    "distortions, pre-train with relation weights, fine-tune on K shots, evaluate on the rest.")
    p.add_argument("--pairs", required=True, help="your pairs: a paired folder (HR/ + LR/) or a raw layout")
    p.add_argument("--scale", type=int, required=True, help="2, 3 or 4")
    p.add_argument("--shots", type=int, required=True, help="K: pairs used for training; the rest evaluate")
    p.add_argument("--out", required=True, help="output folder (model.pt, summary.md, relation/, data/ ...)")
    p.add_argument("--params", default=None,
                   help="params file merged over the built-in adapt profile (default: the adapt profile)")
    p.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param, e.g. -S finetune.iterations=500 (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="which K pairs are the shots, and training seeds")
    p.add_argument("--aux-cache", default=None,
                   help="aux cache root (default $DRTL_CACHE_DIR/aux, $XDG_CACHE_HOME/drtl/aux or ~/.cache/drtl/aux)")
    p.add_argument("--layout", default="auto", choices=list(LAYOUTS),
                   help="layout of --pairs (auto: HR/+LR/ or City100 NNNH/NNNL.PNG)")
    p.add_argument("--names", default=None, help="use only these pairs, e.g. 001-020 or 001,005,010-012")
    p.set_defaults(func=_cmd_adapt)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m drtl.stages.adapt --pairs ... `` (the same as ``drtl adapt ...``)."""
    import warnings

    parser = argparse.ArgumentParser(prog="drtl")
    add_adapt_parser(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(["adapt", *(sys.argv[1:] if argv is None else argv)])

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"drtl: warning: {message}", file=sys.stderr)

    saved, warnings.showwarning = warnings.showwarning, show
    try:
        args.func(args)
    except DRTLError as exc:
        print(f"drtl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("drtl: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = saved
    return 0


if __name__ == "__main__":
    sys.exit(main())
