import numpy as np
import pandas as pd
import pytest
import torch

from drtl.data.folder import build_manifest, load_pairs, modcrop, pair_paths, read_manifest
from drtl.data.importers import import_dataset, import_hr, parse_names
from drtl.data.patches import PairSampler
from drtl.data.splits import few_shot_names
from drtl.degradations.resize import imresize
from drtl.errors import ConfigError, DataError
from tests.conftest import rand_img, save


# ---------------------------------------------------------------- paired folders and manifests
def test_load_pairs_and_manifest(make_pairs):
    root = make_pairs(n=3, scale=2, hr=32)
    pairs = load_pairs(root, 2)
    assert [n for n, _, _ in pairs] == ["000", "001", "002"]
    assert pairs[0][1].shape == (16, 16, 3) and pairs[0][2].shape == (32, 32, 3)
    df = read_manifest(root)
    assert list(df["name"]) == ["000", "001", "002"]
    assert (df["hr_height"] == 2 * df["lr_height"]).all()
    assert df["hr_sha256"].str.len().eq(64).all()
    pd.testing.assert_frame_equal(df, build_manifest(root, 2))


def test_missing_partner_and_wrong_size(make_pairs, rng):
    root = make_pairs(n=2)
    (root / "LR" / "001.png").unlink()
    with pytest.raises(DataError, match="no LR image for 001"):
        pair_paths(root)
    save(root / "LR" / "001.png", rand_img(rng, 15, 16))
    with pytest.raises(DataError, match=r"LR/001.png: LR is 16x15 but HR is 32x32"):
        load_pairs(root, 2)


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        load_pairs(tmp_path / "absent", 2)
    (tmp_path / "empty" / "HR").mkdir(parents=True)
    with pytest.raises(DataError, match="empty folder"):
        load_pairs(tmp_path / "empty", 2)


# ---------------------------------------------------------------- importers on fixtures in each layout
def _hr_and_registered_lr(rng, h=48, w=64, s=2):
    hr = rand_img(rng, h + 1, w + 1)  # odd size: importers must mod-crop
    lr_small = imresize(modcrop(hr, s), scale=1 / s)
    registered = imresize(lr_small, output_shape=hr.shape[:2])  # same-size "L" capture
    return hr, registered


def test_city100_importer(tmp_path, rng):
    src = tmp_path / "city"
    for i in (1, 2, 3):
        hr, lr = _hr_and_registered_lr(rng)
        save(src / f"{i:03d}H.PNG", hr)
        save(src / f"{i:03d}L.PNG", lr)
    df = import_dataset("city100", src, tmp_path / "out", 2, parse_names("001-002"))
    assert list(df["name"]) == ["001", "002"]
    assert (df[["hr_height", "hr_width", "lr_height", "lr_width"]].iloc[0].tolist()) == [48, 64, 24, 32]
    (name, lr, hr), _ = load_pairs(tmp_path / "out", 2)
    expected = imresize(modcrop(np.asarray(__import__("PIL.Image").Image.open(src / "001L.PNG")), 2), scale=0.5)
    np.testing.assert_array_equal(lr, expected)


def test_set5_importer(tmp_path, rng):
    src = tmp_path / "set5"
    for name in ("baby", "bird"):
        hr = rand_img(rng, 30, 31)
        save(src / "HR" / f"{name}.png", hr)
        save(src / "LR_bicubic" / "X3" / f"{name}x3.png", imresize(modcrop(hr, 3), scale=1 / 3))
    df = import_dataset("set5", src, tmp_path / "out", 3)
    assert list(df["name"]) == ["baby", "bird"] and df["hr_width"].tolist() == [30, 30]
    with pytest.raises(DataError, match="LR_bicubic/X2"):
        import_dataset("set5", src, tmp_path / "out2", 2)


def test_hr_importer(tmp_path, rng):
    src = tmp_path / "urban"
    imgs = {"img_001": rand_img(rng, 33, 35), "img_002": rand_img(rng, 40, 41)}
    save(src / "img_001.png", imgs["img_001"])
    save(src / "sub" / "img_002.png", imgs["img_002"])  # found recursively
    (src / "notes.txt").write_text("not an image")
    assert import_hr(src, tmp_path / "aux", 2) == 2
    out = tmp_path / "aux" / "HR"
    assert sorted(p.name for p in out.iterdir()) == ["img_001.png", "img_002.png"]
    from drtl.io import read_image

    np.testing.assert_array_equal(read_image(out / "img_001.png"), modcrop(imgs["img_001"], 2))
    assert read_image(out / "img_002.png").shape == (40, 40, 3)
    assert import_hr(src, tmp_path / "one", 2, ["img_002"]) == 1
    with pytest.raises(DataError, match="no HR image for img_009"):
        import_hr(src, tmp_path / "bad", 2, ["img_009"])
    assert not (tmp_path / "bad").exists()
    with pytest.raises(DataError, match="source folder not found"):
        import_hr(tmp_path / "absent", tmp_path / "bad", 2)


@pytest.mark.parametrize("same_size", [True, False], ids=["V1-same-size-LR", "V3-low-res-LR"])
def test_realsr_importer(tmp_path, rng, same_size):
    src = tmp_path / "RealSR" / "Canon" / "Train" / "2"
    for i in (1, 2):
        hr, reg = _hr_and_registered_lr(rng)
        save(src / f"Canon_{i:03d}_HR.png", modcrop(hr, 2))
        save(src / f"Canon_{i:03d}_LR2.png", reg[:48, :64] if same_size else imresize(modcrop(hr, 2), scale=0.5))
    df = import_dataset("realsr", tmp_path / "RealSR", tmp_path / "out", 2)
    assert list(df["name"]) == ["Canon_001", "Canon_002"]
    assert df["lr_width"].tolist() == [32, 32]


def test_drealsr_importer(tmp_path, rng):
    src = tmp_path / "DRealSR" / "x2" / "Test_x2"
    for i in (7, 9):
        hr = modcrop(rand_img(rng, 40, 40), 2)
        save(src / "test_HR" / f"DSC_{i:04d}_x1.png", hr)
        save(src / "test_LR" / f"DSC_{i:04d}_x2.png", imresize(hr, scale=0.5))
    df = import_dataset("drealsr", tmp_path / "DRealSR", tmp_path / "out", 2)
    assert list(df["name"]) == ["DSC_0007", "DSC_0009"]


def test_failed_import_leaves_existing_output_untouched(tmp_path, rng, make_pairs):
    out = make_pairs(tmp_path / "out", n=2)
    before = {p.name: p.read_bytes() for p in sorted((out / "HR").iterdir())}
    src = tmp_path / "city"
    hr, lr = _hr_and_registered_lr(rng)
    save(src / "001H.PNG", hr)
    save(src / "001L.PNG", lr)
    (src / "002H.PNG").write_bytes(b"corrupt")
    save(src / "002L.PNG", lr)
    with pytest.raises(DataError, match="002H.PNG"):
        import_dataset("city100", src, out, 2)
    assert {p.name: p.read_bytes() for p in sorted((out / "HR").iterdir())} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["city", "out"]  # no temp folder left


def test_import_refuses_to_overwrite_a_non_dataset_folder(tmp_path, rng):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    src = tmp_path / "city"
    hr, lr = _hr_and_registered_lr(rng)
    save(src / "001H.PNG", hr)
    save(src / "001L.PNG", lr)
    with pytest.raises(DataError, match="not a dataset folder"):
        import_dataset("city100", src, tmp_path / "mine", 2)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def test_parse_names_and_bad_kind():
    assert parse_names("001-003,010") == ["001", "002", "003", "010"]
    assert parse_names(None) is None
    with pytest.raises(ConfigError):
        parse_names("005-001")
    with pytest.raises(ConfigError, match="unknown dataset kind"):
        import_dataset("div2k", ".", ".", 2)


# ---------------------------------------------------------------- few-shot splits
def test_few_shot_splits_nested_deterministic_disjoint():
    pool = [f"{i:03d}" for i in range(1, 11)]
    k1, k5, k10 = (few_shot_names(pool, k, seed=3) for k in (1, 5, 10))
    assert set(k1) <= set(k5) <= set(k10) and sorted(k10) == pool
    assert few_shot_names(pool, 5, seed=3) == k5
    assert {tuple(few_shot_names(pool, 5, seed=s)) for s in range(5)}.__len__() > 1
    picked = few_shot_names(pool + ["011", "012"], 10, seed=0, exclude=["011", "012"])
    assert not {"011", "012"} & set(picked)
    with pytest.raises(DataError, match="only 10 pairs"):
        few_shot_names(pool, 11, seed=0)


# ---------------------------------------------------------------- patch sampler
def test_patch_sampler_alignment_and_determinism(rng):
    lr = rand_img(rng, 20, 24)
    hr = np.kron(lr, np.ones((3, 3, 1), dtype=np.uint8))  # nearest x3: an HR patch is its LR patch repeated
    s = PairSampler([(lr, hr)], scale=3, lr_patch=8, augment=True)
    lrb, hrb = s.sample(16, torch.Generator().manual_seed(1))
    assert lrb.shape == (16, 3, 8, 8) and hrb.shape == (16, 3, 24, 24) and lrb.dtype == torch.float32
    torch.testing.assert_close(hrb[:, :, ::3, ::3], lrb, rtol=0, atol=0)
    lrb2, hrb2 = s.sample(16, torch.Generator().manual_seed(1))
    assert torch.equal(lrb, lrb2) and torch.equal(hrb, hrb2)
    with pytest.raises(DataError, match="smaller than the patch size"):
        PairSampler([(lr, hr)], scale=3, lr_patch=32)
    with pytest.raises(DataError, match="not 2 x LR"):
        PairSampler([(lr, hr)], scale=2, lr_patch=8)


# ---------------------------------------------------------------- the built-in sample
def test_sample_pool_covers_its_photos_and_never_shares_one(tmp_path, monkeypatch):
    """The pool takes crops of every pool photo (round robin), pool/test/aux never share a photo,
    and the pool is drawn last: changing its photos moves neither the test crops nor the aux images."""
    from drtl.data import sample
    from drtl.data.folder import hr_paths

    assert sample.POOL_PHOTOS == ("coffee", "chelsea", "motorcycle", "grace_hopper")
    assert sample.TEST_PHOTOS == ("astronaut", "rocket")
    photos = [*sample.POOL_PHOTOS, *sample.TEST_PHOTOS, *sample.AUX_PHOTOS]
    assert len(set(photos)) == len(photos)
    kw = dict(scale=2, seed=0, hr_size=64, pool_size=8, test_size=2, aux_crops=1, aux_size=96)
    sample.make_sample(tmp_path / "a", **kw)
    pool = read_manifest(tmp_path / "a" / "pool")["name"].tolist()
    assert sorted(pool) == sorted(f"pool_{p}_{j:02d}" for p in sample.POOL_PHOTOS for j in range(2))
    assert read_manifest(tmp_path / "a" / "test")["name"].tolist() == ["test_astronaut_00", "test_rocket_00"]
    for img in sample._load("motorcycle"), sample._load("grace_hopper"):  # shipped colour photos
        assert img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 128

    monkeypatch.setattr(sample, "POOL_PHOTOS", ("coffee",))
    sample.make_sample(tmp_path / "b", **kw)
    assert read_manifest(tmp_path / "a" / "test")["lr_sha256"].tolist() == \
        read_manifest(tmp_path / "b" / "test")["lr_sha256"].tolist()
    aux_a, aux_b = hr_paths(tmp_path / "a" / "aux_hr"), hr_paths(tmp_path / "b" / "aux_hr")
    assert [n for n, _ in aux_a] == [n for n, _ in aux_b]
    assert all(x.read_bytes() == y.read_bytes() for (_, x), (_, y) in zip(aux_a, aux_b))


def test_every_sample_pair_passes_validation(tiny_sample):
    """The sample generator redraws a crop whose degraded pair the validation would refuse as
    misregistered, so a sample of any size passes validation (here the tests' 64 px sample)."""
    from drtl.data.validate import validate_folder

    assert validate_folder(tiny_sample / "test", 2)["success"]
    assert validate_folder(tiny_sample / "pool", 2, tiny_sample / "test")["success"]
