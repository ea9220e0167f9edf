"""Photos as a viewer shows them, through `drtl upscale` and back.

The model is an edsr_tiny whose ``conv_last`` is zero: its output is exactly the bicubic
upsampling of its input (the global residual), so every case's output can be compared pixel for
pixel with the bicubic upsampling of what a viewer shows for the input file: Pillow's own
conversion (``convert``), ``ImageCms`` for colour profiles, ``ImageOps.exif_transpose`` for
orientation. The output file is read back the same way (a viewer of the output).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import rand_img
from PIL import Image, ImageCms, ImageOps

from drtl.archs import build_arch
from drtl.errors import DataError
from drtl.modelio import save_model
from drtl.photo import png_bytes, read_photo, read_tag, write_photo
from drtl.upscale import upscale_paths

H, W = 24, 32
SRGB = ImageCms.createProfile("sRGB")


@pytest.fixture(scope="module")
def bicubic_model(tmp_path_factory):
    torch.set_num_threads(2)
    m = build_arch({"name": "edsr_tiny", "scale": 2}, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        m.conv_last.weight.zero_()
        m.conv_last.bias.zero_()
    return save_model(tmp_path_factory.mktemp("m") / "bicubic.pt", m, {"method": "test-bicubic"})


def _bicubic(rgb: np.ndarray) -> np.ndarray:
    """What the model gives: torch bicubic x2 of HWC uint8 / uint16, rounded and clamped."""
    top = 255.0 if rgb.dtype == np.uint8 else 65535.0
    x = torch.from_numpy(rgb.astype(np.float32) / top).permute(2, 0, 1)[None]
    y = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)[0].permute(1, 2, 0)
    return (y.clamp(0, 1) * top).round().numpy().astype(rgb.dtype)


def _diff(a, b) -> int:
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


def _swapped_srgb() -> bytes:
    """sRGB with its red and blue colorants swapped: a valid RGB profile under which stored
    (255, 0, 0) is displayed blue."""
    p = bytearray(ImageCms.ImageCmsProfile(SRGB).tobytes())
    n = int.from_bytes(p[128:132], "big")
    tags = {bytes(p[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(n)}
    r, b = tags[b"rXYZ"], tags[b"bXYZ"]
    p[r + 4 : r + 12], p[b + 4 : b + 12] = p[b + 4 : b + 12], p[r + 4 : r + 12]
    return bytes(p)


def _rgb(h=H, w=W):
    return rand_img(np.random.default_rng(1), h, w)


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


# Each case: (name, file extension, file bytes, viewer picture as HWC RGB, viewer alpha or None,
# gray output, 16-bit output). The viewer picture comes from Pillow's own conversion of the file.
def _cases():
    rgb = _rgb()
    alpha = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
    gray = rgb[:, :, 1]
    out = []

    im = Image.fromarray(rgb)
    out.append(("rgb-png", "png", _save(im, "PNG"), rgb, None, False, False))

    im = Image.fromarray(np.dstack([rgb, alpha]))
    out.append(("rgba-png", "png", _save(im, "PNG"), rgb, alpha, False, False))

    im = Image.fromarray(np.dstack([gray, alpha]))
    out.append(("la-png", "png", _save(im, "PNG"), np.dstack([gray] * 3), alpha, True, False))

    im = Image.fromarray(gray)
    out.append(("l-png", "png", _save(im, "PNG"), np.dstack([gray] * 3), None, True, False))

    pal = Image.fromarray(rgb).quantize(16)
    out.append(("p-png", "png", _save(pal, "PNG"), np.asarray(pal.convert("RGB")), None, False, False))

    pal_t = Image.fromarray(rgb).quantize(16)
    pal_t.info["transparency"] = 3
    data = _save(pal_t, "PNG", transparency=3)
    viewer = Image.open(io.BytesIO(data)).convert("RGBA")
    out.append(("p-transparent-png", "png", data, np.asarray(viewer)[:, :, :3], np.asarray(viewer)[:, :, 3], False, False))

    bw = Image.fromarray(gray > 128).convert("1")
    data = _save(bw, "PNG")
    viewer = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    out.append(("1bit-png", "png", data, np.dstack([viewer] * 3), None, True, False))

    cmyk = np.zeros((H, W, 4), np.uint8)
    cmyk[:, :, 1] = cmyk[:, :, 2] = 255  # pure red in print: no cyan, full magenta and yellow
    cmyk[:, W // 2 :, 3] = 128  # right half darker
    data = _save(Image.frombytes("CMYK", (W, H), cmyk.tobytes()), "JPEG", quality=100)
    viewer = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert viewer[0, 0, 0] > 200 and viewer[0, 0, 1] < 50 and viewer[0, 0, 2] < 50  # red, as a viewer shows it
    out.append(("cmyk-jpeg", "jpg", data, viewer, None, False, False))

    g16 = (np.arange(H * W, dtype=np.uint32).reshape(H, W) * 83 % 65536).astype(np.uint16)
    data = _save(Image.fromarray(g16), "PNG")
    out.append(("i16-png", "png", data, np.dstack([g16] * 3), None, True, True))

    rgb16 = (rgb.astype(np.uint16) * 257 + np.arange(W, dtype=np.uint16)[None, :, None] * 3)
    out.append(("rgb16-png", "png", png_bytes(rgb16), rgb16, None, False, True))

    a16 = alpha.astype(np.uint16) * 257
    out.append(("rgba16-png", "png", png_bytes(np.dstack([rgb16, a16])), rgb16, a16, False, True))

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    exif[0x010F] = "drtl-test-camera"
    data = _save(Image.fromarray(rgb), "JPEG", quality=100, exif=exif.tobytes())
    viewer = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert viewer.shape == (W, H, 3)
    out.append(("jpeg-exif-orientation-6", "jpg", data, viewer, None, False, False))

    icc = _swapped_srgb()
    data = _save(Image.fromarray(rgb), "PNG", icc_profile=icc)
    viewer = np.asarray(ImageCms.profileToProfile(Image.open(io.BytesIO(data)), ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                                  SRGB, outputMode="RGB"))
    assert _diff(viewer[:, :, 0], rgb[:, :, 2]) <= 3  # the profile swaps red and blue
    out.append(("png-icc-swapped-primaries", "png", data, viewer, None, False, False))

    lab = Image.frombytes("LAB", (W, H), np.dstack([gray // 2 + 60, np.full_like(gray, 150), np.full_like(gray, 100)]).tobytes())
    data = _save(lab, "TIFF")
    lab_prof = ImageCms.createProfile("LAB")
    viewer = np.asarray(ImageCms.applyTransform(Image.open(io.BytesIO(data)), ImageCms.buildTransform(lab_prof, SRGB, "LAB", "RGB")))
    out.append(("lab-tiff", "tif", data, viewer, None, False, False))
    return out


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_read_photo_is_what_a_viewer_shows(case):
    name, _, data, viewer, alpha, gray, deep = case
    ph = read_photo(data, name=name)
    assert ph.rgb.shape == viewer.shape and ph.rgb.dtype == viewer.dtype
    assert _diff(ph.rgb, viewer) == 0, name
    assert (ph.alpha is None) == (alpha is None)
    if alpha is not None:
        assert _diff(ph.alpha, alpha) == 0
    assert ph.gray == gray and ph.bits == (16 if deep else 8)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_upscaled_output_is_the_viewer_picture_larger(case, tmp_path, bicubic_model):
    name, ext, data, viewer, alpha, gray, deep = case
    src = tmp_path / "in" / f"{name}.{ext}"
    src.parent.mkdir()
    src.write_bytes(data)
    rep = upscale_paths([src], bicubic_model, tmp_path / "out", ext="png", bits=16 if deep else 8, tile=16)
    assert rep.refused == [] and len(rep.written) == 1
    dest = rep.written[0]
    assert dest.name == f"{name}_x2.png"
    got = read_photo(dest)  # the output as a viewer shows it
    want = _bicubic(viewer)
    assert got.rgb.shape == want.shape == (viewer.shape[0] * 2, viewer.shape[1] * 2, 3)
    assert got.bits == (16 if deep else 8) and got.gray == gray
    # gray outputs are written as luma (one level of rounding); a carried non-sRGB profile adds a
    # round trip through LittleCMS
    tol = 0 if not gray and "icc" not in name else (1 if gray else 3)
    assert _diff(got.rgb, want) <= tol, name
    if alpha is not None:
        size = (want.shape[1], want.shape[0])
        if alpha.dtype == np.uint8:
            expect_a = np.asarray(Image.fromarray(alpha).resize(size, Image.BICUBIC))
        else:
            expect_a = np.asarray(Image.fromarray(alpha.astype(np.float32)).resize(size, Image.BICUBIC))
            expect_a = np.clip(np.round(expect_a), 0, 65535).astype(np.uint16)
        assert _diff(got.alpha, expect_a) == 0
    else:
        assert got.alpha is None


def test_metadata_carried_and_format_followed(tmp_path, bicubic_model):
    rgb = _rgb()
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "drtl-test-camera"
    icc = _swapped_srgb()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cam.jpg").write_bytes(_save(Image.fromarray(rgb), "JPEG", quality=95, exif=exif.tobytes(), icc_profile=icc))
    (tmp_path / "in" / "web.webp").write_bytes(_save(Image.fromarray(np.dstack([rgb, np.full((H, W), 200, np.uint8)])),
                                                     "WEBP", lossless=True))
    rep = upscale_paths([tmp_path / "in"], bicubic_model, tmp_path / "out", quality=90)
    assert [p.name for p in rep.written] == ["cam_x2.jpg", "web_x2.webp"]
    with Image.open(tmp_path / "out" / "cam_x2.jpg") as im:
        assert im.format == "JPEG" and im.size == (2 * H, 2 * W)  # upright: width and height swapped
        ex = im.getexif()
        assert ex.get(0x010F) == "drtl-test-camera" and ex.get(0x0112) == 1
        assert im.info.get("icc_profile") == icc  # the file keeps its colour space
    with Image.open(tmp_path / "out" / "web_x2.webp") as im:
        assert im.format == "WEBP" and im.mode == "RGBA" and im.size == (2 * W, 2 * H)
        assert abs(int(np.asarray(im)[:, :, 3].mean()) - 200) <= 1
    assert read_tag(tmp_path / "out" / "cam_x2.jpg") and read_tag(tmp_path / "out" / "web_x2.webp")


def test_jpeg_output_of_transparent_input_is_flattened_on_white(tmp_path, bicubic_model):
    rgb = np.zeros((H, W, 3), np.uint8)
    a = np.zeros((H, W), np.uint8)  # fully transparent: white on a viewer's white page
    (tmp_path / "t.png").write_bytes(_save(Image.fromarray(np.dstack([rgb, a])), "PNG"))
    with pytest.warns(UserWarning, match="flattened onto white"):
        rep = upscale_paths([tmp_path / "t.png"], bicubic_model, tmp_path / "out", ext="jpg")
    with Image.open(rep.written[0]) as im:
        assert np.asarray(im).min() >= 250


@pytest.mark.parametrize("make,match", [
    (lambda: _save(Image.fromarray(np.zeros((8, 8), np.float32)), "TIFF"), "floating-point pixels"),
    (lambda: _save(Image.fromarray(np.full((8, 8), 70000, np.int32)), "TIFF"), "do not fit 16 bits"),
    (lambda: b"\x89PNG\r\n\x1a\nnot a png", "cannot decode image"),
])
def test_what_cannot_be_shown_is_refused_in_one_line(make, match):
    with pytest.raises(DataError, match=match) as exc:
        read_photo(make(), name="x.tif")
    assert "\n" not in str(exc.value) and str(exc.value).startswith("x.tif: ")


def test_16bit_with_non_srgb_profile_falls_back_to_8_bits_with_a_warning(tmp_path, bicubic_model):
    icc = _swapped_srgb()
    rgb16 = _rgb().astype(np.uint16) * 257
    png = bytearray(png_bytes(rgb16, icc=icc))
    (tmp_path / "p.png").write_bytes(bytes(png))
    ph = read_photo(tmp_path / "p.png")
    assert ph.bits == 8 and ph.losses and "8 bits" in ph.losses[0]
    viewer = np.asarray(ImageCms.profileToProfile(Image.fromarray(_rgb()), ImageCms.ImageCmsProfile(io.BytesIO(icc)), SRGB,
                                                  outputMode="RGB"))
    assert _diff(ph.rgb, viewer) == 0
    with pytest.warns(UserWarning, match="8 bits"):
        upscale_paths([tmp_path / "p.png"], bicubic_model, tmp_path / "out", bits=16)


def test_write_photo_16bit_roundtrip(tmp_path):
    rgb16 = (np.random.default_rng(0).integers(0, 65536, (9, 7, 3))).astype(np.uint16)
    a16 = (np.random.default_rng(1).integers(0, 65536, (9, 7))).astype(np.uint16)
    for ext, fmt in (("png", "PNG"), ("tif", "TIFF")):
        write_photo(tmp_path / f"x.{ext}", rgb16, a16, fmt=fmt, tag="abc")
        ph = read_photo(tmp_path / f"x.{ext}")
        assert ph.bits == 16 and _diff(ph.rgb, rgb16) == 0 and _diff(ph.alpha, a16) == 0, fmt
        assert read_tag(tmp_path / f"x.{ext}") == "abc"


@pytest.mark.parametrize("shape,dtype", [((700, 900, 3), np.uint8), ((300, 500), np.uint8), ((400, 650, 4), np.uint8),
                                         ((420, 500, 3), np.uint16), ((1, 1, 3), np.uint8), ((2, 3, 4), np.uint16)])
def test_png_bytes_is_lossless_for_pillow(shape, dtype):
    """The 'Average' filter and the two deflate bands (images over 1 MB) decode to the same pixels
    in Pillow; 16-bit through read_photo (Pillow keeps the high byte only)."""
    rng = np.random.default_rng(3)
    top = np.iinfo(dtype).max
    noise = rng.integers(0, top + 1, shape).astype(dtype)
    for arr in (noise, np.sort(noise, axis=0)):  # noisy and smooth
        data = png_bytes(arr)
        if dtype == np.uint8:
            with Image.open(io.BytesIO(data)) as im:
                assert np.array_equal(np.asarray(im), arr)
        else:
            ph = read_photo(data)
            assert ph.bits == 16 and np.array_equal(ph.rgb, arr[:, :, :3])
            assert ph.alpha is None if shape[2] == 3 else np.array_equal(ph.alpha, arr[:, :, 3])


def test_zlib_stream_in_two_bands_is_one_stream():
    import zlib

    from drtl.photo import _adler32_combine, zlib_stream

    rng = np.random.default_rng(4)
    for n1, n2 in ((0, 0), (1, 70000), (65521, 3), (5000, 1 << 20)):
        a, b = rng.bytes(n1), rng.bytes(n2)
        assert _adler32_combine(zlib.adler32(a), zlib.adler32(b), n2) == zlib.adler32(a + b)
    data = np.repeat(rng.integers(0, 6, 1_500_000, dtype=np.uint8), 2).tobytes()  # runs: what Z_RLE finds
    for bands in (1, 2):
        z = zlib_stream(memoryview(data), 1, zlib.Z_RLE, bands)
        assert zlib.decompress(z) == data and len(z) < len(data) // 2
    flat = np.full((600, 800, 3), 200, np.uint8)
    assert len(png_bytes(flat)) < 20_000  # flat areas are runs of zeros after the filter
