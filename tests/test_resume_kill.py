"""Interruptions: SIGKILL a real `drtl finetune` process after its first checkpoint, rerun it, and get
bit-for-bit the weights of an uninterrupted run; the killed run leaves nothing a later stage would trust."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ITERATIONS = 300


@pytest.fixture(scope="module")
def pool(tiny_sample) -> Path:
    return tiny_sample / "pool"


def _cmd(pool: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "drtl.cli", "finetune", "--method", "scratch", "--shots", "2", "--seed", "0",
            "--pool", str(pool), "--out", str(out),
            "-S", "finetune.checkpoint_every=2", "-S", f"finetune.iterations={ITERATIONS}",
            "-S", "finetune.lr_patch=16", "-S", "finetune.batch=4", "-S", "finetune.log_every=50", "-S", "threads=1"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "DRTL_PROGRESS": "0"}


def _finish(cmd, cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(pool, tmp_path):
    from drtl.train import load_checkpoint

    killed, clean = tmp_path / "killed", tmp_path / "clean"
    # cwd = tmp_path: no ./params.yaml there, so both runs use the built-in defaults + the -S overrides
    proc = subprocess.Popen(_cmd(pool, killed), cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    ckpt = killed / ".ckpt.pt"
    deadline = time.time() + 180
    while not ckpt.exists():
        if proc.poll() is not None:
            pytest.fail(f"finetune ended before its first checkpoint: {proc.stderr.read()}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("no checkpoint after 180 s")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    # nothing half-written: no model.pt / history.json, only the checkpoint and dot-prefixed temp files
    left = sorted(p.name for p in killed.iterdir())
    assert ".ckpt.pt" in left
    assert not (killed / "model.pt").exists()
    assert all(name.startswith(".") for name in left), left
    step = load_checkpoint(ckpt)["step"]
    assert 2 <= step < ITERATIONS

    _finish(_cmd(pool, killed), tmp_path)  # the same command resumes from the checkpoint
    _finish(_cmd(pool, clean), tmp_path)   # an uninterrupted run elsewhere

    import json

    hist = json.loads((killed / "history.json").read_text())
    assert hist["resumed_from"] and hist["resumed_from"][0] >= step
    assert json.loads((clean / "history.json").read_text())["resumed_from"] == []
    a, b = _state(killed / "model.pt"), _state(clean / "model.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the model files are deterministic: same weights and recipe give the same bytes
    assert (killed / "model.pt").read_bytes() == (clean / "model.pt").read_bytes()
    # what remains besides the outputs is dot-prefixed (the final checkpoint, maybe a stale temp file)
    visible = sorted(p.name for p in killed.iterdir() if not p.name.startswith("."))
    assert visible == ["history.json", "model.pt", "run.json"]  # run.json: the run's record (drtl.records)
