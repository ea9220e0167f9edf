"""The great-expectations suite over paired folders: every failure names its files."""

import numpy as np
import pytest
from PIL import Image

from drtl.data.validate import check_folder, validate_folder
from drtl.errors import ValidationError
from tests.conftest import rand_img, save


def _failures(report):
    return {f["expectation"]: f["files"] for f in report["failures"]}


def test_clean_folder_passes(make_pairs, tmp_path):
    root = make_pairs(n=3)
    test = make_pairs(tmp_path / "test", n=2)
    rep = check_folder(root, 2, test_root=test)
    assert rep["success"] and rep["n_pairs"] == 3 and rep["failures"] == []


def test_each_broken_file_is_named(make_pairs, rng):
    root = make_pairs(n=5)
    (root / "HR" / "000.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")          # corrupt
    save(root / "LR" / "001.png", rand_img(rng, 15, 16))                        # wrong LR size
    save(root / "LR" / "002.png", rand_img(rng, 16, 16)[:, :, 0])               # grayscale on disk
    (root / "HR" / "003.png").write_bytes((root / "HR" / "004.png").read_bytes())  # duplicate content
    rep = validate_folder(root, 2)
    assert not rep["success"]
    f = _failures(rep)
    assert f["expect_column_values_to_be_in_set(hr_decodes)"] == ["HR/000.png"]
    assert "LR/001.png" in f["expect_column_pair_values_to_be_equal(hr_height, lr_height_x_scale)"]
    assert f["expect_column_values_to_be_in_set(lr_mode)"] == ["LR/002.png"]
    assert f["expect_column_values_to_be_unique(hr_sha256)"] == ["HR/003.png", "HR/004.png"]
    # files changed after import no longer match the manifest's hashes
    assert {"HR/000.png", "HR/003.png"} == set(f["expect_column_values_to_be_in_set(hr_matches_manifest)"])
    assert {"LR/001.png", "LR/002.png"} == set(f["expect_column_values_to_be_in_set(lr_matches_manifest)"])
    with pytest.raises(ValidationError) as ei:
        check_folder(root, 2)
    msg = str(ei.value)
    assert "\n" not in msg and "HR/000.png" in msg and "LR/001.png" in msg


def test_orphan_lr_and_16bit(make_pairs):
    root = make_pairs(n=2)
    Image.fromarray(np.full((16, 16), 30000, np.uint16)).save(root / "LR" / "005.png")
    f = _failures(validate_folder(root, 2))
    assert f["expect_column_values_to_be_in_set(hr_exists)"] == ["HR/005.png"]
    assert "LR/005.png" in f["expect_column_values_to_be_in_set(lr_bits)"]


def test_pool_and_test_must_be_disjoint(make_pairs, tmp_path):
    pool = make_pairs(tmp_path / "pool", n=3)
    test = tmp_path / "test"
    for sub in ("HR", "LR"):
        (test / sub).mkdir(parents=True)
        (test / sub / "x.png").write_bytes((pool / sub / "001.png").read_bytes())
    f = _failures(validate_folder(pool, 2, test_root=test))
    assert f["expect_column_values_to_not_be_in_set(hr_sha256)"] == ["HR/001.png"]
