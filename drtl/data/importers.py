"""Dataset adapters: convert public layouts into the paired-folder format (see drtl.data.folder).

Every importer writes ``DST`` atomically (built aside, swapped in on success), mod-crops HR to a
multiple of the scale and makes LR exactly HR/scale; each pair's registration is checked
(drtl.data.registration) and a misregistered one is imported with a one-line warning:

- ``city100``: ``NNNH.PNG`` (HR) and ``NNNL.PNG`` (LR capture registered and upsampled to HR size).
  LR = MATLAB-bicubic downscale of the mod-cropped ``L`` by 1/scale (the protocol of
  ../shared/datasets/README.md).
- ``set5`` (and any SwinIR-style test set): ``HR/<name>.png`` + ``LR_bicubic/X<s>/<name>x<s>.png``.
- ``realsr``: RealSR ``<Camera>_<NNN>_HR.png`` + ``<Camera>_<NNN>_LR<s>.png``, searched recursively.
  V1 ships LR at HR size (downscaled here by MATLAB bicubic, like City100); V3 ships
  low-resolution LR (used as is).
- ``drealsr``: DRealSR ``*HR*/<id>_x1.png`` + ``*LR*/<id>_x<s>.png``; same-size LR is downscaled.

:func:`import_hr` (``drtl data import hr``) copies a folder of clean HR images (BSD68, Urban100),
searched recursively, into ``DST/HR/<name>.png``, mod-cropped: an HR-only source for ``aux.hr``,
with no LR and no manifest.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from drtl.config import check_scale
from drtl.data.folder import check_pair_shape, modcrop, write_hr_folder, write_pairs
from drtl.data.registration import warn_if_misregistered
from drtl.errors import ConfigError, DataError
from drtl.io import IMAGE_EXTS, read_image


def parse_names(spec: str | None) -> list[str] | None:
    """'001-020' or '001,005,010-012' -> list of zero-padded names (width of the first bound)."""
    if spec is None or spec == "":
        return None
    out: list[str] = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        if m:
            a, b = m.group(1), m.group(2)
            if int(b) < int(a):
                raise ConfigError(f"--names: empty range {part}; write LOW-HIGH")
            out += [str(i).zfill(len(a)) for i in range(int(a), int(b) + 1)]
        elif part:
            out.append(part)
    return out


def _check_scale(scale: int) -> int:
    return check_scale(scale)  # the one rule: drtl.config.SUPPORTED_SCALES


def _src_dir(src: str | Path) -> Path:
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: source folder not found")
    return src


def _lr_from(lr: np.ndarray, hr_raw: np.ndarray, scale: int, path: Path) -> np.ndarray:
    """LR at low resolution from an LR file that is either HR-sized (registered) or already HR/scale.

    ``hr_raw`` is the HR image before mod-cropping; the result matches ``modcrop(hr_raw, scale)``.
    """
    from drtl.degradations.resize import imresize

    if lr.shape[:2] == hr_raw.shape[:2]:
        return imresize(modcrop(lr, scale), scale=1.0 / scale)
    check_pair_shape(path, lr, modcrop(hr_raw, scale), scale)
    return lr


def _files(folder: Path, pattern: str) -> dict[str, Path]:
    rx = re.compile(pattern, re.IGNORECASE)
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in IMAGE_EXTS:
            m = rx.fullmatch(p.name)
            if m:
                out[m.group(1)] = p
    return out


def _select(found: dict[str, Path], names: list[str] | None, src: Path, what: str) -> list[str]:
    if not found:
        raise DataError(f"{src}: no {what} images found; is this the right folder?")
    if names is None:
        return sorted(found)
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"{src}: no {what} image for {', '.join(missing[:5])}")
    return names


def _pairs(src: Path, hr_files: dict, lr_files: dict, names: list[str], scale: int) -> Iterator:
    for n in names:
        if n not in lr_files:
            raise DataError(f"{src}: no LR partner for {hr_files[n]}")
        hr = read_image(hr_files[n])
        lr = _lr_from(read_image(lr_files[n]), hr, scale, lr_files[n])
        hr = modcrop(hr, scale)
        warn_if_misregistered(lr_files[n], lr, hr, scale)  # a warning only: validation fails bad ones
        yield n, lr, hr


def import_city100(src, dst, scale: int, names: list[str] | None = None):
    scale, src = _check_scale(scale), _src_dir(src)
    hr = _files(src, r"(\d+)H\.png")
    lr = _files(src, r"(\d+)L\.png")
    sel = _select(hr, names, src, "City100 NNNH.PNG")
    return write_pairs(dst, _pairs(src, hr, lr, sel, scale), scale)


def import_set5(src, dst, scale: int, names: list[str] | None = None):
    scale, src = _check_scale(scale), _src_dir(src)
    hr_dir, lr_dir = src / "HR", src / "LR_bicubic" / f"X{scale}"
    if not hr_dir.is_dir() or not lr_dir.is_dir():
        raise DataError(f"{src}: expected HR/ and LR_bicubic/X{scale}/ subfolders")
    hr = _files(hr_dir, r"(.+)\.png")
    lr = _files(lr_dir, rf"(.+)x{scale}\.png")
    sel = _select(hr, names, hr_dir, "HR")
    return write_pairs(dst, _pairs(src, hr, lr, sel, scale), scale)


def import_realsr(src, dst, scale: int, names: list[str] | None = None):
    scale, src = _check_scale(scale), _src_dir(src)
    hr = _files(src, r"(.+?)_HR\.png")
    lr = _files(src, rf"(.+?)_LR{scale}\.png")
    sel = _select(hr, names, src, "RealSR *_HR.png")
    return write_pairs(dst, _pairs(src, hr, lr, sel, scale), scale)


def import_drealsr(src, dst, scale: int, names: list[str] | None = None):
    scale, src = _check_scale(scale), _src_dir(src)
    hr_dirs = [d for d in sorted(src.rglob("*")) if d.is_dir() and "hr" in d.name.lower()]
    lr_dirs = [d for d in sorted(src.rglob("*")) if d.is_dir() and "lr" in d.name.lower()]
    if not hr_dirs or not lr_dirs:
        raise DataError(f"{src}: expected DRealSR *HR*/ and *LR*/ subfolders")
    hr, lr = {}, {}
    for d in hr_dirs:
        hr.update(_files(d, r"(.+?)_x1\.png"))
    for d in lr_dirs:
        lr.update(_files(d, rf"(.+?)_x{scale}\.png"))
    sel = _select(hr, names, src, "DRealSR *_x1.png")
    return write_pairs(dst, _pairs(src, hr, lr, sel, scale), scale)


def import_hr(src, dst, scale: int, names: list[str] | None = None) -> int:
    """Clean HR images (any of IMAGE_EXTS, found recursively, named by their stem) into
    ``DST/HR/<name>.png``, mod-cropped to the scale; returns the number written."""
    scale, src = _check_scale(scale), _src_dir(src)
    found = _files(src, r"(.+)\.[^.]+")
    sel = _select(found, names, src, "HR")
    return write_hr_folder(dst, ((n, modcrop(read_image(found[n]), scale)) for n in sel))


IMPORTERS = {
    "city100": import_city100,
    "set5": import_set5,
    "realsr": import_realsr,
    "drealsr": import_drealsr,
}


def import_dataset(kind: str, src, dst, scale: int, names: list[str] | None = None):
    if kind not in IMPORTERS:
        raise ConfigError(f"unknown dataset kind {kind!r}; choose one of {', '.join(IMPORTERS)}")
    return IMPORTERS[kind](src, dst, scale, names)
