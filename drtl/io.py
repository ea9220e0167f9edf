"""Image I/O and atomic writes (bottom layer: imports nothing else from drtl but errors).

Images are returned as numpy HWC RGB uint8. Non-standard inputs get an explicit, documented
conversion with a warning (never silently):

- grayscale (L, 1-channel): replicated to 3 channels;
- RGBA / LA / palette with transparency: the alpha channel is dropped (no compositing);
- 16-bit (I;16 or 16-bit RGB PNG): scaled to 8 bits with rounding (``round(v / 257)``);
- any other mode (CMYK, YCbCr, LAB, 1-bit, premultiplied alpha ...): converted to RGB as
  :func:`drtl.photo.read_photo` does (Pillow's own conversion, LittleCMS for CMYK with a profile
  and LAB), never by taking the stored channels; 32-bit float pixels are refused.

Colour profiles and EXIF orientation are not applied here (datasets keep their stored pixels);
``drtl upscale`` reads with :func:`drtl.photo.read_photo`, which applies both.

Anything that cannot be decoded raises :class:`drtl.errors.DataError` naming the file.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

from drtl.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


FLOAT_REFUSAL = "32-bit floating-point pixels cannot be shown as a photo; save it as 16-bit integers (PNG or TIFF)"
SRGB = ImageCms.createProfile("sRGB")


@functools.lru_cache(maxsize=16)
def icc_profile(icc: bytes) -> ImageCms.ImageCmsProfile:
    """An embedded ICC profile (bytes) as a LittleCMS profile (cached)."""
    return ImageCms.ImageCmsProfile(io.BytesIO(icc))


def to_srgb(im: Image.Image, icc: bytes, in_mode: str) -> Image.Image:
    """``im`` (mode ``in_mode``: RGB, L, CMYK or LAB) from the profile ``icc`` to sRGB RGB (LittleCMS)."""
    return ImageCms.profileToProfile(im if im.mode == in_mode else im.convert(in_mode), icc_profile(icc), SRGB,
                                     outputMode="RGB")


def convert_colour(im: Image.Image, icc: bytes | None, name: str) -> tuple[Image.Image, bytes | None, str]:
    """A colour mode other than L / RGB to RGB as a viewer shows it: (image, the profile still to
    apply or None, a note). CMYK with its embedded profile and CIELAB go through LittleCMS
    (Pillow's plain ``convert`` of LAB copies the channels); other modes (CMYK without a
    profile, YCbCr, HSV ...) through Pillow's ``convert('RGB')``; a DataError when Pillow cannot."""
    mode = im.mode
    if mode in ("CMYK", "LAB") and (icc or mode == "LAB"):
        prof = icc if mode == "CMYK" else ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
        how = "its colour profile" if mode == "CMYK" else "LittleCMS"
        return to_srgb(im, prof, mode), None, f"{mode} converted to sRGB with {how}"
    try:
        out = im.convert("RGB")
    except ValueError as exc:
        raise DataError(f"{name}: Pillow cannot convert mode {mode} to RGB ({exc}); re-export it as RGB") from None
    if icc:
        try:
            space = icc_profile(icc).profile.xcolor_space.strip()
        except (OSError, ImageCms.PyCMSError, ValueError):
            space = ""
        if space != "RGB":
            icc = None  # a profile for the channels just converted (e.g. CMYK): not for the RGB result
    return out, icc, f"{mode} converted to RGB by Pillow"


class ImageConversionWarning(UserWarning):
    """An input image was converted to 8-bit RGB (grayscale, alpha or 16-bit)."""


def _decode(path: Path) -> tuple[np.ndarray, str, bool]:
    """Decode with Pillow: (array, mode, was_16_bit_gray)."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                # Pillow keeps 16-bit grayscale as I;16 or I (32-bit int holding 16-bit values)
                arr = np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8)
                return arr, mode, True
            if mode == "P":
                im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
                mode = im.mode
            if mode == "F":
                raise DataError(f"{path}: {FLOAT_REFUSAL}")
            if mode == "1":
                im = im.convert("L")
            elif mode in ("La", "RGBa", "PA"):  # premultiplied alpha / palette + alpha
                im = im.convert("RGBA")
            elif mode not in ("L", "LA", "RGB", "RGBA"):
                # CMYK, YCbCr, LAB ...: converted as a viewer shows them, never by taking stored channels
                im = convert_colour(im, im.info.get("icc_profile"), str(path))[0]
            arr = np.asarray(im)
            return arr, mode, False
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise DataError(f"{path}: cannot decode image ({type(exc).__name__}: {exc}); re-export it as PNG") from None


def _is_png16_colour(path: Path) -> bool:
    """Pillow decodes 16-bit RGB PNGs as 8-bit RGB silently; detect the bit depth from the header."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(33)
    except OSError:
        return False
    if len(head) < 33 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    bit_depth, colour_type = head[24], head[25]
    return bit_depth == 16 and colour_type in (2, 6)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as HWC RGB uint8, converting (with a warning) what is not 8-bit RGB."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    arr, mode, was16 = _decode(path)
    notes = []
    if was16 or _is_png16_colour(path):
        notes.append("16-bit scaled to 8-bit")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
        notes.append("grayscale replicated to RGB")
    elif arr.ndim == 3 and arr.shape[2] == 2:  # LA
        arr = np.repeat(arr[:, :, :1], 3, axis=2)
        notes.append("grayscale+alpha: alpha dropped, gray replicated to RGB")
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
        notes.append("alpha channel dropped")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"{path}: unsupported image layout {arr.shape}; expected an RGB image")
    if arr.dtype != np.uint8:
        raise DataError(f"{path}: unsupported pixel type {arr.dtype}; expected 8-bit RGB")
    if notes:
        warnings.warn(f"{path}: converted to 8-bit RGB ({'; '.join(notes)})", ImageConversionWarning, stacklevel=2)
    arr = np.ascontiguousarray(arr)
    return arr if arr.flags.writeable else arr.copy()


def image_info(path: str | os.PathLike) -> dict:
    """Header facts without converting: mode, width, height, bits (for validation)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            mode = im.mode
            im.verify()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:
        raise DataError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from None
    bits = 16 if (mode.startswith("I") or _is_png16_colour(path)) else 8
    return {"mode": mode, "width": w, "height": h, "bits": bits}


# ----------------------------------------------------------------------------------------------
# atomic writes: ONE file helper (atomic_path) and ONE folder helper (atomic_folder)
#
# A temporary is named ``.<dest name>.<pid>-<8 random>.tmp`` (files) or ``.<dest name>.<pid>-<8
# random>.tmpdir`` (folders), next to its destination: hidden, and with an extension that no image
# reader or folder scan takes for an image. ``clean_stale_temps`` removes the ones whose writing
# process is gone (a run killed mid-write). Results get the ordinary mode of a new file or folder
# (0666 / 0777 minus the umask), not mkstemp's 0600.

_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[A-Za-z0-9_]{8}\.(?:tmp|tmpdir)$")


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else swapped."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_temp(path: str | os.PathLike) -> bool:
    """True for a temporary of :func:`atomic_path` / :func:`atomic_folder` (any process)."""
    return bool(_TEMP_RE.match(Path(path).name))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove this project's temporaries in ``folder`` whose writer process no longer runs."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TEMP_RE.match(p.name)
        if m and not _pid_alive(int(m.group("pid"))):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path next to ``dest``; rename it onto ``dest`` only if the block succeeds.

    The temporary ends in ``.tmp`` whatever ``dest`` is (``suffix`` is accepted for old callers
    and ignored: writers must name the format explicitly, e.g. ``savefig(tmp, format="png")``).
    The result gets mode 0666 minus the umask, like any newly created file.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}-", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_folder(dest: str | os.PathLike):
    """Build a folder in a temporary sibling and swap it onto ``dest`` only if the block succeeds.

    On any error the existing ``dest`` is left untouched and the temporary removed. The new folder
    gets mode 0777 minus the umask (mkdtemp makes 0700).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}-", suffix=".tmpdir", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~current_umask())
    try:
        yield tmp
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}-", suffix=".tmpdir", dir=dest.parent))
            os.replace(dest, old / dest.name)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_image(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write an HWC RGB uint8 array as PNG (zlib level 1: lossless, fast; files ~10-20 % larger), atomically."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"write_image expects HWC RGB uint8, got {img.dtype} {img.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG", compress_level=1)  # lossless; ~5x faster than the default 6


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 HWC -> float64 HWC in [0, 1]."""
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    return img.astype(np.float64, copy=False)
