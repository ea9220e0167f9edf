"""Registration check (drtl.data.registration): shifted or unrelated LR is caught at import
(warning) and in validation (failure), with the estimated shift in the report."""

import json

import numpy as np
import pytest

from drtl.cli import main
from drtl.data.registration import FAIL_CORRELATION, FAIL_SHIFT_PX, WARN_SHIFT_PX, check_pair, verdict
from drtl.degradations.resize import imresize
from tests.conftest import save, shared_dataset


def _photo(size=128):
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:100 + size, 150:150 + size])


def _set5(tmp_path, hr, lr, name="a", scale=2):
    src = tmp_path / "set5"
    save(src / "HR" / f"{name}.png", hr)
    save(src / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png", lr)
    return src


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_synthetic_shift_is_measured(shift):
    from skimage import data

    big = np.ascontiguousarray(data.astronaut()[60:284, 130:354])
    hr = big[16:208, 16:208]
    moved = big[16 - shift:208 - shift, 16 + shift:208 + shift]  # content moved down and left by `shift`
    r = check_pair(imresize(moved, scale=0.5), hr, 2)
    assert r["reliable"]
    assert r["shift_y"] == pytest.approx(shift, abs=0.2) and r["shift_x"] == pytest.approx(-shift, abs=0.2)
    assert r["shift_px"] > WARN_SHIFT_PX
    r0 = check_pair(imresize(hr, scale=0.5), hr, 2)
    assert r0["shift_px"] <= 0.1 and r0["correlation"] > 0.95


def test_flat_or_tiny_pairs_are_not_judged():
    flat = np.full((64, 64, 3), 120, np.uint8)
    flat[::7] = 121
    r = check_pair(imresize(np.roll(flat, 3, axis=1), scale=0.5), flat, 2)
    assert not r["reliable"] and verdict(r, fail=True) is None
    tiny = _photo(32)
    assert not check_pair(imresize(tiny, scale=0.5), tiny, 2)["reliable"]


def test_shifted_lr_warns_at_import_and_fails_validation(tmp_path, capsys):
    hr = _photo(128)
    lr = np.roll(imresize(hr, scale=0.5), 1, axis=1)  # LR shifted 1 LR px (= 2 HR px) right
    src = _set5(tmp_path, hr, lr)
    dst = tmp_path / "ds"
    assert main(["data", "import", "set5", str(src), str(dst), "--scale", "2"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("drtl: warning:") and "misregistered" in err[0], err
    rep = tmp_path / "rep.json"
    assert main(["data", "validate", str(dst), "--scale", "2", "--report", str(rep)]) == 2
    errors = [e for e in capsys.readouterr().err.splitlines() if e.startswith("drtl: error:")]
    assert len(errors) == 1 and "lr_shift_px" in errors[0] and "LR/a.png" in errors[0]
    pair = json.loads(rep.read_text())["registration"]["pairs"]["a"]
    assert pair["shift_x"] == pytest.approx(2.0, abs=0.2) and pair["shift_px"] > FAIL_SHIFT_PX
    # the one line says by how much and what the rule is
    assert f"LR/a.png ({pair['shift_px']:.2f} HR px) [shifts over {FAIL_SHIFT_PX} HR px" in errors[0]


def test_unrelated_lr_fails_validation(tmp_path, capsys):
    from skimage import data

    hr = _photo(128)
    other = np.ascontiguousarray(data.chelsea()[:128, :128])
    dst = tmp_path / "ds"
    assert main(["data", "import", "set5", str(_set5(tmp_path, hr, imresize(other, scale=0.5))), str(dst),
                 "--scale", "2"]) == 0
    assert "misregistered" in capsys.readouterr().err
    assert main(["data", "validate", str(dst), "--scale", "2", "--report", str(tmp_path / "rep.json")]) == 2
    err = capsys.readouterr().err
    corr = json.loads((tmp_path / "rep.json").read_text())["registration"]["pairs"]["a"]["correlation"]
    assert corr < FAIL_CORRELATION and f"LR/a.png (correlation {corr:.3f}) [correlation with the HR under" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.shared_data
def test_real_city100_pairs_pass(tmp_path, capsys):
    src = shared_dataset("city100-iphonex")
    dst, rep = tmp_path / "c100", tmp_path / "rep.json"
    assert main(["data", "import", "city100", str(src), str(dst), "--scale", "2", "--names", "001-005"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["data", "validate", str(dst), "--scale", "2", "--report", str(rep)]) == 0
    pairs = json.loads(rep.read_text())["registration"]["pairs"]
    assert len(pairs) == 5
    assert all(p["judged"] and p["shift_px"] <= WARN_SHIFT_PX and p["correlation"] >= 0.95 for p in pairs.values()), pairs
