"""The method registry: every row of the results table, defined once.

A *method* is one way of getting an SR model for the target camera from K real pairs: bicubic (no
model), training from scratch, or fine-tuning a model that a *source* run trained on the auxiliary
tasks (uniform pre-training, DRTL-Pre, MAML, DRTL-Meta). The plan (:mod:`drtl.plan`) turns this
registry and the params into the DAG of stage runs; ``dvc.yaml``, the Kubeflow pipeline,
``drtl experiment`` and ``drtl adapt`` all come from that plan. Adding a row (a ceiling, a control)
is one entry here.

Run names (folders under ``<outputs>/<stage>/``) come from :func:`run_name`: ``<stem>_k<K>_s<S>``
for runs that depend on K, ``<stem>_s<S>`` for runs that do not. This module is a leaf (no drtl
imports), so the config, the CLI and the orchestrators can all read it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """A training run on the auxiliary tasks whose model some methods fine-tune.

    ``stage``: ``pretrain`` or ``metatrain``; ``variant``: the stage's ``--method`` (``uniform`` /
    ``drtl`` / ``maml`` / ``more``); ``relation``: the :class:`Relation` whose weights of the K
    target shots it trains with (None: uniform, no relation), so a weighted source has one run per
    (K, seed) instead of one per seed. ``init``: the source whose model this
    run starts from (None = fresh weights); ``init_param``: a ``(section, key)`` param that can
    switch that off (value ``scratch``), e.g. ``meta.init``.
    """

    key: str
    stage: str
    variant: str
    label: str
    relation: str | None = None
    init: str | None = None
    init_param: tuple[str, str] | None = None

    @property
    def weighted(self) -> bool:
        return self.relation is not None

    @property
    def per_shot(self) -> bool:
        return self.weighted

    def name(self, shots, seed) -> str:
        return run_name(self.variant, shots if self.per_shot else None, seed)


@dataclass(frozen=True)
class Relation:
    """A variant of the per-(K, seed) relation stage (its ``--method``): how the weights of a
    weighted source are made. ``similarity`` (a name of :mod:`drtl.similarity`) and ``fitted`` (the
    camera-fitted task joins the bank) and ``composed`` (the fitted filter followed by each bank task's
    tail joins too, :mod:`drtl.relation.composed`) fix them; None takes the profile's
    ``relation.similarity`` / ``relation.fitted`` / ``relation.composed``."""

    key: str
    label: str
    similarity: str | None = None
    fitted: bool | None = None
    composed: bool | None = None

    def resolve(self, relation_params: dict) -> tuple[str, bool, bool]:
        """(similarity name, fitted, composed) of this variant under the params' ``relation`` section."""
        sim = self.similarity if self.similarity is not None else relation_params["similarity"]
        fitted = self.fitted if self.fitted is not None else bool(relation_params["fitted"])
        composed = self.composed if self.composed is not None else bool(relation_params.get("composed", False))
        return sim, fitted, composed


@dataclass(frozen=True)
class Method:
    """A row of the results table.

    ``init``: the :class:`Source` key whose model fine-tuning starts from (None = fresh weights);
    ``init_param``: a ``finetune.*`` param that chooses the init instead (``scratch`` = fresh, else
    the name of a method whose init to borrow); ``trains``: False only for bicubic; ``per_shot``:
    fine-tuned on the K shots (one run per K and seed) or on every pool pair (one run per seed,
    repeated for every K in the table); ``budget``: the ``finetune.*`` param with its number of
    steps (``iterations``, or ``ceiling_iterations`` for the ceilings' long budget); ``default``:
    in the default profile's table (``experiment.methods`` of drtl.config.DEFAULTS); ``drtl``: a DRTL
    row (relation-weighted over the bank), whose lead over its twin is the report's headline.
    """

    name: str
    label: str
    init: str | None = None
    init_param: str | None = None
    trains: bool = True
    per_shot: bool = True
    budget: str = "iterations"
    default: bool = True
    drtl: bool = False

    def name_for(self, shots, seed) -> str:
        return run_name(self.name, shots if self.per_shot else None, seed)


def run_name(stem: str, shots, seed) -> str:
    """'drtl_pre', 5, 0 -> 'drtl_pre_k5_s0'; 'bicubic', None, 1 -> 'bicubic_s1'. ``shots`` and
    ``seed`` may be strings (DVC's ``${item.shots}`` when rendering dvc.yaml)."""
    return f"{stem}_s{seed}" if shots is None else f"{stem}_k{shots}_s{seed}"


DRTL_CONTINUE = ("pretrain", "drtl_continue")  # N > 0: DRTL-Pre continues uniform pre-training for N steps
META_INIT = ("meta", "init")  # meta.init: 'pretrain' (meta-transfer from uniform pre-training) or 'scratch'

RELATIONS: dict[str, Relation] = {r.key: r for r in (
    Relation("drtl", "the profile's relation (relation.similarity, relation.fitted)"),
    Relation("fitted_only", "all weight on the camera-fitted task (no relation)", similarity="fitted", fitted=True,
             composed=False),
    Relation("uniform_fitted", "the fitted task in the bank, every task the same weight", similarity="uniform",
             fitted=True, composed=False),
    Relation("drn_fitted", "the paper's DRN relation over the bank and the fitted task", similarity="drn", fitted=True,
             composed=False),
)}

# the continuation of the uniform model by pretrain.drtl_continue steps (DRTL-Pre's recipe), with the
# weights of a relation variant (or uniform: the equal-budget twin)
_CONTINUED = dict(init="pretrain_uniform", init_param=DRTL_CONTINUE)

SOURCES: dict[str, Source] = {s.key: s for s in (
    Source("pretrain_uniform", "pretrain", "uniform", label="uniform multi-task pre-training"),
    Source("pretrain_drtl", "pretrain", "drtl", relation="drtl", label="DRTL-Pre: relation-weighted pre-training",
           init="pretrain_uniform", init_param=DRTL_CONTINUE),
    Source("meta_maml", "metatrain", "maml", label="MAML over the auxiliary tasks",
           init="pretrain_uniform", init_param=META_INIT),
    Source("meta_drtl", "metatrain", "drtl", relation="drtl", label="DRTL-Meta: relation-weighted meta-gradient",
           init="pretrain_uniform", init_param=META_INIT),
    Source("pretrain_more", "pretrain", "more",
           label="uniform pre-training continued for the meta-training's compute (equal-compute control)",
           init="pretrain_uniform"),
    Source("pretrain_uni_cont", "pretrain", "uni_cont", label="DRTL-Pre's continuation on uniform weights (its twin)",
           **_CONTINUED),
    Source("pretrain_fitted_only", "pretrain", "fitted_only", relation="fitted_only",
           label="DRTL-Pre's continuation on the fitted task alone", **_CONTINUED),
    Source("pretrain_uniform_fitted", "pretrain", "uniform_fitted", relation="uniform_fitted",
           label="DRTL-Pre's continuation, the fitted task in the bank at uniform weight", **_CONTINUED),
    Source("pretrain_drn_fitted", "pretrain", "drn_fitted", relation="drn_fitted",
           label="DRTL-Pre's continuation with the paper's DRN relation over the bank and the fitted task", **_CONTINUED),
)}

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("bicubic", "bicubic interpolation (no learning)", trains=False, per_shot=False),
    Method("scratch", "trained from scratch on the K pairs"),
    Method("pretrain", "uniform pre-training + fine-tuning", init="pretrain_uniform"),
    Method("maml", "MAML (meta-transfer from uniform pre-training) + fine-tuning", init="meta_maml"),
    Method("drtl_pre", "DRTL-Pre + fine-tuning", init="pretrain_drtl", drtl=True),
    Method("drtl_meta", "DRTL-Meta (meta-transfer from uniform pre-training) + fine-tuning", init="meta_drtl",
           drtl=True),
    Method("pretrain_more", "uniform pre-training + the meta-steps' compute as plain steps (control for maml)",
           init="pretrain_more", default=False),
    Method("uni_cont", "DRTL-Pre's twin: the uniform model continued as long, on uniform weights + fine-tuning",
           init="pretrain_uni_cont", default=False),
    Method("fitted_only", "the uniform model continued on the camera-fitted task alone + fine-tuning",
           init="pretrain_fitted_only", default=False),
    Method("uniform_fitted", "the uniform model continued with the fitted task in the bank, uniform weights "
           "+ fine-tuning", init="pretrain_uniform_fitted", default=False),
    Method("drn_fitted", "DRTL-Pre with the paper's DRN relation over the bank and the fitted task + fine-tuning",
           init="pretrain_drn_fitted", default=False, drtl=True),
    Method("upper_bound", "ceiling: every pool pair, long budget (init: finetune.upper_bound_init)",
           init_param="upper_bound_init", per_shot=False, budget="ceiling_iterations"),
    Method("scratch_all", "ceiling from scratch: every pool pair, the same long budget", per_shot=False,
           budget="ceiling_iterations"),
)}

METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
DEFAULT_METHODS: tuple[str, ...] = tuple(m.name for m in METHODS.values() if m.default)
BASELINE: str = next(m.name for m in METHODS.values() if not m.trains)  # the row without a model (bicubic)
FRESH = "scratch"  # an init param's value for fresh weights; any other value names a method's source
# upper_bound may start from any source that does not depend on K (it is fine-tuned once per seed)
UPPER_BOUND_INITS: tuple[str, ...] = (FRESH,) + tuple(
    m.name for m in METHODS.values() if m.init and not SOURCES[m.init].weighted)
META_INITS: tuple[str, ...] = ("pretrain", FRESH)
STAGE_VARIANTS: dict[str, tuple[str, ...]] = {
    st: tuple(dict.fromkeys(s.variant for s in SOURCES.values() if s.stage == st)) for st in ("pretrain", "metatrain")}
TRAINED_METHODS: tuple[str, ...] = tuple(m.name for m in METHODS.values() if m.trains)


# The paired comparisons of the report (drtl.stats): each DRTL row against its equal-budget twins
# (TWINS) and against the relation-free fitted task; meta-learning against its equal-compute
# control; the fitted task's own gain; transfer against scratch; one pair + DRTL against the ceilings.
COMPARISONS: tuple[tuple[str, str], ...] = (
    ("drtl_pre", "uni_cont"), ("drtl_pre", "pretrain"), ("drtl_pre", "fitted_only"), ("drtl_pre", "uniform_fitted"),
    ("drtl_meta", "maml"), ("drtl_meta", "pretrain_more"), ("drtl_meta", "fitted_only"), ("maml", "pretrain_more"),
    ("drn_fitted", "uni_cont"), ("drn_fitted", "fitted_only"), ("fitted_only", "uni_cont"),
    ("uniform_fitted", "uni_cont"), ("pretrain", "scratch"), ("drtl_pre", "bicubic"), ("drtl_pre", "scratch_all"),
    ("drtl_meta", "scratch_all"), ("upper_bound", "scratch_all"),
)

# the DRTL rows and each one's equal-budget twins, in order of preference (the headline of a report
# takes the first the table holds: uni_cont when DRTL-Pre continues the uniform model, else pretrain)
DRTL_METHODS: tuple[str, ...] = tuple(m.name for m in METHODS.values() if m.drtl)
TWINS: dict[str, tuple[str, ...]] = {"drtl_pre": ("uni_cont", "pretrain"), "drtl_meta": ("maml", "pretrain_more"),
                                     "drn_fitted": ("uni_cont",)}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None


def init_source(method: Method, finetune_params: dict | None = None) -> Source | None:
    """The source run a method's fine-tuning starts from (None: fresh weights)."""
    key = method.init
    if method.init_param is not None:
        choice = (finetune_params or {}).get(method.init_param, FRESH)
        key = None if choice == FRESH else get_method(choice).init
    return SOURCES[key] if key else None


def source_init(src: Source, params: dict | None = None) -> Source | None:
    """The source run a source starts from (None: fresh weights), e.g. MAML from uniform pre-training."""
    if src.init is None:
        return None
    if src.init_param is not None:
        sec, key = src.init_param
        choice = ((params or {}).get(sec) or {}).get(key, "pretrain")
        if choice == FRESH or choice == 0:  # e.g. meta.init: scratch, pretrain.drtl_continue: 0
            return None
    return SOURCES[src.init]


def source_for(stage: str, variant: str) -> Source:
    for s in SOURCES.values():
        if s.stage == stage and s.variant == variant:
            return s
    raise ValueError(f"{stage} has no variant {variant!r}; known: {', '.join(STAGE_VARIANTS.get(stage, ()))}")
