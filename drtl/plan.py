"""The plan: params + the method registry -> the DAG of stage runs.

One plan, many renderers: ``drtl experiment`` executes it in one process
(:mod:`drtl.orchestrate.experiment`), ``dvc.yaml`` is generated from it
(:mod:`drtl.orchestrate.dvcgen`), the Kubeflow pipeline is built from it (``pipelines/``), and
``drtl adapt`` runs a small plan of its own. Every run is a :class:`Run`: a stage, a name, an
output path, the stage's inputs and the runs it depends on.

The builders below take ``shots`` / ``seed`` as plain values; the DVC renderer passes DVC's
``${item.shots}`` / ``${item.seed}`` strings instead, and ``root`` / ``pool`` / ``test`` as
``${outputs}`` / ``${target.pool}`` / ``${target.test}``, so the same code yields both the concrete
runs and the templates of ``dvc.yaml``'s matrix stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drtl.methods import METHODS, RELATIONS, Method, Source, get_method, init_source, run_name, source_init
from drtl.similarity import bank_parts, get_similarity
from drtl.stages import get_stage


@dataclass(frozen=True)
class Run:
    stage: str
    name: str
    out: str
    inputs: dict = field(default_factory=dict)
    deps: tuple = ()       # ids of the runs whose outputs this run reads
    group: str = ""        # runs of one group differ only in (shots, seed): a DVC matrix stage
    sweep: tuple = ()      # which of ("shots", "seed") vary inside the group

    @property
    def id(self) -> str:
        return f"{self.stage}/{self.name}"


@dataclass(frozen=True)
class Roots:
    """Where things are: ``root`` = params ``outputs``; ``pool`` / ``test`` = the target folders."""

    root: str
    pool: str
    test: str
    reports: str

    def folder(self, stage: str, name: str | None = None) -> str:
        base = self.reports if stage == "report" else f"{self.root}/{get_stage(stage).folder}"
        return base if name is None else f"{base}/{name}"


def roots(params: dict, reports: str | None = None) -> Roots:
    root = str(params["outputs"]).rstrip("/")
    return Roots(root, str(params["target"]["pool"]), str(params["target"]["test"]), reports or f"{root}/reports")


# ------------------------------------------------------------------ builders (one per kind of run)
def validate_run(r: Roots) -> Run:
    return Run("validate", "validate", r.folder("validate"), {"pool": r.pool, "test": r.test}, group="validate")


def synthesize_run(r: Roots) -> Run:
    return Run("synthesize", "synth", r.folder("synthesize"), {}, ("validate/validate",), group="synthesize")


def relation_needs(variant: str, params: dict) -> frozenset:
    """The parts of the bank a relation run of ``variant`` reads (drtl.similarity): 'drn', 'experts'."""
    return get_similarity(RELATIONS[variant].resolve(params["relation"])[0]).needs


def bank_run(r: Roots, parts: str) -> Run:
    return Run("bank", "bank", r.folder("bank"), {"parts": parts, "synth": r.folder("synthesize")},
               ("synthesize/synth",), group="bank")


def bank_for(r: Roots, params: dict, variants=("drtl",)) -> list[Run]:
    """The bank run that the relation ``variants`` need (its ``--parts``: the union of what their
    similarities read), or [] when none needs one (e.g. the reproduction similarity)."""
    parts = set().union(*(relation_needs(v, params) for v in variants))
    return [bank_run(r, bank_parts(parts))] if parts else []


def relation_run(r: Roots, variant: str, shots, seed, params: dict) -> Run:
    """The relation of the K shots of ``seed`` (one run per (K, seed), its variant's weights)."""
    name = run_name(variant, shots, seed)
    inputs = {"method": variant, "shots": shots, "seed": seed, "synth": r.folder("synthesize")}
    deps = ["synthesize/synth"]
    if relation_needs(variant, params):
        inputs["bank"] = r.folder("bank")
        deps.append("bank/bank")
    return Run("relation", name, r.folder("relation", name), inputs, tuple(deps), group=f"relation_{variant}",
               sweep=("shots", "seed"))


def source_run(r: Roots, src: Source, shots, seed, params: dict | None = None) -> Run:
    name = src.name(shots, seed)
    inputs = {"method": src.variant, "shots": shots if src.per_shot else None, "seed": seed,
              "synth": r.folder("synthesize")}
    deps = ["synthesize/synth"]
    if src.weighted:
        rel = relation_run(r, src.relation, shots, seed, params)
        inputs["relation"] = rel.out
        deps.append(rel.id)
    up = source_init(src, params)
    if up is not None:  # e.g. meta-transfer: MAML starts from the uniform pre-trained model
        first = source_run(r, up, shots, seed, params)
        inputs["init"] = f"{first.out}/model.pt"
        deps.append(first.id)
    return Run(src.stage, name, r.folder(src.stage, name), inputs, tuple(deps), group=f"{src.stage}_{src.variant}",
               sweep=("shots", "seed") if src.per_shot else ("seed",))


def source_chain(r: Roots, src: Source | None, shots, seed, params: dict) -> list[Run]:
    """``src``'s run after the runs it starts from and the relation runs they read (upstream first);
    [] for None."""
    chain = []
    while src is not None:
        run = source_run(r, src, shots, seed, params)
        chain[:0] = ([relation_run(r, src.relation, shots, seed, params)] if src.weighted else []) + [run]
        src = source_init(src, params)
    return chain


def finetune_run(r: Roots, m: Method, shots, seed, params: dict) -> Run:
    src = init_source(m, params.get("finetune"))
    k = shots if m.per_shot else None
    inputs = {"method": m.name, "shots": k, "seed": seed, "init": None, "pool": r.pool}
    deps = ()
    if src is not None:
        up = source_run(r, src, shots, seed, params)
        inputs["init"] = f"{up.out}/model.pt"
        deps = (up.id,)
    name = m.name_for(shots, seed)
    return Run("finetune", name, r.folder("finetune", name), inputs, deps, group=f"finetune_{m.name}",
               sweep=("shots", "seed") if m.per_shot else ("seed",))


def evaluate_run(r: Roots, m: Method, shots, seed, params: dict) -> Run:
    k = shots if m.per_shot else None
    name = m.name_for(shots, seed)
    inputs = {"method": m.name, "shots": k, "seed": seed, "data": r.test, "model": None}
    deps = ()
    if m.trains:
        ft = finetune_run(r, m, shots, seed, params)
        inputs["model"] = f"{ft.out}/model.pt"
        deps = (ft.id,)
    return Run("evaluate", name, r.folder("evaluate", name), inputs, deps, group=f"evaluate_{m.name}",
               sweep=("shots", "seed") if m.per_shot else ("seed",))


def report_run(r: Roots, evals: list[Run]) -> Run:
    return Run("report", "report", r.folder("report"), {}, tuple(e.id for e in evals), group="report")


# ------------------------------------------------------------------ the plan
def methods_of(params: dict) -> list[Method]:
    return [get_method(m) for m in params["experiment"]["methods"]]


def cells(params: dict) -> list[tuple[int, int]]:
    """The sweep: every (K, seed) of ``experiment.shots`` x ``experiment.seeds``."""
    ex = params["experiment"]
    return [(int(k), int(s)) for s in ex["seeds"] for k in ex["shots"]]


def eval_runs(params: dict, r: Roots | None = None) -> list[Run]:
    """Every evaluation, in table order (seed, method, K); K-independent methods once per seed."""
    r = r or roots(params)
    ex = params["experiment"]
    runs = []
    for s in ex["seeds"]:  # values as given: ints, or DVC's ${item.*} when rendering dvc.yaml
        for m in methods_of(params):
            ks = list(ex["shots"]) if m.per_shot else [None]
            runs += [evaluate_run(r, m, k, s, params) for k in ks]
    return runs


def eval_outputs(params: dict) -> list[str]:
    """The evaluation folders the report of ``params`` reads."""
    return [e.out for e in eval_runs(params)]


def plan(params: dict, reports: str | None = None) -> list[Run]:
    """Every run of the experiment, each after the runs it depends on, without duplicates.

    Order: validate, synthesize, the bank (when a similarity needs it), then per seed the relation
    runs, sources, fine-tunings and evaluations, then the report. ``reports``: the report's folder (default ``<outputs>/reports``).
    """
    r = roots(params, reports)
    runs: dict[str, Run] = {}

    def add(run: Run) -> None:
        runs.setdefault(run.id, run)

    add(validate_run(r))
    add(synthesize_run(r))
    evals = eval_runs(params, r)
    later: list[Run] = []
    for e in evals:
        m = METHODS[e.inputs["method"]]
        if m.trains:
            k = e.inputs["shots"] if m.per_shot else params["experiment"]["shots"][0]
            later += source_chain(r, init_source(m, params["finetune"]), k, e.inputs["seed"], params)
            later.append(finetune_run(r, m, k, e.inputs["seed"], params))
        later.append(e)
    for run in bank_for(r, params, {x.inputs["method"] for x in later if x.stage == "relation"}):
        add(run)  # the camera-free bank: what the plan's similarities need
    for run in later:
        add(run)
    add(report_run(r, evals))
    return list(runs.values())


__all__ = ["Run", "Roots", "roots", "plan", "eval_runs", "eval_outputs", "cells", "methods_of", "run_name",
           "validate_run", "synthesize_run", "bank_run", "bank_for", "relation_run", "relation_needs", "source_run", "source_chain", "finetune_run", "evaluate_run",
           "report_run"]
