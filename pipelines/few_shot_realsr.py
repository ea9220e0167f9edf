"""The Kubeflow pipeline: the whole DRTL experiment as a DAG of ``components`` tasks.

::

    prepare -> validate -> synthesize -> relation
      for seed in seeds (ParallelFor):
        bicubic: evaluate
        pretrain uniform, metatrain maml                  (shared by every K of this seed)
        upper_bound: finetune (every pool pair) -> evaluate
        for K in shots (ParallelFor):
          pretrain drtl (K), metatrain drtl (K)
          scratch | pretrain | maml | drtl_pre | drtl_meta: finetune (K pairs) -> evaluate
      report (dsl.Collected evaluations of every method)

The same runs, names and inits as ``drtl.stages.experiment.run_experiment`` (``drtl experiment``).

What is fixed when compiling, what is chosen per run:

- *compile time* (``build_pipeline(params)``, ``drtl kfp compile --params``): the params
  (``params.yaml``), including the sweep ``experiment.shots / seeds / methods`` that shapes the DAG.
  Each task receives only the params sections its stage reads (e.g. fine-tuning gets ``arch``,
  ``finetune`` and ``target.scale``), so Kubeflow's cache re-runs exactly the tasks a param change
  touches, like ``drtl experiment`` and DVC do.
- *run time* (pipeline parameters): ``data`` (``"sample"`` or ``s3://bucket/prefix`` of a dataset
  folder), ``sample`` (JSON kwargs of ``drtl.data.sample.make_sample``) and
  ``mlflow_tracking_uri``.

Cluster settings (:class:`ClusterSettings`): GPU requests, node selector and tolerations on the
training tasks (relation, pretrain, metatrain, finetune), CPU / memory requests and limits, retries,
caching and the S3 credentials Secret as environment variables. ``gpu=False`` drops the GPU
requests (training then runs on CPU); ``kubernetes=False`` drops every Kubernetes-only setting
(resources, retries, Secret, node placement) for the local runner, which cannot honour them.
"""

import copy
import json
from dataclasses import dataclass, field

from kfp import dsl
from kfp import kubernetes as k8s
from kfp.dsl import Dataset

from components import (evaluate, finetune, metatrain, prepare, pretrain, relation, report, synthesize,
                        validate)

PIPELINE_NAME = "drtl-few-shot-realsr"
FEW_SHOT_METHODS = ("scratch", "pretrain", "maml", "drtl_pre", "drtl_meta")  # depend on K
GPU_STAGES = ("relation", "pretrain", "metatrain", "finetune")


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
        "gpu": ("4", "8", "16Gi", "32Gi"),          # relation, pretrain, metatrain, finetune
    })


_KIND = {"prepare": "light", "validate": "light", "report": "light", "synthesize": "cpu", "evaluate": "cpu",
         **{s: "gpu" for s in GPU_STAGES}}


def _threads(cpu_limit: str) -> int:
    """'8' -> 8, '500m' -> 1: torch threads that fit a Kubernetes CPU limit."""
    return max(1, int(cpu_limit[:-1]) // 1000) if cpu_limit.endswith("m") else max(1, int(float(cpu_limit)))


def _section(p: dict, *keys: str, threads: int | None = None) -> str:
    """The params subset a stage reads, as the JSON string the components take. ``threads`` (torch
    intra-op threads) replaces ``params.threads`` when given: on a cluster, torch would otherwise
    start one thread per *node* core and be throttled by the pod's CPU limit."""
    out = {"target": {"scale": int(p["target"]["scale"])}}
    if "threads" in p:  # a top-level key of newer params
        out["threads"] = int(threads if threads is not None and not p["threads"] else p["threads"])
    for k in keys:
        out[k] = copy.deepcopy(p[k])
    return json.dumps(out, sort_keys=True)


def _configure(task, stage: str, label: str, gpu: bool, kubernetes: bool, cs: ClusterSettings):
    task.set_display_name(label)
    task.set_caching_options(True)
    if not kubernetes:
        return task
    cpu_req, cpu_lim, mem_req, mem_lim = cs.resources[_KIND[stage]]
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


def build_pipeline(params: dict | None = None, gpu: bool = True, kubernetes: bool = True,
                   settings: ClusterSettings | None = None):
    """The pipeline function for ``params`` (a loaded ``params.yaml``; None = built-in defaults).

    ``gpu``: request GPUs on the training tasks and train on ``cuda``; ``kubernetes``: emit the
    Kubernetes-only settings (off for ``kfp.local``).
    """
    from drtl.config import load_params

    p = load_params(None) if params is None else params
    cs = settings or ClusterSettings()
    shots = [int(k) for k in p["experiment"]["shots"]]
    seeds = [int(s) for s in p["experiment"]["seeds"]]
    methods = list(p["experiment"]["methods"])
    ub_init = p["finetune"]["upper_bound_init"]
    need_uniform = "pretrain" in methods or ("upper_bound" in methods and ub_init == "pretrain")
    train_device = "cuda" if gpu else "cpu"
    limit = {kind: _threads(r[1]) if kubernetes else None for kind, r in cs.resources.items()}
    sec = {"data": _section(p), "synth": _section(p, "aux"), "report": _section(p),
           "evaluate": _section(p, threads=limit["cpu"]),
           "relation": _section(p, "relation", threads=limit["gpu"]),
           "pretrain": _section(p, "arch", "pretrain", threads=limit["gpu"]),
           "meta": _section(p, "arch", "meta", threads=limit["gpu"]),
           "finetune": _section(p, "arch", "finetune", threads=limit["gpu"])}
    shots_json, seeds_json = json.dumps(shots), json.dumps(seeds)

    def conf(task, stage, label):
        return _configure(task, stage, label, gpu, kubernetes, cs)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Few-shot real-world SR by Distortion-Relation guided Transfer Learning (DRTL): "
                              f"methods {', '.join(methods)}; shots {shots}; seeds {seeds}")
    def few_shot_realsr(data: str = "sample", sample: str = "{}", mlflow_tracking_uri: str = "") -> Dataset:
        prep = conf(prepare(params=sec["data"], source=data, sample=sample), "prepare", "prepare data")
        dataset = prep.outputs["data"]
        val = conf(validate(params=sec["data"], data=dataset), "validate", "validate data")
        syn = conf(synthesize(params=sec["synth"], data=dataset), "synthesize", "synthesize auxiliary tasks")
        syn.after(val)
        rel = conf(relation(params=sec["relation"], shots=shots_json, seeds=seeds_json, data=dataset,
                            synth=syn.outputs["synth"], device=train_device, tracking_uri=mlflow_tracking_uri),
                   "relation", "relation graph")
        synth_out, rel_out = syn.outputs["synth"], rel.outputs["relation"]
        evals = {}

        def run_eval(method, seed, model=None, k=None):
            opt = {"model": model, "shots": k}  # optional inputs: passed only when set (kfp refuses None)
            t = evaluate(params=sec["evaluate"], method=method, seed=seed, data=dataset, device="cpu",
                         tracking_uri=mlflow_tracking_uri, **{n: v for n, v in opt.items() if v is not None})
            evals[method] = conf(t, "evaluate", f"evaluate {method}")

        def run_finetune(method, seed, k, init=None):
            opt = {} if init is None else {"init": init}
            t = finetune(params=sec["finetune"], method=method, shots=k, seed=seed, data=dataset,
                         device=train_device, tracking_uri=mlflow_tracking_uri, **opt)
            return conf(t, "finetune", f"finetune {method}")

        with dsl.ParallelFor(seeds, name="seeds") as seed:
            if "bicubic" in methods:
                run_eval("bicubic", seed)
            uniform = maml = None
            if need_uniform:
                uniform = conf(pretrain(params=sec["pretrain"], method="uniform", seed=seed, synth=synth_out,
                                        relation=rel_out, device=train_device, tracking_uri=mlflow_tracking_uri),
                               "pretrain", "pretrain uniform")
            if "maml" in methods:
                maml = conf(metatrain(params=sec["meta"], method="maml", seed=seed, synth=synth_out, relation=rel_out,
                                      device=train_device, tracking_uri=mlflow_tracking_uri),
                            "metatrain", "metatrain maml")
            if "upper_bound" in methods:
                init = uniform.outputs["model"] if ub_init == "pretrain" else None
                ub = run_finetune("upper_bound", seed, shots[0], init)
                run_eval("upper_bound", seed, ub.outputs["model"])
            if any(m in methods for m in FEW_SHOT_METHODS):
                with dsl.ParallelFor(shots, name="shots") as k:
                    inits = {"scratch": None}
                    if uniform is not None:
                        inits["pretrain"] = uniform.outputs["model"]
                    if maml is not None:
                        inits["maml"] = maml.outputs["model"]
                    if "drtl_pre" in methods:
                        t = pretrain(params=sec["pretrain"], method="drtl", seed=seed, shots=k, synth=synth_out,
                                     relation=rel_out, device=train_device, tracking_uri=mlflow_tracking_uri)
                        inits["drtl_pre"] = conf(t, "pretrain", "pretrain drtl").outputs["model"]
                    if "drtl_meta" in methods:
                        t = metatrain(params=sec["meta"], method="drtl", seed=seed, shots=k, synth=synth_out,
                                      relation=rel_out, device=train_device, tracking_uri=mlflow_tracking_uri)
                        inits["drtl_meta"] = conf(t, "metatrain", "metatrain drtl").outputs["model"]
                    for m in FEW_SHOT_METHODS:
                        if m in methods:
                            ft = run_finetune(m, seed, k, inits[m])
                            run_eval(m, seed, ft.outputs["model"], k)

        collected = {m: dsl.Collected(t.outputs["Output"]) for m, t in evals.items()}
        rep = conf(report(params=sec["report"], shots=shots_json, tracking_uri=mlflow_tracking_uri, **collected),
                   "report", "report")
        return rep.outputs["results"]

    return few_shot_realsr


def compile_pipeline(out: str, params: dict | None = None, gpu: bool = True, kubernetes: bool = True,
                     settings: ClusterSettings | None = None) -> str:
    """Write the pipeline's IR YAML to ``out``; returns ``out``."""
    from kfp import compiler

    compiler.Compiler().compile(build_pipeline(params, gpu, kubernetes, settings), package_path=str(out))
    return str(out)


def __getattr__(name: str):
    """``few_shot_realsr``: the default pipeline (built-in params, GPU cluster settings), for tools
    that import a pipeline object; built on first access (building takes a second or two)."""
    if name == "few_shot_realsr":
        globals()[name] = build_pipeline()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
