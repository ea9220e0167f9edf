"""The bank of ``drtl adapt``: the camera-independent half of the work, built once and reused.

A bank (an aux cache entry ``<root>/<fingerprint>/``, or any folder given to ``drtl bank --out`` /
``drtl adapt --bank``) holds ``synth/`` (stage synthesize), ``drn/drn.pt`` (the DRN of stage
relation, without any camera's weights), ``complete.json`` (its fingerprint and counts) and
``uniform/<key>/model.pt`` (uniform pre-training, keyed by the params it reads). Nothing here
depends on a camera; :mod:`drtl.orchestrate.adapt` adds the camera's runs.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path

from drtl.orchestrate.adapt_data import aux_fingerprint, default_cache_root, resolve_aux_sources

_CHECKPOINTED = ("pretrain", "metatrain", "finetune")  # stages that resume from a checkpoint in their folder


# ------------------------------------------------------------------------------------------ the entry
class _Lost(Exception):
    """Another process completed the same aux entry while this one built it."""


def _complete(entry: Path) -> bool:
    return all((entry / f).is_file() for f in ("complete.json", "synth/synth.json", "drn/drn.pt"))


def ensure_aux(p: dict, cache_root: Path, say, entry: Path | None = None) -> dict:
    """The aux cache entry of ``p`` (``aux.hr`` resolved): reused when complete, else built by the
    ``synthesize`` and ``relation`` stages in a dot-prefixed temp folder renamed when complete.
    ``entry``: a bank folder (``drtl bank``, ``--bank``) instead of ``cache_root/<key>``; one built
    for other params is refused."""
    from drtl.data.folder import staged_folder
    from drtl.errors import ConfigError
    from drtl.io import write_text
    from drtl.records import read_record, write_record
    from drtl.runner import execute

    key, covers = aux_fingerprint(p, p["aux"]["hr"], p["target"]["scale"])
    entry = Path(cache_root) / key if entry is None else Path(entry)
    if _complete(entry):
        info = json.loads((entry / "complete.json").read_text())
        if info.get("fingerprint", key) != key:
            raise ConfigError(f"bank {entry} was built for other auxiliary/DRN params (fingerprint {info['fingerprint']}, "
                              f"these params give {key}); rebuild it with `drtl bank --out {entry}` or drop --bank")
        say(f"aux cache hit: {entry} ({info.get('n_tasks')} tasks; DRN val accuracy "
            f"{info.get('drn_val_accuracy', float('nan')):.3f})")
        return {"path": str(entry), "fingerprint": key, "hit": True, "drn_trained": False, "synthesized": False,
                **info}
    say(f"aux cache miss: building {entry}")
    try:
        with staged_folder(entry, guard=False) as tmp:
            t = time.time()
            m = execute("synthesize", p, {}, tmp / "synth", name="synth")
            took = {"synthesize": round(time.time() - t, 2)}
            say(f"synthesized {m['n_tasks']} auxiliary tasks x {m['n_images']} HR images")
            t = time.time()
            rm = execute("relation", p, {"synth": str(tmp / "synth")}, tmp / "drn", name="drn")
            took["drn"] = round(time.time() - t, 2)
            rec = read_record(tmp / "drn")  # keep the DRN only: this camera's relation is not shared
            for f in ("weights.json", "graphs", "relation.json"):
                shutil.rmtree(tmp / "drn" / f) if (tmp / "drn" / f).is_dir() else (tmp / "drn" / f).unlink(missing_ok=True)
            rec.artifacts = [a for a in rec.artifacts if (tmp / "drn" / a).exists()]
            write_record(tmp / "drn", rec)
            say(f"DRN trained: accuracy train {rm['drn_train_accuracy']:.3f}, "
                f"val {rm.get('drn_val_accuracy', float('nan')):.3f}")
            info = {"fingerprint": key, "n_tasks": m["n_tasks"], "n_images": m["n_images"],
                    **{k: rm[k] for k in ("drn_train_accuracy", "drn_val_accuracy") if k in rm},
                    "covers": covers, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            write_text(tmp / "complete.json", json.dumps(info, indent=1, default=str) + "\n")
            if _complete(entry):  # another process finished the same entry meanwhile: keep theirs
                raise _Lost()
    except _Lost:
        return ensure_aux(p, cache_root, say, entry)
    return {"path": str(entry), "fingerprint": key, "hit": False, "drn_trained": True, "synthesized": True,
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
def _discard_stale(p: dict, runs: list) -> None:
    """Mark each run folder with its input fingerprint before it runs, and empty a folder that holds
    the work of other inputs (so a checkpoint is only resumed by the run that wrote it)."""
    from drtl.io import write_text
    from drtl.orchestrate.experiment import FINGERPRINT, run_fingerprint

    done, outs = {}, {r.id: r.out for r in runs}
    for run in runs:
        fp = done[run.id] = run_fingerprint(run, p, done, outs)
        folder, mark = Path(run.out), Path(run.out) / FINGERPRINT
        old = json.loads(mark.read_text()).get("fp") if mark.is_file() else None
        if old != fp:
            if folder.exists():
                shutil.rmtree(folder)
            if run.stage in _CHECKPOINTED:  # the other stages replace their folder atomically
                write_text(mark, json.dumps({"fp": fp}) + "\n")


def execute_runs(p: dict, runs: list, say, t0: float) -> dict:
    """run_plan over ``runs``; returns {run id: its record} and says which runs were reused."""
    from drtl.orchestrate.experiment import run_plan
    from drtl.records import read_record

    _discard_stale(p, runs)
    run_plan(p, runs, lambda line: say(re.sub(r"^\[\s*[\d.]+s\] ", "", line)))  # one clock: adapt's
    recs = {r.id: read_record(r.out) for r in runs}
    reused = [i for i, rec in recs.items() if rec.started < t0]
    if reused:
        say(f"unchanged inputs, reused: {', '.join(reused)}")
    return recs



# ------------------------------------------------------------------------------------------ drtl bank
def clock(echo):
    """(t0, say): ``say(msg)`` echoes ``[  12.3s] msg``, seconds since t0 (one clock per command)."""
    t0 = time.time()

    def say(msg: str) -> None:
        echo(f"[{time.time() - t0:6.1f}s] {msg}")

    return t0, say


def build_bank(out, params: dict, scale: int, seed: int = 0, aux_cache=None, echo=print) -> dict:
    """``drtl bank``: the camera-independent half of ``drtl adapt`` (synthesized tasks, DRN, uniform
    pre-trained model) into the folder ``out``, reused by ``drtl adapt --bank OUT``; returns its info."""
    import copy

    from drtl.config import check_params

    t0, say = clock(echo)

    p = copy.deepcopy(params)
    p["target"]["scale"] = int(scale)
    p["outputs"] = str(out)
    check_params(p)
    p["experiment"]["shots"] = []  # no camera: stage relation trains the DRN and embeds no target
    cache_root = Path(aux_cache) if aux_cache else default_cache_root()
    p["aux"]["hr"] = resolve_aux_sources(p["aux"]["hr"], cache_root, say)
    aux = ensure_aux(p, cache_root, say, Path(out))
    run = uniform_run(p, Path(out), seed)
    if not (Path(run.out) / "model.pt").is_file():
        execute_runs(p, [run], say, t0)
    say(f"bank ready in {time.time() - t0:.0f}s: {out} (uniform model {run.out}/model.pt); "
        f"use it with drtl adapt --bank {out}")
    return {**aux, "uniform": f"{run.out}/model.pt"}
