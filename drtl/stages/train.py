"""Stages: pre-training (uniform / DRTL-Pre), meta-training (MAML / DRTL-Meta), few-shot fine-tuning.

Each run writes ``OUT/model.pt`` (a drtl model file carrying its recipe, see drtl.modelio) and
``OUT/history.json`` (the training curve). Runs checkpoint to ``OUT/.ckpt.pt`` when
``checkpoint_every`` > 0 and resume from it when rerun after an interruption.

Which runs exist (K = shots, S = seed):

- ``pretrain``: ``uniform_s<S>`` (w = 1/N), ``drtl_k<K>_s<S>`` (w = relation weights of run K, S)
  and ``more_s<S>`` (the equal-compute control: ``uniform_s<S>`` continued with plain uniform steps
  that process as many patches as the meta-training does, see :func:`control_section`);
- ``metatrain``: ``maml_s<S>`` and ``drtl_k<K>_s<S>``, starting from ``uniform_s<S>`` by default
  (meta-transfer; ``meta.init: scratch`` starts them cold);
- ``finetune``: ``<method>_k<K>_s<S>`` for every method of the registry (drtl.methods), all with the
  same budget on the same K pairs; the ceilings (``upper_bound``, ``scratch_all``) train on every pool
  pair with ``finetune.ceiling_iterations`` steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from drtl.archs import build_arch
from drtl.data.folder import load_pairs, manifest_column
from drtl.data.patches import PairSampler, split_rows
from drtl.errors import ConfigError, DataError
from drtl.io import write_text
from drtl.methods import DRTL_CONTINUE, METHODS, STAGE_VARIANTS, TRAINED_METHODS, source_for
from drtl.stages.shots import load_weights, run_key, shot_names
from drtl.train import MetaConfig, TrainConfig, finetune, maml_train, pretrain

_TRAIN_KEYS = {f for f in TrainConfig.__dataclass_fields__}


def train_config(section: dict, seed: int, device: str) -> TrainConfig:
    d = {k: v for k, v in section.items() if k in _TRAIN_KEYS}
    return TrainConfig.from_dict({**d, "seed": int(seed), "device": device})


def _fresh_model(arch: dict, scale: int, seed: int):
    return build_arch({**arch, "scale": int(scale)}, generator=torch.Generator().manual_seed(10_000 + int(seed)))


def _start_model(arch: dict, scale: int, seed: int, init):
    """The model a run starts from: ``init`` (a drtl model file, e.g. the uniform pre-trained model
    that meta-training transfers from) or fresh weights."""
    if init is None:
        return _fresh_model(arch, scale, seed)
    from drtl.modelio import load_model

    return load_model(init, expect_scale=scale)[0]


META_KEYS = ("inner_steps", "inner_lr", "meta_batch", "first_order", "support_batch", "query_batch")


def control_section(pretrain: dict, meta: dict) -> dict:
    """The equal-compute control's pre-training settings: as many steps as meta-training has, each
    drawing ``meta_batch`` tasks with ``inner_steps * support_batch + query_batch`` patches per task,
    i.e. the patches a first-order meta-step pushes through the network (forward and backward), at
    the meta-training's patch size and outer learning rate."""
    return {**pretrain, "iterations": meta["iterations"], "tasks_per_step": meta["meta_batch"],
            "batch": meta["inner_steps"] * meta["support_batch"] + meta["query_batch"],
            "lr_patch": meta["lr_patch"], "lr": meta["lr"], "log_every": meta["log_every"]}


def _save(out: Path, model, recipe: dict, history: dict) -> None:
    from drtl.modelio import save_model

    out.mkdir(parents=True, exist_ok=True)
    hist = {k: v for k, v in history.items() if isinstance(v, (list, int, float, str, dict))}
    write_text(out / "history.json", json.dumps(hist) + "\n")
    save_model(out / "model.pt", model, recipe)


def _ckpt(out: Path, cfg: TrainConfig):
    return out / ".ckpt.pt" if cfg.checkpoint_every > 0 else None


def _samplers(pairs_per_task, scale, patch, what):
    try:
        return [PairSampler(p, scale, patch) for p in pairs_per_task]
    except DataError as exc:
        raise ConfigError(f"{what}.lr_patch={patch}: {exc}") from None


def _aux_tasks(stage: str, method: str, synth, relation_dir, shots, seed, group: str | None = None):
    """(task names, pairs per task, weights or None for uniform): the bank's training pairs, plus the
    camera-fitted task when the relation stage weighed one (``relation.fitted``). ``group``: a task
    family (w = 1 on its tasks, 0 elsewhere; ``uniform``: every task), for ``drtl headroom``."""
    from drtl.relation.fitted import with_fitted
    from drtl.stages.synthesize import load_synth  # degradations + scipy: not needed by finetune

    tasks, pairs, _ = load_synth(synth, "train")
    names = [t.name for t in tasks]
    if group is not None:
        w = [1.0 if group in ("uniform", t.family) else 0.0 for t in tasks]
        if not any(w):
            raise ConfigError(f"--group {group!r}: no task of that family in {synth}; "
                              f"families: {', '.join(dict.fromkeys(t.family for t in tasks))}")
        return names, pairs, w
    if not source_for(stage, method).weighted:
        return names, pairs, None
    if shots is None:
        raise ConfigError(f"method {method!r} needs --shots and --seed (its weights depend on the K target shots)")
    w_all = load_weights(relation_dir, shots, seed, names)
    return with_fitted(tasks, pairs, w_all, relation_dir, run_key(shots, seed), seed)


def group_model(pairs, weights, arch: dict, section: dict, scale: int, device: str, seed: int = 0,
                what: str = "pretrain"):
    """A model pre-trained from fresh weights on the bank's ``pairs`` (one list per task) with fixed
    task ``weights`` (1 on a family, 0 elsewhere; all 1 = the uniform mixture), with the budget of
    the params ``section`` (``iterations``, ``batch``, ``lr_patch``, ``lr``, ``schedule``,
    ``tasks_per_step``). On the CPU, in eval mode."""
    cfg = train_config(section, seed, device)
    model = _fresh_model(arch, scale, seed)
    pretrain(model, _samplers(pairs, scale, cfg.lr_patch, what), list(weights), cfg,
             tasks_per_step=int(section["tasks_per_step"]), progress=False)
    return model.cpu().eval()


def pretrain_run(method: str, synth, relation_dir, out, arch: dict, scale: int, section: dict, seed: int,
                 shots: int | None = None, device: str = "cpu", on_log=None, init=None, group: str | None = None) -> dict:
    """Multi-task pre-training on the auxiliary tasks; ``method`` is 'uniform', 'drtl' or 'more'
    (uniform, continued from ``init``; the caller passes :func:`control_section`)."""
    if method not in STAGE_VARIANTS["pretrain"]:
        raise ConfigError(f"pretrain method must be one of {', '.join(STAGE_VARIANTS['pretrain'])}, got {method!r}")
    names, pairs, w = _aux_tasks("pretrain", method, synth, relation_dir, shots, seed, group)
    cfg = train_config(section, seed, device)
    model = _start_model(arch, scale, seed, init)
    out = Path(out)
    hist = pretrain(model, _samplers(pairs, scale, cfg.lr_patch, "pretrain"), w, cfg,
                    tasks_per_step=section.get("tasks_per_step"), ckpt_path=_ckpt(out, cfg), on_log=on_log)
    recipe = {"stage": "pretrain", "method": method, "shots": shots, "seed": seed, "train": cfg.to_dict(),
              "tasks": names, "weights": w, "tasks_per_step": section.get("tasks_per_step"),
              "init": str(init) if init else None, **({"group": group} if group else {})}
    _save(out, model.cpu(), recipe, hist)
    return {"final_loss": float(hist["loss"][-1]) if hist.get("loss") else None}


def metatrain_run(method: str, synth, relation_dir, out, arch: dict, scale: int, section: dict, seed: int,
                  shots: int | None = None, device: str = "cpu", on_log=None, init=None) -> dict:
    """(First-order) MAML over the auxiliary tasks; ``method`` is 'maml' or 'drtl'."""
    if method not in STAGE_VARIANTS["metatrain"]:
        raise ConfigError(f"metatrain method must be one of {', '.join(STAGE_VARIANTS['metatrain'])}, got {method!r}")
    names, pairs, w = _aux_tasks("metatrain", method, synth, relation_dir, shots, seed)
    cfg = train_config(section, seed, device)
    mcfg = MetaConfig(**{k: section[k] for k in META_KEYS})
    model = _start_model(arch, scale, seed, init)
    out = Path(out)
    hist = maml_train(model, _samplers(pairs, scale, cfg.lr_patch, "meta"), w, cfg, mcfg, ckpt_path=_ckpt(out, cfg),
                      on_log=on_log)
    recipe = {"stage": "metatrain", "method": method, "shots": shots, "seed": seed, "train": cfg.to_dict(),
              "meta": {k: section[k] for k in META_KEYS}, "tasks": names, "weights": w,
              "init": str(init) if init else None}
    _save(out, model.cpu(), recipe, hist)
    return {"final_loss": float(hist["loss"][-1]) if hist.get("loss") else None}


def finetune_run(method: str, pool, out, arch: dict, scale: int, section: dict, shots: int | None, seed: int,
                 init: str | Path | None = None, device: str = "cpu", on_log=None) -> dict:
    """Few-shot fine-tuning on the K target pairs of (shots, seed); ``shots`` None: every pool pair."""
    if method not in TRAINED_METHODS:
        raise ConfigError(f"finetune method must be one of {', '.join(TRAINED_METHODS)}, got {method!r}")
    names = None if shots is None else shot_names(pool, shots, seed)
    pairs = load_pairs(pool, scale, names)
    cfg = train_config(section, seed, device)
    model = _start_model(arch, scale, seed, init)
    train, val = split_rows([(lr, hr) for _, lr, hr in pairs], scale, float(section.get("val_fraction", 0.0)),
                            cfg.lr_patch)
    try:
        sampler = PairSampler(train, scale, cfg.lr_patch)
    except DataError as exc:
        raise ConfigError(f"finetune.lr_patch={cfg.lr_patch}: {exc}") from None
    out = Path(out)
    hist = finetune(model, sampler, cfg, ckpt_path=_ckpt(out, cfg), on_log=on_log, val=val,
                    eval_every=int(section.get("eval_every", 5)), patience=int(section.get("patience", 0)))
    lr_hashes = manifest_column(pool, "lr_sha256")
    used = [n for n, _, _ in pairs]
    recipe = {"stage": "finetune", "method": method, "shots": shots, "seed": seed, "train": cfg.to_dict(),
              "init": str(init) if init else None, "pairs": used, "val_strips": len(val),
              "best_step": hist.get("best_step"),
              "data_sha256": {n: lr_hashes[n] for n in used if n in lr_hashes}}
    _save(out, model.cpu(), recipe, hist)
    return {"final_loss": float(hist["loss"][-1]) if hist.get("loss") else None,
            **({"best_step": hist["best_step"], "best_val_loss": hist["best_val_loss"],
                "steps_done": len(hist["loss"])} if val else {})}


# ------------------------------------------------------------------ the stage contract (drtl.stages)
def _common(params: dict, inputs: dict):
    shots = inputs.get("shots")
    return (int(params["target"]["scale"]), int(inputs.get("seed") or 0), None if shots is None else int(shots),
            params["device"])


def pretrain_stage(params: dict, inputs: dict, out: Path, on_log=None) -> dict:
    scale, seed, shots, device = _common(params, inputs)
    method = inputs["method"]
    section = params["pretrain"]
    if method == source_for("pretrain", "more").variant:
        if not inputs.get("init"):
            raise ConfigError("pretrain --method more continues a uniform pre-training: give --init MODEL")
        section = control_section(params["pretrain"], params["meta"])
    elif source_for("pretrain", method).init_param == DRTL_CONTINUE and inputs.get("init"):  # drtl_continue > 0
        section = {**section, "iterations": int(section["drtl_continue"])}  # DRTL-Pre's continuation (or a twin's)
    if inputs.get("group") and method != source_for("pretrain", "uniform").variant:
        raise ConfigError(f"pretrain --group goes with --method uniform (fixed family weights), not {method!r}")
    return pretrain_run(method, inputs.get("synth") or Path(params["outputs"]) / "synth",
                        inputs.get("relation"), out, params["arch"], scale, section, seed, shots, device,
                        on_log, inputs.get("init"), inputs.get("group"))


def metatrain_stage(params: dict, inputs: dict, out: Path, on_log=None) -> dict:
    scale, seed, shots, device = _common(params, inputs)
    return metatrain_run(inputs["method"], inputs.get("synth") or Path(params["outputs"]) / "synth",
                         inputs.get("relation"), out, params["arch"], scale, params["meta"], seed, shots, device,
                         on_log, inputs.get("init"))


def finetune_stage(params: dict, inputs: dict, out: Path, on_log=None) -> dict:
    scale, seed, shots, device = _common(params, inputs)
    section = dict(params["finetune"])
    budget = METHODS[inputs["method"]].budget if inputs["method"] in METHODS else "iterations"
    section["iterations"] = section[budget]  # the ceilings' long budget (finetune.ceiling_iterations)
    return finetune_run(inputs["method"], inputs.get("pool") or params["target"]["pool"], out, params["arch"], scale,
                        section, shots, seed, inputs.get("init"), device, on_log)
