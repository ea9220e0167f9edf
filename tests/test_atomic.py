"""Atomic writes: results follow the umask; a killed `drtl upscale` leaves only complete outputs,
no temporary that a scan takes for an image, and a rerun completes."""

import os
import random
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from drtl.archs import build_arch
from drtl.cli import main
from drtl.io import atomic_path, clean_stale_temps, is_temp, read_image, write_text
from drtl.modelio import save_model
from tests.conftest import rand_img, save


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def model_file(tmp_path):
    net = build_arch({"name": "edsr_tiny", "scale": 2}, generator=torch.Generator().manual_seed(0))
    return save_model(tmp_path / "model.pt", net, {"method": "test"})


def _modes(root):
    return {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def test_written_files_follow_umask(tmp_path, rng, umask022, model_file, capsys):
    src = tmp_path / "set5"
    hr = rand_img(rng, 32, 32)
    save(src / "HR" / "a.png", hr)
    from drtl.degradations.resize import imresize

    save(src / "LR_bicubic" / "X2" / "ax2.png", imresize(hr, scale=0.5))
    out = tmp_path / "out"
    assert main(["data", "import", "set5", str(src), str(out / "ds"), "--scale", "2"]) == 0
    assert main(["data", "validate", str(out / "ds"), "--scale", "2", "--report", str(out / "val.json")]) == 0
    assert main(["evaluate", "--data", str(out / "ds"), "--scale", "2", "--out", str(out / "eval.json")]) == 0
    assert main(["upscale", str(src / "HR" / "a.png"), "--model", str(model_file), "--out", str(out / "sr")]) == 0
    from drtl.stages.report import report

    report([out / "eval.json"], out / "reports", [1])
    save_model(out / "m.pt", build_arch({"name": "edsr_tiny", "scale": 2}), {})
    write_text(out / "note.txt", "x\n")
    modes = _modes(out)
    files = {k: v for k, v in modes.items() if (out / k).is_file()}
    dirs = {k: v for k, v in modes.items() if (out / k).is_dir()}
    for must in ("ds/HR/a.png", "ds/LR/a.png", "ds/manifest.csv", "val.json", "eval.json", "sr/a_x2.png",
                 "reports/metrics.json", "reports/results.csv", "reports/psnr_vs_shots.png", "m.pt", "note.txt"):
        assert must in files, sorted(files)
    assert set(files.values()) == {0o644}, files
    assert set(dirs.values()) == {0o755}, dirs


def test_temporaries_are_not_images_and_stale_ones_are_cleaned(tmp_path):
    dest = tmp_path / "x.png"
    with atomic_path(dest) as tmp:
        assert tmp.suffix == ".tmp" and is_temp(tmp) and tmp.name.startswith(".x.png.")
        tmp.write_bytes(b"1")
    assert dest.read_bytes() == b"1" and [p.name for p in tmp_path.iterdir()] == ["x.png"]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".y.png.{int(dead.stdout)}-abcdefgh.tmp"
    mine = tmp_path / f".z.png.{os.getpid()}-abcdefgh.tmp"
    stale.write_bytes(b"")
    mine.write_bytes(b"")
    assert clean_stale_temps(tmp_path) == [stale]
    assert not stale.exists() and mine.exists()


@pytest.mark.slow
def test_sigkill_during_upscale_batch_then_rerun(tmp_path, rng, model_file):
    src = tmp_path / "in"
    for i in range(12):
        save(src / f"{i:02d}.png", rand_img(rng, 96, 128))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "drtl.cli", "upscale", str(src), "--model", str(model_file), "--out", str(out),
           "--tile", "32", "--overlap", "8"]
    env = {**os.environ, "DRTL_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    chance = random.Random(12)
    killed = 0
    for _ in range(3):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # kill at a random point inside the batch: after a random number of outputs, plus a random delay
        want, t0 = chance.randint(1, 8), time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < 120:
            if out.is_dir() and sum(1 for _ in out.iterdir()) >= want:
                break
            time.sleep(0.01)
        time.sleep(chance.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        if out.is_dir():
            for p in out.iterdir():  # only complete outputs under image names
                if p.suffix == ".png":
                    assert not p.name.startswith("."), p
                    assert read_image(p).shape == (192, 256, 3)
                else:
                    assert is_temp(p), p
    # a leftover temporary of a killed writer, as a SIGKILL mid-write leaves it
    out.mkdir(exist_ok=True)
    (out / ".07_x2.png.4194304-abcdefgh.tmp").write_bytes(b"")  # above pid_max: never a live process
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{i:02d}_x2.png" for i in range(12)]
    assert killed >= 1
