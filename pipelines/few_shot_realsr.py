"""The Kubeflow pipeline, built from the plan (:func:`drtl.plan.plan`) and the method registry.

::

    [start_tracking]                      (opens the parent MLflow run when mlflow_tracking_uri is set)
    prepare -> validate -> synthesize -> bank (camera-free: the DRN / family experts the similarity needs)
    ParallelFor cell in cells:            (run-time parameter: [{"shots": K, "seed": S}, ...])
      the plan's runs of one (K, seed) cell: the relation of its K shots, sources (uniform / MAML per
      seed, DRTL-Pre / DRTL-Meta per K and seed), fine-tunings, evaluations (chained: each passes the
      reports on)
    report <- dsl.Collected(the last evaluation of every cell)   (finishes the parent MLflow run)

Nothing here names a method: the runs of a cell are those :func:`drtl.plan.plan` makes for params
whose sweep is the symbolic cell (``shots = ["{shots}"]``, ``seeds = ["{seed}"]``), exactly as the
DVC renderer makes dvc.yaml's matrix stages; every task is the one generic component
(:mod:`components.stage`) running one stage of the registry.

What is fixed when compiling, what is chosen per run:

- *compile time* (``build_pipeline(params)``, ``drtl-kfp compile --params``): the params, the
  methods (``experiment.methods``), the image and the cluster settings. Each task gets only the
  params its stage's variant reads (:meth:`drtl.stages.Stage.reads_for`), so Kubeflow's cache
  re-runs exactly the tasks a param change touches.
- *run time* (pipeline parameters): ``data`` (``sample``, a dataset folder, or
  ``s3://bucket/prefix``), ``sample`` (JSON kwargs of ``make_sample``), ``cells`` (the sweep;
  default: ``experiment.shots x experiment.seeds`` of the compiled params) and
  ``mlflow_tracking_uri``.

Runs that do not depend on K (uniform pre-training, MAML, bicubic, the upper bound) appear in
every cell of their seed (same inputs, same numbers: duplicated work, see docs/kubeflow.md); the
report keeps one evaluation per (method, shots, seed).

Cluster settings (:class:`ClusterSettings`): GPU requests, node selector and tolerations on the
training tasks, CPU / memory requests and limits, retries, caching and the S3 credentials Secret
as environment variables. ``gpu=False`` drops the GPU requests; ``kubernetes=False`` drops every
Kubernetes-only setting (for the local runner, which cannot honour them).
"""

import copy
import json
from dataclasses import dataclass, field

from kfp import dsl
from kfp import kubernetes as k8s
from kfp.dsl import Artifact

from components import DEFAULT_IMAGE, stage_component, tracking_component
from drtl.stages import STAGES

PIPELINE_NAME = "drtl-few-shot-realsr"
GPU_STAGES = tuple(s.name for s in STAGES.values() if s.resources == "gpu")  # the Stage entries say so
SHOTS, SEED = "{shots}", "{seed}"   # the symbolic cell the plan is built for
DATA = "@data"                        # the prepared dataset artifact, in the symbolic plan's paths


@dataclass
class ClusterSettings:
    """Kubernetes settings of the compiled pipeline (defaults: NVIDIA GPU nodes, an ``drtl-s3`` Secret)."""

    accelerator_type: str = "nvidia.com/gpu"
    accelerator_limit: int = 1
    gpu_node_selector: dict = field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    gpu_tolerations: list = field(default_factory=lambda: [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    s3_secret: str = "drtl-s3"
    # Secret key -> environment variable (drtl.storage reads these; boto3 / MLflow too)
    s3_secret_keys: dict = field(default_factory=lambda: {
        "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL"})
    retries: int = 2
    retry_backoff: str = "60s"
    # (cpu request, cpu limit, memory request, memory limit) per kind of task
    resources: dict = field(default_factory=lambda: {
        "light": ("500m", "2", "1Gi", "4Gi"),       # prepare, validate, report
        "cpu": ("2", "8", "4Gi", "16Gi"),           # synthesize, evaluate
        "gpu": ("4", "8", "16Gi", "32Gi"),          # bank, relation, pretrain, metatrain, finetune
    })


def _kind(stage: str) -> str:
    """The kind of resources a task needs: its Stage entry's (``light`` for the tracking task)."""
    return STAGES[stage].resources if stage in STAGES else "light"


def _threads(cpu_limit: str) -> int:
    """'8' -> 8, '500m' -> 1: torch threads that fit a Kubernetes CPU limit."""
    return max(1, int(cpu_limit[:-1]) // 1000) if cpu_limit.endswith("m") else max(1, int(float(cpu_limit)))



def _dotted_copy(src: dict, dst: dict, dotted: str) -> None:
    parts = dotted.split(".")
    cur = src
    for part in parts:
        if not isinstance(cur, dict) or part not in cur:
            return
        cur = cur[part]
    d = dst
    for part in parts[:-1]:
        d = d.setdefault(part, {})
    d[parts[-1]] = copy.deepcopy(cur)


def stage_params(p: dict, stage: str, device: str | None = None, threads: int | None = None,
                 method: str | None = None) -> str:
    """The params a run of ``stage`` (its ``--method`` variant ``method``) reads: what
    :meth:`drtl.stages.Stage.reads_for` gives (the cache key of the CLI and DVC too) and the stage's
    ``param_paths``, plus ``device``, ``threads`` and ``tracking``; as the JSON string the component
    takes, so that Kubeflow's cache, keyed by the task's inputs, re-runs a variant only when a
    param it reads changes. ``threads`` (torch intra-op threads) replaces an unset
    ``params.threads``: on a cluster torch would otherwise start one thread per *node* core and be
    throttled by the pod's CPU limit."""
    from drtl.stages import get_stage

    spec = get_stage(stage)
    out: dict = {}
    for key in (*spec.reads_for(p, method), *spec.param_paths, "device", "threads", "tracking"):
        _dotted_copy(p, out, key)
    if device is not None:
        out["device"] = device
    if threads is not None and not int(p.get("threads") or 0):
        out["threads"] = int(threads)
    return json.dumps(out, sort_keys=True)


def symbolic_plan(p: dict):
    """The plan of one symbolic sweep cell: (runs before the loop, runs of a cell, the report run)."""
    from drtl.plan import plan

    sym = copy.deepcopy(p)
    sym["outputs"] = "@out"
    sym["target"].update(pool=f"{DATA}/pool", test=f"{DATA}/test")
    sym["experiment"].update(shots=[SHOTS], seeds=[SEED])
    runs = plan(sym)
    report = [r for r in runs if r.stage == "report"]
    return [r for r in runs if not r.sweep and r.stage != "report"], [r for r in runs if r.sweep], report[0]


def _configure(task, stage: str, label: str, gpu: bool, kubernetes: bool, cs: ClusterSettings, cache: bool = True):
    task.set_display_name(label)
    task.set_caching_options(cache)
    if not kubernetes:
        return task
    cpu_req, cpu_lim, mem_req, mem_lim = cs.resources[_kind(stage)]
    task.set_cpu_request(cpu_req).set_cpu_limit(cpu_lim).set_memory_request(mem_req).set_memory_limit(mem_lim)
    task.set_retry(num_retries=cs.retries, backoff_duration=cs.retry_backoff, backoff_factor=2.0,
                   backoff_max_duration="3600s")
    k8s.use_secret_as_env(task, secret_name=cs.s3_secret, secret_key_to_env=dict(cs.s3_secret_keys), optional=True)
    if gpu and stage in GPU_STAGES:
        task.set_accelerator_type(cs.accelerator_type).set_accelerator_limit(cs.accelerator_limit)
        for key, value in cs.gpu_node_selector.items():
            k8s.add_node_selector(task, label_key=key, label_value=value)
        for t in cs.gpu_tolerations:
            k8s.add_toleration(task, **t)
    return task


def default_cells(p: dict) -> list[dict]:
    from drtl.plan import cells

    return [{"shots": k, "seed": s} for k, s in cells(p)]


def build_pipeline(params: dict | None = None, gpu: bool = True, kubernetes: bool = True,
                   settings: ClusterSettings | None = None, image: str = DEFAULT_IMAGE):
    """The pipeline function for ``params`` (loaded params; None = built-in defaults).

    ``gpu``: request GPUs on the training tasks and train on ``cuda``; ``kubernetes``: emit the
    Kubernetes-only settings (off for ``kfp.local``); ``image``: the container image of every task.
    """
    from drtl.config import load_params
    from drtl.stages import get_stage

    p = load_params(None) if params is None else params
    cs = settings or ClusterSettings()
    run_stage, start_tracking = stage_component(image), tracking_component(image)
    before, per_cell, report_run = symbolic_plan(p)
    limit = {kind: _threads(r[1]) if kubernetes else None for kind, r in cs.resources.items()}

    def device(stage):
        if stage in GPU_STAGES:
            return "cuda" if gpu else p["device"]
        return "cpu" if kubernetes else p["device"]

    def sec(stage: str, method: str | None = None) -> str:
        return stage_params(p, stage, device(stage), limit[_kind(stage)], method)

    sweep = default_cells(p)

    def conf(task, stage, label, cache=True):
        return _configure(task, stage, label, gpu, kubernetes, cs, cache)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Few-shot real-world SR by Distortion-Relation guided Transfer Learning (DRTL): "
                              f"methods {', '.join(p['experiment']['methods'])}; default sweep {sweep}")
    def few_shot_realsr(data: str = "sample", sample: str = "{}", cells: list = sweep,
                        mlflow_tracking_uri: str = "") -> Artifact:
        parent = conf(start_tracking(tracking=json.dumps(p["tracking"], sort_keys=True),
                                     tracking_uri=mlflow_tracking_uri), "tracking", "start tracking", cache=False)
        track = {"tracking_uri": mlflow_tracking_uri, "parent_run_id": parent.output}
        prep = conf(run_stage(stage="prepare", params=sec("prepare"), name="data", source=data, sample=sample,
                              **track), "prepare", "prepare data")
        dataset = prep.outputs["out"]
        tasks: dict = {}

        def add(run, cell=None, after=True, **extra):
            kw, links = {}, {}
            for key, v in run.inputs.items():
                if v is None:
                    continue
                if v in (SHOTS, SEED):
                    kw[key] = cell.shots if v == SHOTS else cell.seed
                elif isinstance(v, str) and v.startswith(DATA + "/"):
                    links[key] = ["dataset", v[len(DATA) + 1:]]
                elif isinstance(v, str) and any(v == tasks[d][1] or v.startswith(tasks[d][1] + "/") for d in run.deps):
                    d = next(d for d in run.deps if v == tasks[d][1] or v.startswith(tasks[d][1] + "/"))
                    kw[key] = tasks[d][0].outputs["out"]
                    links[key] = [key, v[len(tasks[d][1]) + 1:]]
                else:
                    kw[key] = v
            if any(slot == "dataset" for slot, _ in links.values()) or get_stage(run.stage).param_paths:
                kw["dataset"] = dataset  # only tasks that read the data (a cluster downloads input artifacts)
            t = run_stage(stage=run.stage, params=sec(run.stage, get_stage(run.stage).variant_of(run.inputs)), name=run.name,
                          links=json.dumps(links), **kw, **extra, **track)
            for d in run.deps if after else ():  # order without a data link (synthesize after validate)
                t.after(tasks[d][0])
            tasks[run.id] = (conf(t, run.stage, f"{run.stage} {run.name}"), run.out)
            return t

        for run in before:
            add(run)
        last = None
        with dsl.ParallelFor(cells, name="cells") as cell:
            for run in per_cell:
                if run.stage == "evaluate" and last is not None:
                    last = add(run, cell, evals=last.outputs["Output"])
                else:
                    t = add(run, cell)
                    last = t if run.stage == "evaluate" else last
        rep = add(report_run, after=False, cells=cells, evals=dsl.Collected(last.outputs["Output"]), finish_parent=True)
        return rep.outputs["out"]

    return few_shot_realsr


def compile_pipeline(out: str, params: dict | None = None, gpu: bool = True, kubernetes: bool = True,
                     settings: ClusterSettings | None = None, image: str = DEFAULT_IMAGE) -> str:
    """Write the pipeline's IR YAML to ``out``; returns ``out``."""
    from kfp import compiler

    compiler.Compiler().compile(build_pipeline(params, gpu, kubernetes, settings, image), package_path=str(out))
    return str(out)


def __getattr__(name: str):
    """``few_shot_realsr``: the default pipeline (built-in params, GPU cluster settings), built on first access."""
    if name == "few_shot_realsr":
        globals()[name] = build_pipeline()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
