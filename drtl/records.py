"""Run records: what one stage run did, as a small JSON file beside its outputs.

Every stage call goes through one wrapper (:func:`drtl.runner.execute`) which writes a record
``run.json`` into the run's output folder (for a stage whose output is a single file, ``<file
stem>.run.json`` beside it). The record holds everything an experiment tracker needs, so that
stages never import MLflow: one process later reads the records and logs them (``drtl track``,
the end of ``drtl experiment`` / ``drtl adapt``, or a Kubeflow task). Schema (version 1)::

    {"schema": 1,
     "stage": "finetune",                       # a stage of drtl.stages.STAGES
     "name": "drtl_pre_k5_s0",                  # the run's name (its folder)
     "identity": {"method": "drtl_pre", "shots": 5, "seed": 0},   # keys only when meaningful
     "params": {"finetune.iterations": 30, ...},# flat dotted keys: the params the stage reads
     "metrics": {"final_loss": 0.012},          # measurements only (numbers), never identities
     "history": "history.json",                 # training curve, relative to the record's folder, or null
     "artifacts": ["model.pt"],                 # files / folders, relative to the record's folder
     "inputs": [{"path": "data/sample/pool", "context": "target_pool", "digest": "<sha256>"}],
     "provenance": {"git_commit": ..., "git_dirty": ..., "dvc_lock_sha256": ..., "params_sha256": ...},
     "started": 1764470000.0, "duration_s": 12.3}

This module is a leaf: it imports nothing from drtl but the io helpers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = 1
RECORD_FILE = "run.json"
IDENTITY_KEYS = ("method", "shots", "seed")


@dataclass
class RunRecord:
    stage: str
    name: str
    identity: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    history: str | None = None
    artifacts: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    started: float = 0.0
    duration_s: float = 0.0
    schema: int = SCHEMA
    folder: str | None = field(default=None, compare=False)  # where the record was read from (not stored)

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("folder")
        return json.dumps(d, indent=1, sort_keys=True, default=str) + "\n"

    def path_of(self, rel: str) -> Path:
        """A record-relative path (history, artifacts) as a real path."""
        return Path(self.folder or ".") / rel


def record_path(out: str | os.PathLike) -> Path:
    """Where the record of a run writing ``out`` goes: ``out/run.json`` for a folder,
    ``<stem>.run.json`` beside a file output (a path with a suffix such as ``eval.json``)."""
    out = Path(out)
    return out.with_name(out.stem + ".run.json") if out.suffix else out / RECORD_FILE


def write_record(out: str | os.PathLike, rec: RunRecord) -> Path:
    from drtl.io import write_text

    path = record_path(out)
    write_text(path, rec.to_json())
    return path


def read_record(path: str | os.PathLike) -> RunRecord:
    """A record from its file (``run.json`` or ``*.run.json``) or from a run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_FILE
    d = json.loads(path.read_text())
    known = set(RunRecord.__dataclass_fields__) - {"folder"}
    return RunRecord(**{k: v for k, v in d.items() if k in known}, folder=str(path.parent))


def find_records(root: str | os.PathLike) -> list[RunRecord]:
    """Every record under ``root``, in a stable order (by path)."""
    root = Path(root)
    if not root.is_dir():
        return []
    paths = sorted({*root.rglob(RECORD_FILE), *root.rglob("*.run.json")})
    return [read_record(p) for p in paths]


# ------------------------------------------------------------------ provenance and fingerprints
def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}, 'c': [1, 2]} -> {'a.b': 1, 'c': [1, 2]} (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """HEAD of the repository holding ``cwd`` (default: the working folder), or ``unknown``."""
    return _git(["rev-parse", "HEAD"], Path(cwd or Path.cwd())) or "unknown"


def git_dirty(cwd: str | os.PathLike | None = None) -> bool | None:
    out = _git(["status", "--porcelain", "--untracked-files=no"], Path(cwd or Path.cwd()))
    return None if out is None else bool(out)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(obj) -> str:
    """The fingerprint of a JSON-able object (keys sorted): one rule for every cache key."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def dvc_lock_sha256(cwd: str | os.PathLike | None = None) -> str | None:
    p = Path(cwd or Path.cwd()) / "dvc.lock"
    return sha256_file(p) if p.is_file() else None


def folder_fingerprint(folder: str | os.PathLike) -> str | None:
    """The content of a folder: its manifest's bytes (names + sha256 of every file) when it has one,
    else the sha256 of every file. None when the path does not exist."""
    f = Path(folder)
    if (f / "manifest.csv").is_file():
        return hashlib.sha256((f / "manifest.csv").read_bytes()).hexdigest()
    if f.is_file():
        return sha256_file(f)
    if f.is_dir():
        items = sorted((p.relative_to(f).as_posix(), sha256_file(p)) for p in f.rglob("*") if p.is_file())
        return sha256_json(items)
    return None


def git_state(cwd: str | os.PathLike | None = None) -> tuple[str, bool | None]:
    """``(git_commit(cwd), git_dirty(cwd))`` from one ``git status --porcelain=v2 --branch`` call
    (its ``# branch.oid`` header is HEAD; any other line is a changed tracked file). Falls back to
    the two calls when that one fails, so the answer is always theirs."""
    cwd = Path(cwd or Path.cwd())
    out = _git(["status", "--porcelain=v2", "--branch", "--untracked-files=no"], cwd)
    if out is None:
        return git_commit(cwd), None
    lines = out.splitlines()
    oid = next((ln.split()[2] for ln in lines if ln.startswith("# branch.oid ") and len(ln.split()) > 2), "")
    commit = oid if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", oid) else (git_commit(cwd) if oid != "(initial)" else "unknown")
    return commit, any(not ln.startswith("#") for ln in lines if ln.strip())


def provenance(params: dict | None = None, cwd: str | os.PathLike | None = None) -> dict:
    """git commit (and dirty flag), dvc.lock hash, params hash, DVC stage / experiment name."""
    cwd = Path(cwd or Path.cwd())
    commit, dirty = git_state(cwd)
    p = {"git_commit": commit, "git_dirty": dirty, "dvc_lock_sha256": dvc_lock_sha256(cwd)}
    if params is not None:
        p["params_sha256"] = sha256_json({k: v for k, v in params.items() if k != "tracking"})
    for env, key in (("DVC_STAGE", "dvc_stage"), ("DVC_EXP_NAME", "dvc_exp_name")):
        if os.environ.get(env):
            p[key] = os.environ[env]
    return p
