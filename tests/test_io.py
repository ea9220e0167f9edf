import warnings

import numpy as np
import pytest
from PIL import Image

from drtl.errors import DataError
from drtl.io import ImageConversionWarning, atomic_path, read_image, write_image
from tests.conftest import rand_img, save


def test_rgb_roundtrip(tmp_path, rng):
    img = rand_img(rng, 20, 30)
    write_image(tmp_path / "a.png", img)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out, img)


def test_grayscale_is_replicated_with_warning(tmp_path, rng):
    g = rng.integers(0, 256, (10, 12), dtype=np.uint8)
    save(tmp_path / "g.png", g)
    with pytest.warns(ImageConversionWarning, match="grayscale"):
        out = read_image(tmp_path / "g.png")
    assert out.shape == (10, 12, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], g)


def test_rgba_drops_alpha_with_warning(tmp_path, rng):
    a = rng.integers(0, 256, (8, 9, 4), dtype=np.uint8)
    save(tmp_path / "a.png", a)
    with pytest.warns(ImageConversionWarning, match="alpha"):
        out = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(out, a[:, :, :3])


def test_16bit_gray_scaled_with_warning(tmp_path):
    g16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    with pytest.warns(ImageConversionWarning, match="16-bit"):
        out = read_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(out[:, :, 0], np.round(g16 / 257).astype(np.uint8))


def test_16bit_rgb_png_is_flagged(tmp_path):
    # a 16-bit RGB PNG written by hand (Pillow cannot write one): header colour type 2, depth 16
    import struct
    import zlib

    h, w = 4, 5
    raw = b"".join(b"\x00" + np.full((w, 3), 40000, ">u2").tobytes() for _ in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    (tmp_path / "c16.png").write_bytes(png)
    with pytest.warns(ImageConversionWarning, match="16-bit"):
        out = read_image(tmp_path / "c16.png")
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    assert abs(int(out[0, 0, 0]) - round(40000 / 257)) <= 1


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(DataError, match="bad.png"):
        read_image(bad)
    with pytest.raises(DataError, match="nope.png: file not found"):
        read_image(tmp_path / "nope.png")


def test_truncated_png_is_an_error(tmp_path, rng):
    write_image(tmp_path / "t.png", rand_img(rng, 64, 64))
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="t.png"):
        read_image(tmp_path / "t.png")


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    dest = tmp_path / "out.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_cmyk_and_other_modes_converted_by_pillow_not_sliced(tmp_path):
    cmyk = np.zeros((6, 8, 4), np.uint8)
    cmyk[:, :, 1] = cmyk[:, :, 2] = 255  # red in print
    Image.frombytes("CMYK", (8, 6), cmyk.tobytes()).save(tmp_path / "red.jpg", quality=100)
    out = read_image(tmp_path / "red.jpg")
    with Image.open(tmp_path / "red.jpg") as im:
        np.testing.assert_array_equal(out, np.asarray(im.convert("RGB")))
    assert out[0, 0, 0] > 200 and out[0, 0, 1] < 50 and out[0, 0, 2] < 50  # red, not cyan
    Image.fromarray(np.eye(8, dtype=bool)).save(tmp_path / "bw.png")  # 1-bit
    with pytest.warns(ImageConversionWarning, match="grayscale"):
        bw = read_image(tmp_path / "bw.png")
    assert bw.shape == (8, 8, 3) and bw.dtype == np.uint8 and set(np.unique(bw)) == {0, 255}
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(DataError, match="f.tif: 32-bit floating-point"):
        read_image(tmp_path / "f.tif")
