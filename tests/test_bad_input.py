"""The bad-input matrix: every bad input gets exit status 2, exactly one `drtl: error:` line, no
traceback, and leaves pre-existing outputs byte-identical. docs/errors.md lists the same cases
with their messages (`python -m tests.test_bad_input` prints that table from a live run)."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from drtl.cli import main
from tests.conftest import rand_img, save

# id, argv (with {W} = the world folder), expected message fragment, pre-existing output to guard
CASES = [
    ("params-int", ["finetune", "--method", "scratch", "--shots", "1", "--out", "{W}/run", "-S", "finetune.iterations=abc"],
     "finetune.iterations=abc: expected an integer >= 1", "run"),
    ("params-list", ["report", "--out", "{W}/reports", "-S", "experiment.shots=abc"],
     "experiment.shots=abc: expected a non-empty list of integers >= 1", "reports"),
    ("params-float", ["finetune", "--method", "scratch", "--shots", "1", "--out", "{W}/run", "-S", "finetune.lr=fast"],
     "finetune.lr=fast: expected a number > 0", "run"),
    ("params-evaluate", ["evaluate", "--data", "{W}/ds", "--scale", "2", "--out", "{W}/eval.json", "-S", "finetune.lr=fast"],
     "finetune.lr=fast: expected a number > 0", "eval.json"),
    ("params-choice", ["report", "--out", "{W}/reports", "-S", "experiment.methods=[bicubic, magic]"],
     "experiment.methods=[bicubic, magic]: expected a non-empty list of methods from", "reports"),
    ("params-scale", ["report", "--out", "{W}/reports", "-S", "target.scale=5"],
     "target.scale=5: expected one of 2, 3, 4", "reports"),
    ("params-file", ["report", "--out", "{W}/reports", "--params", "{W}/bad_params.yaml"],
     "meta.first_order=yes please: expected true or false", "reports"),
    ("unknown-key", ["report", "--out", "{W}/reports", "-S", "finetune.iters=7"],
     "unknown key finetune.iters", "reports"),
    ("truncated", ["data", "import", "city100", "{W}/src_truncated", "{W}/ds", "--scale", "2"],
     "002L.PNG: cannot decode image", "ds"),
    ("zero-byte", ["data", "import", "city100", "{W}/src_zero", "{W}/ds", "--scale", "2"],
     "002L.PNG: cannot decode image", "ds"),
    ("text-as-png", ["data", "import", "city100", "{W}/src_text", "{W}/ds", "--scale", "2"],
     "002L.PNG: cannot decode image", "ds"),
    ("decompression-bomb", ["data", "import", "city100", "{W}/src_bomb", "{W}/ds", "--scale", "2"],
     "002L.PNG: cannot decode image (DecompressionBombError", "ds"),
    ("wrong-size-lr", ["data", "import", "set5", "{W}/src_set5_wrong", "{W}/ds", "--scale", "2"],
     "ax2.png: LR is 16x15 but HR is 32x32", "ds"),
    ("missing-folder", ["data", "import", "city100", "{W}/nö such földer", "{W}/ds", "--scale", "2"],
     "nö such földer: source folder not found", "ds"),
    ("empty-folder", ["data", "import", "city100", "{W}/src_empty", "{W}/ds", "--scale", "2"],
     "src_empty: no City100 NNNH.PNG images found", "ds"),
    ("grayscale-on-disk", ["data", "validate", "{W}/ds_gray", "--scale", "2"],
     "expect_column_values_to_be_in_set(lr_mode): LR/000.png", "ds_gray"),
    ("16-bit-on-disk", ["data", "validate", "{W}/ds_16bit", "--scale", "2"],
     "expect_column_values_to_be_in_set(lr_bits): LR/000.png", "ds_16bit"),
    ("misregistered", ["data", "validate", "{W}/ds_shifted", "--scale", "2"],
     "expect_column_values_to_be_between(lr_shift_px): LR/000.png", "ds_shifted"),
    ("changed-lr-blamed", ["data", "validate", "{W}/ds_changed", "--scale", "2"],
     "expect_column_values_to_be_in_set(lr_matches_manifest): LR/001.png", "ds_changed"),
    ("import-scale", ["data", "import", "city100", "{W}/src_ok", "{W}/ds", "--scale", "5"],
     "--scale=5: expected one of 2, 3, 4", "ds"),
    ("validate-scale", ["data", "validate", "{W}/ds", "--scale", "5"],
     "--scale=5: expected one of 2, 3, 4", "ds"),
    ("evaluate-out-folder", ["evaluate", "--data", "{W}/ds", "--scale", "2", "--out", "{W}/reports"],
     "--out {W}/reports: is a folder; give the JSON report's file path", "reports"),
    ("upscale-tile-overlap", ["upscale", "{W}/photos", "--model", "{W}/model.pt", "--out", "{W}/sr", "--tile", "8",
                              "--overlap", "100"],
     "tile 8 with overlap 100: an overlap over 2x the tile", "sr"),
    ("evaluate-tile", ["evaluate", "--method", "m", "--model", "{W}/model.pt", "--data", "{W}/ds", "--scale", "2",
                       "--tile", "4", "--out", "{W}/eval.json"],
     "tile 4 with overlap 16", "eval.json"),
]
NOT_A_CASE = {"bad_params.yaml"}


def _png_header_only(path: Path, w: int, h: int) -> None:
    """A PNG that claims w x h RGB pixels (a decompression bomb's header) with a tiny IDAT."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


def build_world(w: Path) -> Path:
    """Every input and pre-existing output the cases use, under ``w``."""
    from PIL import Image

    from drtl.archs import build_arch
    from drtl.data.folder import write_manifest
    from drtl.degradations.resize import imresize
    from drtl.modelio import save_model

    rng = np.random.default_rng(0)
    from skimage import data as skdata

    photo = np.ascontiguousarray(skdata.astronaut()[100:164, 150:214])

    def city(name, n=2):
        src = w / name
        for i in range(1, n + 1):
            save(src / f"{i:03d}H.PNG", photo)
            save(src / f"{i:03d}L.PNG", photo)
        return src

    def pairs(name, n=2):
        root = w / name
        for i in range(n):
            hr = np.roll(photo, 7 * i, axis=1)
            save(root / "HR" / f"{i:03d}.png", hr)
            save(root / "LR" / f"{i:03d}.png", imresize(hr, scale=0.5))
        write_manifest(root, 2)
        return root

    city("src_ok")
    (city("src_truncated") / "002L.PNG").write_bytes((w / "src_ok" / "002L.PNG").read_bytes()[:200])
    (city("src_zero") / "002L.PNG").write_bytes(b"")
    (city("src_text") / "002L.PNG").write_text("this is not a PNG\n")
    _png_header_only(city("src_bomb") / "002L.PNG", 100000, 100000)
    (w / "src_empty").mkdir()
    save(w / "src_set5_wrong" / "HR" / "a.png", rand_img(rng, 32, 32))
    save(w / "src_set5_wrong" / "LR_bicubic" / "X2" / "ax2.png", rand_img(rng, 15, 16))
    pairs("ds")
    gray = pairs("ds_gray")
    Image.fromarray(imresize(photo, scale=0.5)[:, :, 1]).save(gray / "LR" / "000.png")
    b16 = pairs("ds_16bit")
    Image.fromarray(np.full((32, 32), 30000, np.uint16)).save(b16 / "LR" / "000.png")
    shifted = pairs("ds_shifted")
    save(shifted / "LR" / "000.png", np.roll(imresize(photo, scale=0.5), 1, axis=1))
    write_manifest(shifted, 2)
    changed = pairs("ds_changed")
    save(changed / "LR" / "001.png", np.roll(imresize(np.roll(photo, 7, axis=1), scale=0.5), 0, axis=0) // 2)
    (w / "run").mkdir()
    (w / "run" / "model.pt").write_bytes(b"previous model")
    (w / "reports").mkdir()
    (w / "reports" / "results.csv").write_text("method,shots,seed,psnr_y,ssim_y\n")
    (w / "eval.json").write_text('{"previous": true}\n')
    save(w / "photos" / "p.png", rand_img(rng, 20, 24))
    (w / "sr").mkdir()
    (w / "sr" / "p_x2.png").write_bytes(b"previous output")
    net = build_arch({"name": "edsr_tiny", "scale": 2}, generator=torch.Generator().manual_seed(0))
    save_model(w / "model.pt", net, {"method": "test"})
    (w / "bad_params.yaml").write_text("meta:\n  first_order: yes please\n")
    return w


def _snapshot(path: Path) -> dict:
    if path.is_file():
        return {"": path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


def _argv(argv, w):
    return [a.replace("{W}", str(w)) for a in argv]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, world, capsys, monkeypatch):
    name, argv, message, guarded = case
    monkeypatch.chdir(world)  # no ./params.yaml: the built-in defaults
    before = _snapshot(world / guarded)
    assert main(_argv(argv, world)) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("drtl: error:")]
    assert len(errors) == 1, err
    assert message.replace("{W}", str(world)) in errors[0], errors[0]
    assert "Traceback" not in err
    assert _snapshot(world / guarded) == before


@pytest.mark.parametrize("name", ["params-int", "evaluate-out-folder"])
def test_bad_input_real_process(name, world):
    _, argv, message, guarded = next(c for c in CASES if c[0] == name)
    before = _snapshot(world / guarded)
    r = subprocess.run([sys.executable, "-m", "drtl.cli", *_argv(argv, world)], capture_output=True, text=True,
                       cwd=world)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("drtl: error:") and "Traceback" not in r.stderr, r.stderr
    assert message.replace("{W}", str(world)) in lines[0]
    assert _snapshot(world / guarded) == before


def _table() -> str:  # pragma: no cover - documentation helper
    import contextlib
    import io
    import os
    import tempfile

    rows = ["| case | command | message |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        w = build_world(Path(tmp) / "W")
        os.chdir(w)
        for name, argv, _, _ in CASES:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                rc = main(_argv(argv, w))
            line = next(x for x in err.getvalue().splitlines() if x.startswith("drtl: error:"))
            cmd = "drtl " + " ".join(a if " " not in a else f"'{a}'" for a in argv)
            line = line.replace(str(w), "W")
            rows.append(f"| {name} | `{cmd.replace('{W}', 'W')}` | exit {rc}: `{line}` |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    print(_table())
