from __future__ import annotations

import argparse
import warnings

import numpy as np
import pytest
import torch
from conftest import rand_img, save
from PIL import Image

from drtl.archs import build_arch
from drtl.errors import ConfigError, DataError, ModelError
from drtl.io import read_image
from drtl.modelio import save_model
from drtl.cli import add_upscale_parser
from drtl.upscale import expand_inputs, tile_grid, upscale_image, upscale_paths


def _model(scale=2, seed=0):
    torch.set_num_threads(2)
    return build_arch({"name": "edsr_tiny", "scale": scale}, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def m2():
    return _model(2)


@pytest.fixture
def model_file(tmp_path, m2):
    return save_model(tmp_path / "model.pt", m2, {"method": "test"})


def _diff(a, b):
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def test_untiled_matches_model_directly(m2, rng):
    img = rand_img(rng, 20, 28)
    out = upscale_image(m2, img)
    assert out.shape == (40, 56, 3) and out.dtype == np.uint8
    with torch.no_grad():
        y = m2(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)
    ref = np.clip(np.round(y[0].permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)
    assert _diff(out, ref) == 0


@pytest.mark.parametrize(
    "tile,overlap",
    [(16, 8), (16, 16), (13, 8), (7, 8), (25, 5), (56, 8), (100, 8), (1000, 0)],
)
def test_tiled_equals_untiled(m2, rng, tile, overlap):
    img = rand_img(rng, 40, 56)
    full = upscale_image(m2, img, tile=None)
    tiled = upscale_image(m2, img, tile=tile, overlap=overlap)
    assert tiled.shape == full.shape
    assert _diff(tiled, full) <= 1


@pytest.mark.parametrize("scale,shape", [(3, (23, 37)), (4, (17, 9)), (2, (1, 5)), (2, (31, 1))])
def test_odd_sizes_and_scales(rng, scale, shape):
    m = _model(scale)
    img = rand_img(rng, *shape)
    full = upscale_image(m, img)
    assert full.shape == (shape[0] * scale, shape[1] * scale, 3)
    tiled = upscale_image(m, img, tile=6, overlap=12)
    assert _diff(tiled, full) <= 1


def test_default_overlap_is_exact_for_tiny(m2, rng):
    # edsr_tiny's receptive field (~12 LR px) fits in the default overlap: bit-identical
    img = rand_img(rng, 40, 56)
    assert _diff(upscale_image(m2, img, tile=13), upscale_image(m2, img)) == 0


def test_tile_grid_covers_once():
    h, w = 41, 57
    cover = np.zeros((h, w), int)
    for (y0, y1, x0, x1), (cy0, cy1, cx0, cx1) in tile_grid(h, w, 16, 8):
        cover[y0:y1, x0:x1] += 1
        assert 0 <= cy0 <= y0 < y1 <= cy1 <= h and 0 <= cx0 <= x0 < x1 <= cx1 <= w
        assert y1 - y0 <= 16 and x1 - x0 <= 16
    assert (cover == 1).all()
    assert len(tile_grid(h, w, None, 8)) == 1 and len(tile_grid(h, w, 100, 8)) == 1


def test_bad_arguments(m2, rng):
    img = rand_img(rng, 8, 8)
    with pytest.raises(ConfigError, match="tile"):
        upscale_image(m2, img, tile=-3)
    with pytest.raises(ConfigError, match="overlap"):
        upscale_image(m2, img, tile=4, overlap=-1)
    with pytest.raises(DataError, match="uint8"):
        upscale_image(m2, img.astype(np.float32))
    with pytest.raises(DataError, match="RGB"):
        upscale_image(m2, img[:, :, 0])
    with pytest.raises(ConfigError, match="CUDA"):
        upscale_image(m2, img, amp=True)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            upscale_image(m2, img, device="cuda")
    assert upscale_image(m2, img, device="auto").shape == (16, 16, 3)
    assert upscale_image(m2, img, tile=0).shape == (16, 16, 3)


def test_model_mode_restored(rng):
    m = _model(2)
    m.train()
    upscale_image(m, rand_img(rng, 8, 8), tile=4, overlap=4)
    assert m.training


# ---------------------------------------------------------------- files


def _inputs(tmp_path, rng):
    d = tmp_path / "in"
    save(d / "b.png", rand_img(rng, 12, 10))
    save(d / "a.jpg", rand_img(rng, 10, 12))
    (d / "notes.txt").write_text("not an image")
    (d / "sub").mkdir()
    return d


def test_folder_and_glob_expansion(tmp_path, rng, model_file):
    d = _inputs(tmp_path, rng)
    extra = save(tmp_path / "more" / "c.png", rand_img(rng, 9, 9))
    save(tmp_path / "more" / "d.png", rand_img(rng, 9, 9))
    files = expand_inputs([d, str(tmp_path / "more" / "*.png"), extra])  # extra is a duplicate
    assert [f.name for f in files] == ["a.jpg", "b.png", "c.png", "d.png"]

    out = tmp_path / "out"
    rep = upscale_paths([d, str(tmp_path / "more" / "*.png")], model_file, out, tile=8, overlap=8)
    # the output format follows the input's
    assert [p.name for p in rep.written] == ["a_x2.jpg", "b_x2.png", "c_x2.png", "d_x2.png"]
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in rep.written]  # no temp files
    assert rep.skipped == [] and rep.refused == [] and rep.megapixels == pytest.approx((120 * 4 * 2 + 81 * 4 * 2) / 1e6)
    with Image.open(out / "b_x2.png") as im:
        assert im.mode == "RGB" and im.size == (20, 24) and im.format == "PNG"
    with Image.open(out / "a_x2.jpg") as im:
        assert im.format == "JPEG" and im.size == (24, 20)


def test_non_image_and_missing_inputs(tmp_path, rng):
    d = _inputs(tmp_path, rng)
    with pytest.raises(DataError, match=r"notes\.txt: not an image file"):
        expand_inputs([d / "notes.txt"])
    with pytest.raises(DataError, match=r"notes\.txt: not an image file"):
        expand_inputs([str(d / "*")])
    with pytest.raises(DataError, match="no file matches"):
        expand_inputs([str(d / "*.tif")])
    with pytest.raises(DataError, match="no such file"):
        expand_inputs([d / "nope.png"])
    with pytest.raises(DataError, match="no image files"):
        expand_inputs([d / "sub"])


def test_output_name_collision(tmp_path, rng, model_file):
    save(tmp_path / "x" / "img.png", rand_img(rng, 8, 8))
    save(tmp_path / "y" / "img.png", rand_img(rng, 8, 8))
    with pytest.raises(DataError, match="both be written"):
        upscale_paths([tmp_path / "x", tmp_path / "y"], model_file, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_output_would_overwrite_input(tmp_path, rng, model_file):
    save(tmp_path / "a.png", rand_img(rng, 8, 8))
    save(tmp_path / "a_x2.png", rand_img(rng, 8, 8))
    with pytest.raises(DataError, match="would be overwritten"):
        upscale_paths([tmp_path / "a.png", tmp_path / "a_x2.png"], model_file, tmp_path)


def test_unreadable_input_refused_the_others_written(tmp_path, rng, model_file, capsys):
    from drtl.cli import main

    d = tmp_path / "in"
    save(d / "a.png", rand_img(rng, 8, 8))
    (d / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    save(d / "c.png", rand_img(rng, 8, 8))
    out = tmp_path / "out"
    rep = upscale_paths([d], model_file, out)
    assert [p.name for p in rep.written] == ["a_x2.png", "c_x2.png"]
    assert len(rep.refused) == 1 and rep.refused[0][0].name == "b.png" and "cannot decode" in rep.refused[0][1]
    assert "refused 1: " in rep.summary() and "b.png" in rep.summary()
    assert sorted(p.name for p in out.iterdir()) == ["a_x2.png", "c_x2.png"]  # nothing half-written
    # the command: summary on stdout, one error line, exit 2; a and c are already done (skipped)
    assert main(["upscale", str(d), "--model", str(model_file), "--out", str(out)]) == 2
    cap = capsys.readouterr()
    assert "skipped 2 already done; refused 1" in cap.out
    err = [line for line in cap.err.splitlines() if line.startswith("drtl: error")]
    assert len(err) == 1 and "b.png" in err[0] and "1 input(s) refused" in err[0], cap.err


def test_rerun_skips_done_files_by_content(tmp_path, rng, model_file):
    d = tmp_path / "in"
    for n in "abc":
        save(d / f"{n}.png", rand_img(rng, 10, 12))
    out = tmp_path / "out"
    first = upscale_paths([d], model_file, out)
    assert len(first.written) == 3
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "b_x2.png").unlink()  # as if interrupted before b was written
    save(d / "c.png", rand_img(rng, 10, 12))  # c's content changed: its output is stale
    again = upscale_paths([d], model_file, out)
    assert [p.name for p in again.skipped] == ["a.png"]
    assert [p.name for p in again.written] == ["b_x2.png", "c_x2.png"]
    assert (out / "a_x2.png").stat().st_mtime_ns == stamp["a_x2.png"]
    # other settings give another output: not skipped
    third = upscale_paths([d], model_file, out, overlap=8)
    assert third.skipped == [] and len(third.written) == 3


def test_recursive_keeps_subfolders_and_suffix(tmp_path, rng, model_file):
    d = tmp_path / "photos"
    save(d / "top.png", rand_img(rng, 8, 8))
    save(d / "2024" / "june" / "a.png", rand_img(rng, 8, 8))
    save(d / "2024" / "b.jpg", rand_img(rng, 8, 8))
    save(d / ".hidden" / "x.png", rand_img(rng, 8, 8))
    out = d / "sr"  # the output folder inside the input folder is not walked on a rerun
    rep = upscale_paths([d], model_file, out, recursive=True, suffix="-big{scale}", ext="webp")
    names = sorted(p.relative_to(out).as_posix() for p in rep.written)
    assert names == ["2024/b-big2.webp", "2024/june/a-big2.webp", "top-big2.webp"]
    again = upscale_paths([d], model_file, out, recursive=True, suffix="-big{scale}", ext="webp")
    assert len(again.skipped) == 3 and again.written == []
    flat = upscale_paths([d], model_file, tmp_path / "flat")
    assert [p.name for p in flat.written] == ["top_x2.png"]
    with pytest.raises(ConfigError, match="suffix"):
        upscale_paths([d], model_file, out, suffix="_{size}")


def test_bad_output_settings(tmp_path, rng, model_file):
    save(tmp_path / "a.png", rand_img(rng, 8, 8))
    with pytest.raises(ConfigError, match="--bits 16 needs PNG or TIFF"):
        upscale_paths([tmp_path / "a.png"], model_file, tmp_path / "out", ext="jpg", bits=16)
    with pytest.raises(ConfigError, match="--quality"):
        upscale_paths([tmp_path / "a.png"], model_file, tmp_path / "out", quality=0)
    assert not (tmp_path / "out").exists()


def test_wrong_scale_model(tmp_path, rng, model_file):
    save(tmp_path / "a.png", rand_img(rng, 8, 8))
    with pytest.raises(ModelError, match=r"model\.pt is a x2 model but --scale 3 was asked"):
        upscale_paths([tmp_path / "a.png"], model_file, tmp_path / "out", scale=3)
    assert not (tmp_path / "out").exists()
    drn = build_arch({"name": "drn", "num_feat": 8, "emb_dim": 8, "depth": 1})
    pd = save_model(tmp_path / "drn.pt", drn, {})
    with pytest.raises(ModelError, match="SR model"):
        upscale_paths([tmp_path / "a.png"], pd, tmp_path / "out")


# ---------------------------------------------------------------- CLI


def _parser():
    p = argparse.ArgumentParser(prog="drtl")
    sub = p.add_subparsers()
    add_upscale_parser(sub)
    return p


def test_cli_handler(tmp_path, rng, model_file, capsys):
    src = save(tmp_path / "in" / "photo.png", rand_img(rng, 20, 30))
    out = tmp_path / "out"
    args = _parser().parse_args(
        ["upscale", str(src), "--model", str(model_file), "--out", str(out), "--tile", "8", "--overlap", "4", "--scale", "2"]
    )
    assert args.tile == 8 and args.device == "cpu" and args.amp is None
    args.func(args)
    assert "upscaled 1 file(s), 0.0 MP in" in capsys.readouterr().out
    res = read_image(out / "photo_x2.png")
    assert res.shape == (40, 60, 3)
    m2, _ = __import__("drtl.modelio", fromlist=["load_model"]).load_model(model_file)
    assert _diff(res, upscale_image(m2, read_image(src))) <= 1

    args = _parser().parse_args(["upscale", str(src), "--model", str(model_file), "--out", str(out), "--scale", "4"])
    with pytest.raises(ModelError, match="x2 model but --scale 4"):
        args.func(args)
    with pytest.raises(SystemExit):
        _parser().parse_args(["upscale", str(src), "--model", str(model_file), "--out", str(out), "--tile", "-1"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["upscale", str(src), "--model", str(model_file), "--out", str(out), "--device", "tpu"])


# ---------------------------------------------------------------- CPU fast path and threads


@pytest.mark.parametrize("cfg", [
    {"name": "edsr_tiny", "scale": 2},
    {"name": "edsr_tiny", "scale": 3},
    {"name": "edsr", "scale": 4, "num_feat": 8, "num_block": 2, "res_scale": 0.5, "img_range": 255.0},
    {"name": "edsr", "scale": 2, "num_feat": 8, "num_block": 1, "global_residual": False},
])
def test_fused_cpu_forward_matches_the_model(cfg):
    from drtl.upscale import _fused_cpu_forward

    torch.set_num_threads(2)
    m = build_arch(cfg, generator=torch.Generator().manual_seed(1)).eval()
    fused = _fused_cpu_forward(m)
    assert fused is not None
    x = torch.rand(1, 3, 19, 23, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        y = fused(x)
        ref = m(x)
    assert y.shape == ref.shape and y.dtype == torch.float32
    # the same ops in the same order; oneDNN's channels_last kernels round differently in the last bit
    assert (y - ref).abs().max().item() < 1e-5


def test_fused_forward_reads_a_permuted_hwc_tile_as_channels_last(m2, rng):
    """A tile cut from an HWC image, permuted then unsqueezed (batch stride 3, which torch reads as
    NCHW), runs the same channels_last kernels as the canonical channels_last tensor."""
    from drtl.upscale_core import _fused_cpu_forward

    fused = _fused_cpu_forward(m2)
    hwc = torch.from_numpy(rand_img(rng, 30, 41)).float().div_(255.0)
    odd = hwc.permute(2, 0, 1).unsqueeze(0)
    assert odd.stride(0) == 3
    canonical = hwc.unsqueeze(0).permute(0, 3, 1, 2)
    with torch.inference_mode():
        assert torch.equal(fused(odd), fused(canonical))


def test_fused_path_tiled_equals_untiled_bitwise(m2, rng):
    img = rand_img(rng, 70, 90)
    full = upscale_image(m2, img)
    for tile in (16, 33, 64):
        assert _diff(upscale_image(m2, img, tile=tile), full) == 0


def test_read_only_and_strided_input(m2, rng):
    img = rand_img(rng, 20, 24)
    ro = img.copy()
    ro.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-writable tensor" warning
        a = upscale_image(m2, ro, tile=8)
    b = upscale_image(m2, np.ascontiguousarray(img[:, ::-1])[:, ::-1], tile=8)  # a reversed (negative-stride) view
    assert _diff(a, upscale_image(m2, img)) == 0 and _diff(b, a) == 0


def test_cli_threads_option(tmp_path, rng, model_file, capsys):
    from drtl.cli import main
    from drtl.upscale import default_threads

    src = save(tmp_path / "in" / "p.png", rand_img(rng, 12, 14))
    base = ["upscale", str(src), "--model", str(model_file), "--out", str(tmp_path / "out")]
    assert _parser().parse_args(base).threads is None  # default: every usable core
    assert _parser().parse_args(base + ["--threads", "3"]).threads == 3
    try:
        assert main(base + ["--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        assert read_image(tmp_path / "out" / "p_x2.png").shape == (24, 28, 3)
        assert main(base) == 0
        assert torch.get_num_threads() == default_threads()
    finally:
        torch.set_num_threads(2)
    capsys.readouterr()
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit) as exc:
            main(base + ["--threads", bad])
        assert exc.value.code == 2
        err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert len(err) == 1 and "--threads" in err[0] and bad in err[0], err


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_receptive_radius_is_exact_and_caps_the_overlap(rng, scale):
    from drtl.upscale_core import receptive_radius

    m = _model(scale, seed=3)
    with torch.no_grad():
        m.conv_last.weight.mul_(10.0)  # a strong tail: any context error shows in the output
    r = receptive_radius(m)
    assert r == (12 if scale in (2, 3) else 13)
    img = rand_img(rng, 61, 83)
    full = upscale_image(m, img)
    # x3: bicubic's sampling positions (dst + 0.5) / 3 round by position in the tile: one level on
    # a few pixels whatever the overlap; x2 and x4 are exact
    exact = 1 if scale == 3 else 0
    assert _diff(upscale_image(m, img, tile=16, overlap=r), full) <= exact
    assert _diff(upscale_image(m, img, tile=16, overlap=32), upscale_image(m, img, tile=16, overlap=r)) == 0  # capped at r
    def moved(overlap):
        return int((upscale_image(m, img, tile=16, overlap=overlap) != full).sum())

    assert moved(r - 4) > moved(r)  # less context does show
