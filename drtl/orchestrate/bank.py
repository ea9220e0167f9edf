"""The bank of ``drtl adapt``: the camera-independent half of the work, built once and reused.

An aux entry (an aux cache entry ``<root>/<fingerprint>/``, or any folder given to
``drtl adapt-bank --out`` / ``drtl adapt --bank``) holds ``synth/`` (stage synthesize), ``bank/``
(stage bank: the DRN and / or family experts the relation needs), ``complete.json`` (its
fingerprint and counts) and ``uniform/<key>/model.pt`` (uniform pre-training, keyed by the params
it reads). Nothing here depends on a camera; :mod:`drtl.orchestrate.adapt` adds the camera's runs.
Every run goes through the executor of ``drtl experiment`` (:func:`drtl.orchestrate.experiment.run_plan`)
and its content-keyed fingerprints.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from pathlib import Path

from drtl.orchestrate.adapt_data import aux_fingerprint, default_cache_root, resolve_aux_sources



# ------------------------------------------------------------------------------------------ the entry
class _Lost(Exception):
    """Another process completed the same aux entry while this one built it."""


def _complete(p: dict, entry: Path) -> bool:
    """``complete.json`` and the product of every run of the entry's plan are there."""
    from drtl.stages import get_stage

    return (entry / "complete.json").is_file() and all(
        (Path(r.out) / get_stage(r.stage).product).is_file() for r in entry_runs(p, entry))


def entry_runs(p: dict, entry: Path) -> list:
    """The camera-free plan of an aux entry: ``synthesize`` into ``synth/`` and, when the profile's
    relation needs one, the ``bank`` stage (DRN / family experts) into ``bank/``."""
    from drtl.plan import Roots, bank_for, synthesize_run

    r = Roots(str(entry), "", "", "")
    return [replace(synthesize_run(r), deps=()), *bank_for(r, p)]


def ensure_aux(p: dict, cache_root: Path, say, entry: Path | None = None) -> dict:
    """The aux cache entry of ``p`` (``aux.hr`` resolved): reused when complete, else built by the
    executor of ``drtl experiment`` (:func:`execute_runs`: the runs of :func:`entry_runs`) in a
    dot-prefixed temp folder renamed when complete. ``entry``: a bank folder (``drtl adapt-bank``,
    ``--bank``) instead of ``cache_root/<key>``; one built for other params is refused."""
    from drtl.data.folder import staged_folder
    from drtl.errors import ConfigError
    from drtl.io import write_text

    key, covers = aux_fingerprint(p, p["aux"]["hr"], p["target"]["scale"])
    entry = Path(cache_root) / key if entry is None else Path(entry)
    if _complete(p, entry):
        info = json.loads((entry / "complete.json").read_text())
        if info.get("fingerprint", key) != key:
            raise ConfigError(f"bank {entry} was built for other auxiliary/bank params (fingerprint {info['fingerprint']}, "
                              f"these params give {key}); rebuild it with `drtl adapt-bank --out {entry}` or drop --bank")
        say(f"aux cache hit: {entry} ({info.get('n_tasks')} tasks; DRN val accuracy "
            f"{info.get('drn_val_accuracy', float('nan')):.3f})")
        return {"path": str(entry), "fingerprint": key, "hit": True, "drn_trained": False, "synthesized": False,
                **info}
    say(f"aux cache miss: building {entry}")
    try:
        with staged_folder(entry, guard=False) as tmp:
            runs = entry_runs(p, tmp)
            recs = execute_runs(p, runs, say, time.time())
            took = {r.stage: recs[r.id].duration_s for r in runs}
            m = {k: int(v) for k, v in recs[runs[0].id].metrics.items() if k in ("n_tasks", "n_images")}
            say(f"synthesized {m['n_tasks']} auxiliary tasks x {m['n_images']} HR images")
            bm = recs[runs[1].id].metrics if len(runs) > 1 else {}
            if "drn_train_accuracy" in bm:
                say(f"DRN trained: accuracy train {bm['drn_train_accuracy']:.3f}, "
                    f"val {bm.get('drn_val_accuracy', float('nan')):.3f}")
            info = {"fingerprint": key, "n_tasks": m["n_tasks"], "n_images": m["n_images"],
                    **{k: bm[k] for k in ("drn_train_accuracy", "drn_val_accuracy") if k in bm},
                    "covers": covers, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            write_text(tmp / "complete.json", json.dumps(info, indent=1, default=str) + "\n")
            if _complete(p, entry):  # another process finished the same entry meanwhile: keep theirs
                raise _Lost()
    except _Lost:
        return ensure_aux(p, cache_root, say, entry)
    return {"path": str(entry), "fingerprint": key, "hit": False, "drn_trained": "bank" in took, "synthesized": True,
            "timings": took, **info}


def uniform_key(p: dict, seed: int) -> str:
    """The name of a uniform pre-trained model in an aux entry (``uniform/<key>/``): the params the
    pretrain stage reads and the seed (the entry itself pins the auxiliary tasks; not its path)."""
    from drtl.records import sha256_json
    from drtl.runner import read_params
    from drtl.stages import get_stage

    reads = read_params(p, get_stage("pretrain").reads_for(p, "uniform"))  # not meta.*, drtl_continue
    return sha256_json({"params": reads, "seed": int(seed)})[:16]


def uniform_run(p: dict, entry: Path, seed: int):
    """The uniform pre-training of the aux entry ``entry``: ``entry/uniform/<uniform_key>/``."""
    from drtl.methods import SOURCES
    from drtl.plan import Roots, source_run

    run = source_run(Roots(str(entry), "", "", ""), SOURCES["pretrain_uniform"], None, seed, p)
    return replace(run, inputs={**run.inputs, "synth": str(entry / "synth")}, deps=(),
                   out=str(entry / "uniform" / uniform_key(p, seed)))



# ------------------------------------------------------------------------------------------ running runs
def execute_runs(p: dict, runs: list, say, t0: float) -> dict:
    """run_plan over ``runs``; returns {run id: its record} and says which runs were reused."""
    from drtl.orchestrate.experiment import run_plan
    from drtl.records import read_record

    run_plan(p, runs, lambda line: say(re.sub(r"^\[\s*[\d.]+s\] ", "", line)))  # one clock: adapt's
    recs = {r.id: read_record(r.out) for r in runs}
    reused = [i for i, rec in recs.items() if rec.started < t0]
    if reused:
        say(f"unchanged inputs, reused: {', '.join(reused)}")
    return recs



# ------------------------------------------------------------------------------------------ drtl adapt-bank
def clock(echo):
    """(t0, say): ``say(msg)`` echoes ``[  12.3s] msg``, seconds since t0 (one clock per command)."""
    t0 = time.time()

    def say(msg: str) -> None:
        echo(f"[{time.time() - t0:6.1f}s] {msg}")

    return t0, say


def build_bank(out, params: dict, scale: int, seed: int = 0, aux_cache=None, echo=print) -> dict:
    """``drtl adapt-bank``: the camera-independent half of ``drtl adapt`` (synthesized tasks, bank,
    uniform pre-trained model) into the folder ``out``, reused by ``drtl adapt --bank OUT``; returns its info."""
    import copy

    from drtl.config import check_params

    t0, say = clock(echo)

    p = copy.deepcopy(params)
    p["target"]["scale"] = int(scale)
    p["outputs"] = str(out)
    check_params(p)
    cache_root = Path(aux_cache) if aux_cache else default_cache_root()
    p["aux"]["hr"] = resolve_aux_sources(p["aux"]["hr"], cache_root, say)
    aux = ensure_aux(p, cache_root, say, Path(out))
    run = uniform_run(p, Path(out), seed)
    if not (Path(run.out) / "model.pt").is_file():
        execute_runs(p, [run], say, t0)
    say(f"bank ready in {time.time() - t0:.0f}s: {out} (uniform model {run.out}/model.pt); "
        f"use it with drtl adapt --bank {out}")
    return {**aux, "uniform": f"{run.out}/model.pt"}
