"""``drtl experiment``: the whole plan (:func:`drtl.plan.plan`) in one process, resumable.

Every run goes through :func:`drtl.runner.execute`, like a DVC stage or a Kubeflow task. A
finished run is skipped when rerun with the same inputs: its folder holds ``fingerprint.json``
(a hash of the stage, its inputs, the params it reads, the content of the data folders it reads
and the fingerprints of the runs it depends on), so an interrupted experiment resumes where it
stopped and a changed param redoes exactly the runs it touches. At the end the run records are
logged to MLflow in this one process (``tracking.enabled``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from drtl.config import section
from drtl.io import write_text
from drtl.plan import Run, plan
from drtl.records import folder_fingerprint, read_record, record_path, sha256_json
from drtl.runner import execute, read_params
from drtl.stages import get_stage

FINGERPRINT = "fingerprint.json"


def run_fingerprint(run: Run, params: dict, done: dict[str, str], outs: dict[str, str]) -> str:
    """What a run's result depends on: stage, inputs, params it reads, data content, upstream runs
    (``done``: fingerprints by run id; ``outs``: output paths by run id).

    Keyed by content, not by how a path is spelled: a data folder enters by its content (its
    manifest, else every file's sha256), an upstream run's output by that run's fingerprint and the
    path inside it, so the same folders named another way (relative or absolute, through ``..`` or
    a link, another ``outputs`` root) give the same key. A run ordered after a gate (validation)
    that it does not read is not keyed by it: synthesizing the bank does not depend on the pool."""
    spec = get_stage(run.stage)
    data = {}
    for k in spec.param_paths:  # data folders named by params (a path or a list of paths)
        v = section(params, k)
        data[k] = folder_fingerprint(v) if isinstance(v, str) else [folder_fingerprint(x) for x in v]
    inputs, named = dict(run.inputs), set()
    for a in spec.args:
        v = run.inputs.get(a.name)
        if a.kind != "path" or not v:
            continue
        up = next((d for d in run.deps if str(v) == outs[d] or str(v).startswith(outs[d] + "/")), None)
        if up is None:  # a data folder given by the user: its content
            data[a.name] = folder_fingerprint(v)
            inputs[a.name] = "@data"
        else:  # an upstream run's output: that run (its fingerprint is in "upstream") and the path inside it
            inputs[a.name] = f"@{up}{str(v)[len(outs[up]):]}"
            named.add(up)
    reads = {k: v for k, v in read_params(params, spec.reads_for(params, spec.variant_of(run.inputs))).items()
             if not any(k == p or k.startswith(p + ".") for p in spec.param_paths)}  # paths: content in data
    keyed = [d for d in run.deps if d in named or not get_stage(d.split("/")[0]).gate]  # a gate orders only
    return sha256_json({"stage": run.stage, "inputs": inputs, "params": reads,
                        "data": data, "upstream": [done.get(d) for d in keyed]})[:16]


def _product(run: Run) -> Path:
    return Path(run.out) / get_stage(run.stage).product


def _state(run: Run) -> dict:
    f = Path(run.out) / FINGERPRINT
    try:
        return json.loads(f.read_text()) if f.is_file() else {}
    except ValueError:
        return {}


def _cached(run: Run, fp: str, st: dict) -> bool:
    return st.get("fp") == fp and st.get("done", True) and _product(run).exists()


def _start(run: Run, fp: str, st: dict) -> bool:
    """Mark ``run`` (``st``: its folder's state) as started with inputs ``fp``. A folder left by a
    run with other inputs is wiped first, so a trainer never resumes a checkpoint written for
    different inputs; a folder of the same inputs (an interrupted run) is kept, so its checkpoint
    resumes. Returns whether a
    *finished* run was replaced (the caller says so: e.g. the relation stage reads
    ``experiment.seeds``, so a run on fewer seeds into the same folder redoes it)."""
    out = Path(run.out)
    replaced = bool(st) and st.get("fp") != fp and out.is_dir()
    if replaced:
        import shutil

        shutil.rmtree(out)
    if not out.suffix:
        write_text(out / FINGERPRINT, json.dumps({"fp": fp, "done": False}) + "\n")
    return replaced and st.get("done", True)


def run_plan(params: dict, runs: list[Run], echo=print) -> dict[str, str]:
    """Execute ``runs`` in order, skipping finished ones; returns each run's fingerprint by id."""
    t0 = time.time()
    every = float(params.get("log_every_s", 60))
    last = [time.time()]

    def on_log(entry):  # a line at most every `log_every_s` seconds, so long runs show life in logs
        if time.time() - last[0] >= every:
            last[0] = time.time()
            echo(f"    step {entry['step']}: loss {entry['loss']:.4f} ({entry['elapsed_s']:.0f}s)")

    done: dict[str, str] = {}
    outs = {r.id: r.out for r in runs}
    for i, run in enumerate(runs, 1):
        fp = run_fingerprint(run, params, done, outs)
        done[run.id] = fp
        st = _state(run)  # fingerprint.json, read once per run
        if _cached(run, fp, st):
            continue
        t = time.time()
        if _start(run, fp, st):
            echo(f"  {run.stage} {run.name}: its inputs changed, so the finished run in {run.out} is replaced")
        execute(run.stage, params, run.inputs, run.out, name=run.name, on_log=on_log)
        write_text(Path(run.out) / FINGERPRINT, json.dumps({"fp": fp, "done": True}) + "\n")
        echo(f"[{time.time() - t0:7.1f}s] {i}/{len(runs)} {run.stage} {run.name} ({time.time() - t:.1f}s)")
    return done


def track(params: dict, runs: list[Run], invocation: dict | None = None, echo=print) -> str | None:
    """Log the records of ``runs`` to MLflow (one parent run, a child per run); None when disabled."""
    if not params["tracking"]["enabled"]:
        return None
    from drtl.tracking import log_records

    records = [read_record(record_path(r.out)) for r in runs if record_path(r.out).is_file()]
    parent = log_records(records, params["tracking"], invocation=invocation)
    echo(f"tracked {len(records)} runs in {params['tracking']['uri']} (parent run {parent})")
    return parent


def run_experiment(params: dict, echo=print) -> dict:
    runs = plan(params)
    run_plan(params, runs, echo)
    bank = next((Path(r.out) / get_stage(r.stage).product for r in runs if r.stage == "bank"), None)
    if bank is not None and bank.is_file():
        m = json.loads(bank.read_text())["metrics"]
        if "drn_train_accuracy" in m:
            echo(f"  DRN accuracy: train {m['drn_train_accuracy']:.3f}, val {m.get('drn_val_accuracy', float('nan')):.3f}")
    top = {r.name: json.loads((Path(r.out) / "relation.json").read_text())["top_task"] for r in runs
           if r.stage == "relation" and (Path(r.out) / "relation.json").is_file()}
    if top:
        echo("  top task per relation: " + ", ".join(f"{k} {v}" for k, v in top.items()))
    report = runs[-1]
    track(params, runs, {"orchestrator": "drtl experiment"}, echo)
    out = Path(report.out)
    echo(f"report: {out / 'results.csv'}")
    return {"results": str(out / "results.csv"), "n_runs": len(runs)}
