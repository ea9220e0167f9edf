"""The `drtl` command: one-line errors, non-zero exits, outputs left intact; golden metric checks."""

import json
import subprocess
import sys

import numpy as np
import pytest

from drtl.cli import main
from drtl.data.folder import load_pairs, read_manifest
from tests.conftest import rand_img, save, shared_dataset


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [e for e in err if e.startswith("drtl: error:")]
    assert len(errors) == 1, err
    return errors[0]


def _snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def existing_out(make_pairs, tmp_path):
    out = make_pairs(tmp_path / "out", n=2)
    return out, _snapshot(out)


def _city(tmp_path, rng, n=2, hr_shape=(32, 48)):
    src = tmp_path / "city"
    for i in range(1, n + 1):
        hr = rand_img(rng, *hr_shape)
        save(src / f"{i:03d}H.PNG", hr)
        save(src / f"{i:03d}L.PNG", hr)
    return src


def test_corrupt_png(tmp_path, rng, capsys, existing_out):
    out, before = existing_out
    src = _city(tmp_path, rng)
    (src / "002L.PNG").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0garbage")
    assert main(["data", "import", "city100", str(src), str(out), "--scale", "2"]) == 2
    assert "002L.PNG" in _err_line(capsys)
    assert _snapshot(out) == before


def test_lr_of_wrong_size(tmp_path, rng, capsys, existing_out):
    out, before = existing_out
    src = tmp_path / "set5"
    save(src / "HR" / "a.png", rand_img(rng, 32, 32))
    save(src / "LR_bicubic" / "X2" / "ax2.png", rand_img(rng, 15, 16))
    assert main(["data", "import", "set5", str(src), str(out), "--scale", "2"]) == 2
    assert "ax2.png: LR is 16x15 but HR is 32x32" in _err_line(capsys)
    assert _snapshot(out) == before


def test_empty_and_missing_folders(tmp_path, capsys, existing_out):
    out, before = existing_out
    (tmp_path / "empty").mkdir()
    assert main(["data", "import", "city100", str(tmp_path / "empty"), str(out), "--scale", "2"]) == 2
    assert "empty: no City100 NNNH.PNG images found" in _err_line(capsys)
    assert main(["data", "import", "city100", str(tmp_path / "missing"), str(out), "--scale", "2"]) == 2
    assert "missing: source folder not found" in _err_line(capsys)
    assert main(["evaluate", "--data", str(tmp_path / "missing"), "--scale", "2"]) == 2
    assert "missing: folder not found" in _err_line(capsys)
    (tmp_path / "e2" / "HR").mkdir(parents=True)
    assert main(["data", "validate", str(tmp_path / "e2"), "--scale", "2"]) == 2
    assert "HR: empty folder" in _err_line(capsys)
    assert _snapshot(out) == before


def test_grayscale_import_converts_with_warning(tmp_path, rng, capsys):
    src = tmp_path / "city"
    hr = rand_img(rng, 32, 32)[:, :, 1]
    save(src / "001H.PNG", hr)
    save(src / "001L.PNG", hr)
    assert main(["data", "import", "city100", str(src), str(tmp_path / "o"), "--scale", "2"]) == 0
    err = capsys.readouterr().err
    assert "drtl: warning:" in err and "grayscale replicated to RGB" in err
    (_, lr, hr3), = load_pairs(tmp_path / "o", 2)
    assert hr3.shape == (32, 32, 3) and np.array_equal(hr3[:, :, 0], hr3[:, :, 2])


def test_validate_cli_writes_report_and_exits_nonzero(make_pairs, tmp_path, rng, capsys):
    root = make_pairs(n=2)
    save(root / "LR" / "001.png", rand_img(rng, 10, 16))
    rep = tmp_path / "rep.json"
    assert main(["data", "validate", str(root), "--scale", "2", "--report", str(rep)]) == 2
    line = _err_line(capsys)
    assert "fails validation" in line and "LR/001.png" in line
    assert json.loads(rep.read_text())["success"] is False


def test_real_process_exit_code(tmp_path):
    r = subprocess.run([sys.executable, "-m", "drtl.cli", "evaluate", "--data", str(tmp_path / "nope"), "--scale", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "nope: folder not found" in r.stderr


def test_evaluate_bicubic_json(make_pairs, tmp_path):
    root = make_pairs(n=2, hr=40)
    out = tmp_path / "r" / "bicubic.json"
    assert main(["evaluate", "--method", "bicubic", "--data", str(root), "--scale", "2", "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert {"psnr_y", "ssim_y"} <= set(rep) and len(rep["per_image"]) == 2
    assert rep["psnr_y"] == pytest.approx(np.mean([p["psnr_y"] for p in rep["per_image"]]))
    assert 10 < rep["psnr_y"] < 60 and 0 < rep["ssim_y"] <= 1


def test_sample_dataset_builds_and_validates(tmp_path, capsys):
    from drtl.data.sample import make_sample

    info = make_sample(tmp_path / "s", scale=2, seed=0, pool_size=4, test_size=2, aux_crops=1)
    assert (info["n_pool"], info["n_test"], info["n_aux_hr"]) == (4, 2, 11)
    assert main(["data", "validate", str(tmp_path / "s" / "pool"), "--scale", "2",
                 "--test", str(tmp_path / "s" / "test")]) == 0
    again = make_sample(tmp_path / "s2", scale=2, seed=0, pool_size=4, test_size=2, aux_crops=1)
    assert read_manifest(tmp_path / "s" / "pool")["lr_sha256"].tolist() == \
        read_manifest(tmp_path / "s2" / "pool")["lr_sha256"].tolist()
    assert again["n_pool"] == 4


# ---------------------------------------------------------------- golden checks on the shared real data
PUBLISHED_SET5 = {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)}


@pytest.mark.shared_data
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_set5_bicubic_matches_published(tmp_path, scale, capsys):
    src = shared_dataset("set5")
    out = tmp_path / f"x{scale}.json"
    assert main(["data", "import", "set5", str(src), str(tmp_path / "set5"), "--scale", str(scale)]) == 0
    assert main(["evaluate", "--method", "bicubic", "--data", str(tmp_path / "set5"),
                 "--scale", str(scale), "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    psnr, ssim = PUBLISHED_SET5[scale]
    assert abs(rep["psnr_y"] - psnr) < 0.05 and abs(rep["ssim_y"] - ssim) < 0.002


@pytest.mark.shared_data
def test_city100_import_and_bicubic(tmp_path):
    src = shared_dataset("city100-iphonex")
    assert main(["data", "import", "city100", str(src), str(tmp_path / "c"), "--scale", "2", "--names", "001-020"]) == 0
    df = read_manifest(tmp_path / "c")
    assert len(df) == 20
    assert set(zip(df.lr_width, df.lr_height, df.hr_width, df.hr_height)) == {(420, 300, 840, 600)}
    out = tmp_path / "c.json"
    assert main(["evaluate", "--data", str(tmp_path / "c"), "--scale", "2", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["psnr_y"] == pytest.approx(26.995, abs=0.02)
