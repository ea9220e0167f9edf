"""One generic Kubeflow component for every stage of ``drtl.stages.STAGES``.

The component's body is the same for every stage: parse the params, point the params' data paths
(``target.pool``, ``target.test``, ``aux.hr``) into the ``dataset`` artifact, assemble the stage's
``inputs`` from its string / int parameters and its input artifacts' paths, call
:func:`drtl.runner.execute` (threads, the stage, the run record ``run.json``) with the ``out``
artifact's folder, and, when ``tracking_uri`` is set, log the run record to MLflow under the
pipeline's parent run. The pipeline (``pipelines/few_shot_realsr.py``) decides per task which stage
runs and which inputs it gets, from the plan (:mod:`drtl.plan`).

Conventions the pipeline and the body share:

- ``links``: JSON ``{stage input: [artifact slot, path inside it]}``, e.g.
  ``{"init": ["init", "model.pt"], "pool": ["dataset", "pool"]}``; the artifact slots are the
  optional ``Input[Artifact]`` parameters (:data:`ARTIFACT_SLOTS`);
- ``shots`` / ``seed`` ``-1``: not given (kfp refuses ``Optional[int] = None`` locally);
- ``name``: the run name, a template that may hold ``{shots}`` / ``{seed}`` (filled here: inside
  the sweep loop they are run-time values);
- ``cells``: the run-time sweep (``[{"shots": K, "seed": S}, ...]``); when given, the params'
  ``experiment.shots`` / ``experiment.seeds`` become its shots and seeds (the report);
- ``evals``: evaluation reports (JSON strings, possibly nested lists from ``dsl.Collected``).
  The return value is ``evals`` plus, for an evaluation, its own report: the evaluations of one sweep cell are chained, so the report collects ONE
  output over the loop (kfp 2.17's local runner cannot pass a list of ``dsl.Collected``). A stage
  that takes ``evals`` (the report) gets them as files; the report stage keeps one per (method,
  shots, seed), so a K-independent evaluation (bicubic, upper bound; shots null) made in several
  cells of one seed counts once.

``drtl`` is imported inside the body (a lightweight component ships only its function's source);
the image carries ``drtl`` and ``kfp`` (``install_kfp_package=False``).
"""

import functools
from typing import Optional

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from components.image import DEFAULT_IMAGE

ARTIFACT_SLOTS = ("dataset", "synth", "bank", "relation", "init", "model")


def run_stage(stage: str, params: str, out: Output[Artifact], name: str = "", method: str = "", parts: str = "",
              group: str = "",
              shots: int = -1, seed: int = -1, source: str = "", sample: str = "", links: str = "{}",
              cells: list = [], evals: list = [], dataset: Optional[Input[Artifact]] = None,
              synth: Optional[Input[Artifact]] = None, bank: Optional[Input[Artifact]] = None,
              relation: Optional[Input[Artifact]] = None, init: Optional[Input[Artifact]] = None,
              model: Optional[Input[Artifact]] = None, tracking_uri: str = "", parent_run_id: str = "",
              finish_parent: bool = False) -> list:
    """Run one drtl stage into ``out`` (a folder); see the module docstring of components.stage."""
    import json
    import tempfile
    from pathlib import Path

    import yaml

    from drtl.config import load_params
    from drtl.runner import execute
    from drtl.stages import get_stage

    spec = get_stage(stage)
    shots, seed = int(shots), int(seed)  # a cluster may hand the loop item's numbers over as floats
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(json.loads(params)))
        p = load_params(Path(tmp) / "params.yaml")
    if dataset is not None:
        root = Path(dataset.path)
        p["target"].update(pool=str(root / "pool"), test=str(root / "test"))
        p["aux"]["hr"] = [str(root / "aux_hr")]
    if cells:
        p["experiment"]["shots"] = list(dict.fromkeys(int(c["shots"]) for c in cells))
        p["experiment"]["seeds"] = list(dict.fromkeys(int(c["seed"]) for c in cells))

    def flat(items):
        for x in items:
            if isinstance(x, list):
                yield from flat(x)
            else:
                yield json.loads(x) if isinstance(x, str) else x

    slots = {"dataset": dataset, "synth": synth, "bank": bank, "relation": relation, "init": init, "model": model}
    given = {"method": method or None, "parts": parts or None, "group": group or None, "shots": shots if shots >= 0 else None, "seed": seed if seed >= 0 else None,
             "source": source or None, "sample": sample or None}
    for key, (slot, rel) in json.loads(links).items():
        given[key] = str(Path(slots[slot].path) / rel) if rel else slots[slot].path
    names = {a.name for a in spec.args}
    inputs = {k: v for k, v in given.items() if k in names and v is not None}
    chain = list(flat(evals))
    with tempfile.TemporaryDirectory() as tmp:
        if "evals" in names and chain:  # the report keeps one report per (method, shots, seed)
            inputs["evals"] = [str(Path(tmp) / f"eval_{i:04d}.json") for i in range(len(chain))]
            for path, r in zip(inputs["evals"], chain):
                Path(path).write_text(json.dumps(r))
            chain = []
        run = name.format(shots=given["shots"], seed=given["seed"]) if name else None
        metrics = execute(stage, p, inputs, out.path, name=run)
    out.metadata.update({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))})
    product = Path(out.path) / (spec.product or "")
    if stage == "evaluate" and product.is_file() and inputs.get("method"):  # passed on to the report
        chain.append(json.loads(product.read_text()))
    if tracking_uri:
        from drtl.records import read_record, record_path
        from drtl.tracking import finish_parent as finish, log_records

        tracking = {**p["tracking"], "uri": tracking_uri, "enabled": True}
        log_records([read_record(record_path(out.path))], tracking, parent_run_id=parent_run_id or None)
        if finish_parent and parent_run_id:
            finish(tracking, parent_run_id)
    return [json.dumps(r, sort_keys=True) for r in chain]


def start_tracking(tracking: str, tracking_uri: str = "") -> str:
    """Open the pipeline run's parent MLflow run when ``tracking_uri`` is set; returns its id ("" when
    not tracking). ``tracking``: the params' ``tracking`` section (JSON)."""
    if not tracking_uri:
        return ""
    import json

    from drtl.tracking import start_parent

    return start_parent({**json.loads(tracking), "uri": tracking_uri, "enabled": True},
                        {"orchestrator": "kubeflow"})


@functools.lru_cache(maxsize=None)
def stage_component(image: str = DEFAULT_IMAGE):
    """The generic stage component for ``image``."""
    return dsl.component(run_stage, base_image=image, install_kfp_package=False)


@functools.lru_cache(maxsize=None)
def tracking_component(image: str = DEFAULT_IMAGE):
    """The component that opens the parent MLflow run."""
    return dsl.component(start_tracking, base_image=image, install_kfp_package=False)
