"""Shared helpers and fixtures.

Two lanes: the fast lane (``make test-fast``: ``pytest -m "not slow"``) holds the unit and contract
tests; the end-to-end lane (``-m slow``) runs whole plans. Each orchestrator runs the tiny profile
(configs/tiny.yaml) once per session, in a fixture below (``tiny_run``: ``drtl experiment``;
``tiny_dvc``: ``dvc repro``) or in tests/test_parity.py (``drtl-kfp run --local``), and the
stage, parity, DVC and tracking tests read those runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("DRTL_PROGRESS", "0")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


def shared_dataset(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


def rand_img(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth-ish random RGB uint8 image (noise + gradient), HWC."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = (yy[..., None] * 3 + xx[..., None] * 2 + np.array([0, 40, 80])) % 256
    return np.clip(base + rng.integers(-30, 30, (h, w, 3)), 0, 255).astype(np.uint8)


def save(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def make_pairs(tmp_path, rng):
    """make_pairs(root, n, scale=2, hr=32) -> root: a valid paired folder with a manifest."""

    def _make(root: Path | None = None, n: int = 3, scale: int = 2, hr: int = 32) -> Path:
        from drtl.data.folder import write_manifest
        from drtl.degradations.resize import imresize

        root = root or tmp_path / "pairs"
        for i in range(n):
            h = rand_img(rng, hr, hr)
            save(root / "HR" / f"{i:03d}.png", h)
            save(root / "LR" / f"{i:03d}.png", imresize(h, scale=1 / scale))
        write_manifest(root, scale)
        return root

    return _make


# ------------------------------------------------------------------- the one tiny profile and its data
TINY = REPO / "configs" / "tiny.yaml"  # the tiny profile of every end-to-end test (and of drtl-kfp run --local)


def sample_data_dir(tmp: Path) -> Path:
    """``data/sample`` (the dataset folder of configs/tiny.yaml): the checkout's, else pulled with
    ``dvc pull data.dvc`` into a scratch copy of the DVC setup under ``tmp`` (a fresh clone)."""
    import shutil
    import subprocess

    from tests.dvcrepo import DVC, env_for

    if (REPO / "data" / "sample" / "pool").is_dir():
        return REPO / "data" / "sample"
    dest = tmp / "dvc-copy"
    dest.mkdir()
    shutil.copy2(REPO / "data.dvc", dest / "data.dvc")
    shutil.copytree(REPO / "dvc-remote", dest / "dvc-remote")
    (dest / ".dvc").mkdir()
    shutil.copy2(REPO / ".dvc" / "config", dest / ".dvc" / "config")
    env = env_for(dest)
    subprocess.run(["git", "init", "-q"], cwd=dest, env=env, check=True)
    subprocess.run([str(DVC), "pull", "-q", "data.dvc"], cwd=dest, env=env, check=True)
    return dest / "data" / "sample"


def data_overrides(data: Path) -> list[str]:
    """-S overrides pointing the tiny profile at ``data`` (no-ops for the checkout's data/sample)."""
    return [f"target.pool={data / 'pool'}", f"target.test={data / 'test'}", f"aux.hr={data / 'aux_hr'}"]


def tiny_overrides(sections=("relation", "pretrain", "meta", "finetune")) -> list[str]:
    """The tiny profile's budgets (configs/tiny.yaml, the given sections) as ``-S`` overrides, for
    profiles other than the experiment's (``drtl adapt``'s)."""
    import yaml

    def flat(d: dict, prefix: str) -> list[str]:
        out = []
        for k, v in d.items():
            if isinstance(v, dict):
                out += flat(v, f"{prefix}{k}.")
            else:
                out.append(f"{prefix}{k}={v}")
        return out

    raw = yaml.safe_load(TINY.read_text())
    return [o for name in sections for o in flat(raw.get(name) or {}, f"{name}.")]


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> Path:
    return sample_data_dir(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory) -> Path:
    """A small built-in sample (pipelines.profiles.TINY_SAMPLE: 4 pool pairs, 2 test pairs, 64 px HR),
    made once per session for the unit and contract tests that need a camera."""
    from drtl.data.sample import make_sample
    from pipelines.profiles import TINY_SAMPLE

    root = tmp_path_factory.mktemp("tiny_sample")
    make_sample(root, scale=2, **TINY_SAMPLE)
    return root


class TinyRun:
    """The tiny plan run once by ``drtl experiment`` (in this process): its outputs folder, params,
    the results.csv bytes as first written, and which stage opened which file under the test folder."""

    def __init__(self, out: Path, params: dict, results: bytes, opened: set, lines: list):
        self.out, self.params, self.results, self.opened, self.lines = out, params, results, opened, lines


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, sample_data) -> TinyRun:
    """The end-to-end lane's one ``drtl experiment`` of the tiny profile, with a read audit of the
    test pairs: every file opened under the test folder, attributed to the running stage."""
    import sys

    import drtl.orchestrate.experiment as xp
    from drtl.config import load_params

    out = tmp_path_factory.mktemp("tiny_run")
    params = load_params(TINY, [f"outputs={out}", *data_overrides(sample_data)])
    test_dir = str((sample_data / "test").resolve())
    stage, opened, active = ["-"], set(), [True]

    def hook(event, args):
        if active[0] and event == "open" and isinstance(args[0], str) and \
                str(Path(args[0]).resolve()).startswith(test_dir):
            opened.add((stage[0], Path(args[0]).name))

    sys.addaudithook(hook)  # cannot be removed: `active` turns it off after the run
    real = xp.execute

    def audited(stage_name, *a, **kw):
        stage[0] = stage_name
        try:
            return real(stage_name, *a, **kw)
        finally:
            stage[0] = "-"

    lines: list[str] = []
    xp.execute = audited
    try:
        xp.run_experiment(params, echo=lines.append)
    finally:
        xp.execute, active[0] = real, False
    return TinyRun(out, params, (out / "reports" / "results.csv").read_bytes(), opened, lines)


class TinyDvc:
    """The tiny plan run once by ``dvc repro`` in a scratch repository: its root, the output of that
    first repro and the results.csv bytes it wrote (later tests of the repository change them)."""

    def __init__(self, root: Path, first, results: bytes):
        self.root, self.first, self.results = root, first, results


TINY_DVC_TRACKING = {"enabled": True, "experiment": "drtl-dvc-test"}


@pytest.fixture(scope="session")
def tiny_dvc(tmp_path_factory) -> TinyDvc:
    """``dvc pull data.dvc`` then ``dvc repro`` of the committed dvc.yaml, in a scratch repository whose
    params.yaml is the tiny profile (tracking into the repository's mlflow.db)."""
    from drtl.config import load_params
    from tests.dvcrepo import dvc, make_copy

    params = load_params(TINY, ["outputs=outputs"])  # the repository's own layout
    params["tracking"].update(TINY_DVC_TRACKING)
    root = make_copy(tmp_path_factory.mktemp("dvc") / "repo", params=params)
    dvc(root, "pull", "data.dvc")
    first = dvc(root, "repro")
    return TinyDvc(root, first, (root / "reports" / "results.csv").read_bytes())
