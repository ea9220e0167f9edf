"""The stages, one function each, behind one contract: ``fn(params, inputs, out, on_log=None) -> metrics``.

- ``params``: the loaded params (``drtl.config.load_params``); a stage reads only the keys listed
  in its :attr:`Stage.reads`, less what a ``--method`` variant ignores (:meth:`Stage.reads_for`:
  uniform pre-training does not read ``meta`` or ``pretrain.drtl_continue``). DVC and
  ``drtl experiment``'s cache re-run a run when one of the keys it reads changes.
- ``inputs``: the run's identity and input paths, by name (:attr:`Stage.args`): e.g.
  ``{"method": "drtl_pre", "shots": 5, "seed": 0, "init": ".../model.pt", "pool": "data/..."}``.
- ``out``: the run's output folder (written atomically by the stage).
- ``on_log``: None, or a callable the stage's trainers call with each log entry (progress lines).
- returns the run's measurements (numbers only: losses, accuracies, PSNR...).

Nobody calls a stage function directly: :func:`drtl.runner.execute` sets threads, times the run,
and writes its record (``run.json``, :mod:`drtl.records`) for tracking. The CLI, ``dvc.yaml`` (via
the CLI), the Kubeflow components and the orchestrators (:mod:`drtl.orchestrate`) all go through
it. This module imports nothing heavy: stage functions load on first use, so ``drtl --help`` is fast.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from typing import Callable

from drtl.config import section
from drtl.methods import BASELINE, DRTL_CONTINUE, RELATIONS, SOURCES, STAGE_VARIANTS, TRAINED_METHODS
from drtl.similarity import DRN_KEYS, EXPERT_KEYS, SIMILARITIES, bank_unread


@dataclass(frozen=True)
class Arg:
    """A named stage input. ``kind``: ``int``, ``str``, ``path`` (a file or folder the stage
    reads: a DVC dependency and a tracked dataset input) or ``paths`` (a list of them)."""

    name: str
    kind: str = "str"
    required: bool = False
    help: str = ""
    choices: tuple | None = None
    default: object = None
    context: str | None = None  # tracking: the MLflow dataset context of a path input


@dataclass(frozen=True)
class Stage:
    name: str
    target: str                      # "module:function"
    help: str
    reads: tuple[str, ...] = ()      # params (sections or dotted keys) the stage reads
    args: tuple[Arg, ...] = ()
    artifacts: tuple[str, ...] = ()  # files / folders under ``out`` worth keeping in the tracker
    product: str | None = None       # the file whose presence means the run finished
    param_paths: tuple[str, ...] = ()  # params whose values are paths the stage reads (DVC deps)
    options: dict = field(default_factory=dict)
    unread: dict = field(default_factory=dict)  # --method variant -> params of ``reads`` it ignores
    folder: str = ""                 # its runs' folder under ``outputs`` (the report: ``reports``)
    resources: str = "light"         # what a cluster task needs: light | cpu | gpu (trains a network)
    variant: str = "method"          # the arg that names a run's variant (the key of ``unread``)
    unread_key: Callable | None = None  # (params, variant) -> the key of ``unread`` (default: the variant)
    gate: str | None = None          # a file written on success, the same bytes whatever the data: runs
    #                                  ordered after this stage depend on it (DVC) without being keyed by it

    def variant_of(self, inputs: dict) -> str | None:
        """The variant of a run with these inputs (its ``--method``; the bank's ``--parts``)."""
        return inputs.get(self.variant)

    def reads_for(self, params: dict, method: str | None = None) -> list[str]:
        """The params a run of variant ``method`` reads: ``reads`` less what that variant ignores
        (a section holding an ignored key is listed key by key, as DVC's ``params:`` take them). The
        one rule for cache keys, run records and ``dvc.yaml``, so that changing ``meta.iterations``
        re-runs MAML and the equal-compute control but not the uniform pre-training."""
        key = self.unread_key(params, method) if self.unread_key and method is not None else method
        skip = self.unread.get(key, ())
        out = []
        for key in self.reads:
            if key in skip:
                continue
            inner = [k for k in skip if k.startswith(key + ".")]
            if not inner:
                out.append(key)
                continue
            out += [f"{key}.{k}" for k in section(params, key) if f"{key}.{k}" not in inner]
        return out

    @property
    def fn(self):
        module, func = self.target.split(":")
        return getattr(importlib.import_module(module), func)

    @property
    def module(self) -> str:
        return self.target.split(":")[0]


_SEED = Arg("seed", "int", default=0, help="seed: draws the K shots and seeds every initialisation")
_SHOTS = Arg("shots", "int", help="K, the number of real target pairs")
_SYNTH = Arg("synth", "path", default="outputs/synth", help="synthesize stage output")
_REL = Arg("relation", "path", default="outputs/relation", help="relation stage output (weighted variants)")
_INIT = Arg("init", "path", help="model file to start from (none: fresh weights)")
_BANK = Arg("bank", "path", help="bank stage output (the DRN and / or the family experts the similarity needs)")

# What one (K, seed) relation run reads beyond the shots: each similarity reads its own keys
# (drtl.similarity); a variant that fixes the similarity and the fitted task (drtl.methods.RELATIONS)
# does not read relation.similarity / relation.fitted.
_SCORE_KEYS = tuple(dict.fromkeys(k for s in SIMILARITIES.values() for k in s.reads))
_CELL_KEYS = ("relation.mix", "relation.top_k", "relation.weighting", "relation.fitted", "relation.fitted_noise",
              "relation.composed", "relation.similarity")


def _relation_key(params: dict, variant: str) -> str:
    rel = RELATIONS.get(variant)
    if rel is None or rel.similarity is not None:
        return variant
    return rel.resolve(params["relation"])[0]


def _relation_unread() -> dict[str, tuple[str, ...]]:
    out = {name: tuple(k for k in _SCORE_KEYS if k not in s.reads) for name, s in SIMILARITIES.items()}
    for key, rel in RELATIONS.items():
        if rel.similarity is not None:
            fixed = (("relation.similarity",) + (("relation.fitted",) if rel.fitted is not None else ())
                     + (("relation.composed",) if rel.composed is not None else ()))
            out[key] = out[rel.similarity] + fixed
    return out

STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("prepare", "drtl.stages.prepare:run", "build the built-in sample or fetch a dataset folder",
          reads=("target.scale",),
          args=(Arg("source", "str", default="sample", help="'sample', a local dataset folder or s3://bucket/prefix"),
                Arg("sample", "str", default="{}", help="JSON kwargs of drtl.data.sample.make_sample")),
          product="manifest.json", folder="data", resources="light"),
    Stage("validate", "drtl.stages.validate:run", "great-expectations checks of the pool and test pairs",
          reads=("target.scale",),
          args=(Arg("pool", "path", help="few-shot pool (default: target.pool)", context="target_pool"),
                Arg("test", "path", help="test pairs (default: target.test)", context="target_test"),
                Arg("scale", "int", help="scale factor (default: target.scale)")),
          artifacts=("pool.json", "test.json"), product="pool.json", param_paths=("target.pool", "target.test"),
          folder="validate", resources="light", gate="passed"),
    Stage("synthesize", "drtl.stages.synthesize:run", "make the auxiliary tasks' LR/HR pairs",
          reads=("aux", "target.scale"), artifacts=("tasks.yaml",), product="synth.json", param_paths=("aux.hr",),
          folder="synth", resources="cpu"),
    Stage("bank", "drtl.stages.bank:run",
          "camera-free: the DRN and / or the family experts over the synthesized tasks (no target read)",
          reads=(*DRN_KEYS, *EXPERT_KEYS, "relation.seed", "target.scale", "device"), unread=bank_unread(),
          args=(Arg("parts", "str", required=True, choices=tuple(bank_unread()),
                    help="what to build: the DRN, the family experts or both"), _SYNTH),
          artifacts=("bank.json", "drn_eval.json"), product="bank.json", folder="bank", resources="gpu",
          variant="parts"),
    Stage("relation", "drtl.stages.relation:run",
          "relation weights and knowledge graph of the K shots of one (K, seed)",
          reads=(*_SCORE_KEYS, *_CELL_KEYS, "target.pool", "target.scale", "device"),
          unread=_relation_unread(), unread_key=_relation_key,
          args=(Arg("method", "str", default="drtl", choices=tuple(RELATIONS),
                    help="the relation variant (drtl.methods.RELATIONS; drtl: the profile's similarity)"),
                _SHOTS, _SEED, _SYNTH, _BANK),
          artifacts=("graphs", "weights.json", "relation.json"), product="weights.json",
          param_paths=("target.pool",), folder="relation", resources="gpu"),
    Stage("pretrain", "drtl.stages.train:pretrain_stage",
          "multi-task pre-training (uniform, DRTL-Pre, or the equal-compute control 'more')",
          reads=("arch", "pretrain", "meta", "target.scale", "device"),
          unread={"uniform": ("meta", "pretrain.drtl_continue"), "more": ("pretrain.drtl_continue",),
                  **{s.variant: ("meta",) for s in SOURCES.values() if s.init_param == DRTL_CONTINUE}},
          args=(Arg("method", "str", required=True, choices=STAGE_VARIANTS["pretrain"]), _SHOTS, _SEED, _SYNTH, _REL,
                _INIT, Arg("group", "str", help="with --method uniform: one task family alone (w = 1 on its "
                           "tasks), or 'uniform'; drtl headroom's pre-trainings")),
          artifacts=("model.pt",), product="model.pt", folder="pretrain", resources="gpu"),
    Stage("metatrain", "drtl.stages.train:metatrain_stage", "MAML or DRTL-Meta meta-training",
          reads=("arch", "meta", "target.scale", "device"),
          args=(Arg("method", "str", required=True, choices=STAGE_VARIANTS["metatrain"]), _SHOTS, _SEED, _SYNTH, _REL,
                _INIT),
          artifacts=("model.pt",), product="model.pt", folder="meta", resources="gpu"),
    Stage("finetune", "drtl.stages.train:finetune_stage", "few-shot fine-tuning on the K target pairs",
          reads=("arch", "finetune", "target.scale", "device"),
          args=(Arg("method", "str", required=True, choices=TRAINED_METHODS),
                Arg("shots", "int", help="K (omit: every pool pair)"), _SEED,
                _INIT,
                Arg("pool", "path", help="few-shot pool (default: target.pool)", context="target_pool")),
          artifacts=("model.pt",), product="model.pt", param_paths=("target.pool",),
          folder="finetune", resources="gpu"),
    Stage("evaluate", "drtl.stages.evaluate:run", "PSNR/SSIM (Y, crop = scale) of a method on a paired folder",
          reads=("target.scale", "device"),
          args=(Arg("method", "str", default=BASELINE, help=f"{BASELINE}, a method of the table "
                    f"({', '.join(TRAINED_METHODS)}) or any label for your own model"),
                Arg("data", "path", help="paired folder (default: target.test)", context="target_test"),
                Arg("model", "path", help="model file (every method but bicubic)"),
                Arg("shots", "int"), Arg("seed", "int"),
                Arg("scale", "int", help="scale factor (default: target.scale)"),
                Arg("device", "str", help="cpu | cuda | auto (default: params device)"),
                Arg("tile", "int", help="tile size for large images (default: whole image)")),
          artifacts=("eval.json",), product="eval.json", param_paths=("target.test",),
          folder="eval", resources="cpu"),
    Stage("report", "drtl.stages.report:run", "results.csv, aggregate table and figures",
          reads=("experiment.shots",),
          args=(Arg("evals", "paths", help="evaluation folders or eval.json files (default: the plan's)"),),
          artifacts=("results.csv", "aggregate.csv", "results.md", "psnr_vs_shots.png"), product="results.csv",
          folder="reports", resources="light"),
)}


def get_stage(name: str) -> Stage:
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; known: {', '.join(STAGES)}") from None
