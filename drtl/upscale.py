"""``drtl upscale``: photo files in, super-resolved files out.

The tiled core is :mod:`drtl.upscale_core` (its names are re-exported here); reading and writing
photos as a viewer shows them is :mod:`drtl.photo`.

A run: the inputs (files, folders, globs; ``recursive`` walks sub-folders and keeps their layout
under the output folder) are planned as ``out/<sub-folder>/<stem><suffix>.<ext>``; each file is
read in a reader thread (the next one while the current one is computed), upscaled on the main
thread, and written in a writer thread (while the next one is computed), atomically. Every output
carries a fingerprint of its input's bytes, the model file and the settings: a file whose output
already carries the same fingerprint is skipped, so a rerun after an interrupt continues where it
stopped. A file that cannot be read or converted is refused with its reason; the others go on.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import threading
import time
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from drtl.config import apply_threads
from drtl.errors import ConfigError, DataError
from drtl.io import IMAGE_EXTS, ImageConversionWarning, clean_stale_temps
from drtl.modelio import load_model, resolve_device
from drtl.photo import FORMATS, FORMATS_16, Photo, fingerprint, output_format, read_photo, read_tag, resize_alpha, write_photo
from drtl.progress import progress
from drtl.upscale_core import (DEFAULT_OVERLAP, DEFAULT_TILE, _fused_cpu_forward, check_tiling,  # noqa: F401
                               keep_freed_memory, tile_grid, upscale_image)

DEFAULT_SUFFIX = "_x{scale}"
DEFAULT_QUALITY = 95
PNG_LEVEL = 1  # zlib level of PNG outputs (lossless; drtl.photo.png_bytes)
PENDING_WRITES = 2  # outputs that may wait for the writer thread while the next image is computed
_GLOB_CHARS = set("*?[")


# ----------------------------------------------------------------------------------------------
# inputs and outputs


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS


def _not_image(path: Path) -> DataError:
    return DataError(f"{path}: not an image file (extension '{path.suffix or 'none'}'; expected one of {', '.join(IMAGE_EXTS)})")


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _walk(folder: Path, recursive: bool, exclude: Path | None) -> list[tuple[Path, Path]]:
    """(image, its sub-folder relative to ``folder``), sorted; hidden files and folders (temporaries
    of an interrupted write among them) and the output folder ``exclude`` (when it lies inside and
    is not ``folder`` itself) are not inputs."""
    found = []
    if recursive:
        skip = exclude if exclude is not None and exclude.resolve() != folder.resolve() else None
        for root, dirs, names in os.walk(folder):
            r = Path(root)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _inside(r / d, skip))
            found += [(r / n, r.relative_to(folder)) for n in names if not n.startswith(".") and _is_image(r / n)]
    else:
        found = [(c, Path()) for c in folder.iterdir() if c.is_file() and _is_image(c) and not c.name.startswith(".")]
    return sorted(found, key=lambda t: (t[1].as_posix(), t[0].name))


def _collect(inputs, recursive: bool = False, exclude: Path | None = None) -> list[tuple[Path, Path]]:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not inputs:
        raise DataError("no input images given")
    files: list[tuple[Path, Path]] = []
    for item in inputs:
        s = os.fspath(item)
        p = Path(s)
        if p.is_dir():
            found = _walk(p, recursive, exclude)
            if not found:
                raise DataError(f"{p}: folder has no image files ({', '.join(IMAGE_EXTS)})"
                                + ("" if recursive else "; --recursive also looks in its sub-folders"))
            files += found
        elif p.is_file():
            if not _is_image(p):
                raise _not_image(p)
            files.append((p, Path()))
        elif _GLOB_CHARS & set(s):
            matches = sorted(Path(m) for m in glob.glob(s, recursive=True))
            matches = [m for m in matches if not m.is_dir()]
            if not matches:
                raise DataError(f"{s}: no file matches this pattern")
            for m in matches:
                if not _is_image(m):
                    raise _not_image(m)
            files += [(m, Path()) for m in matches]
        else:
            raise DataError(f"{p}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for f, rel in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((f, rel))
    return unique


def expand_inputs(inputs: list[str | os.PathLike], recursive: bool = False, exclude: str | os.PathLike | None = None) -> list[Path]:
    """Files as given, folders -> their image files (by extension, sorted; with ``recursive`` also
    those of their sub-folders, ``exclude`` (the output folder) left out), globs -> their matches
    (sorted; ``**`` recurses). Duplicates are dropped; nothing is skipped silently: a named or
    matched file that is not an image, a missing path, an empty folder or a glob that matches
    nothing is a :class:`DataError`."""
    return [f for f, _ in _collect(inputs, recursive, None if exclude is None else Path(exclude))]


def output_name(path: Path, scale: int, suffix: str = DEFAULT_SUFFIX, ext: str | None = None) -> str:
    """``<stem><suffix>.<ext>``: ``suffix`` with ``{scale}`` filled in, ``ext`` the input's (lower
    case) unless given."""
    try:
        sfx = suffix.format(scale=scale)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"--suffix {suffix!r}: only {{scale}} may be written in braces ({exc})") from None
    if "/" in sfx or os.sep in sfx:
        raise ConfigError(f"--suffix {suffix!r}: a suffix cannot hold a folder separator")
    return f"{path.stem}{sfx}.{(ext or path.suffix.lstrip('.')).lower().lstrip('.')}"


# ----------------------------------------------------------------------------------------------
# a run


@dataclass
class UpscaleReport:
    """What a run did: outputs written, inputs skipped (already done) and refused (with reasons)."""

    out_dir: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)
    megapixels: float = 0.0  # output megapixels written
    seconds: float = 0.0

    def summary(self) -> str:
        rate = f", {self.megapixels / self.seconds:.2f} MP/s" if self.seconds > 0 and self.written else ""
        line = (f"upscaled {len(self.written)} file(s), {self.megapixels:.1f} MP in {self.seconds:.1f} s{rate}, into "
                f"{self.out_dir}; skipped {len(self.skipped)} already done; refused {len(self.refused)}")
        if self.refused:
            line += ": " + "; ".join(reason for _, reason in self.refused)
        return line


@dataclass
class _Prepared:
    photo: Photo | None = None
    tag: str = ""
    skipped: bool = False
    refused: str | None = None


def _prepare(src: Path, dest: Path, settings: str, bits: int) -> _Prepared:
    """Reader thread: the input's bytes, its fingerprint, skip when ``dest`` carries it, else decode."""
    try:
        data = src.read_bytes()
    except OSError as exc:
        return _Prepared(refused=f"{src}: cannot read ({exc.strerror or exc})")
    tag = fingerprint(data, settings)
    if dest.is_file() and read_tag(dest) == tag:
        return _Prepared(skipped=True)
    try:
        photo = read_photo(data, name=str(src))
    except DataError as exc:
        return _Prepared(refused=str(exc))
    if photo.bits == 16 and bits != 16:
        photo.rgb = np.round(photo.rgb / 257.0).astype(np.uint8)
        photo.alpha = None if photo.alpha is None else np.round(photo.alpha / 257.0).astype(np.uint8)
        photo.bits = 8
    return _Prepared(photo=photo, tag=tag)


def _lower_priority() -> None:
    """Run this (reader / writer) thread at nice +10: the inference threads get the cores first, and
    the reading and encoding fill the gaps (Linux sets niceness per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10))
    except (AttributeError, OSError):
        pass


def _header_megapixels(path: Path, scale: int) -> float:
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001 - refused later, with its reason
        return 0.0
    return w * h * scale * scale / 1e6


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def upscale_paths(
    inputs: list[str | os.PathLike],
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    device: str = "cpu",
    scale: int | None = None,
    amp: bool | None = None,
    recursive: bool = False,
    suffix: str = DEFAULT_SUFFIX,
    ext: str | None = None,
    quality: int = DEFAULT_QUALITY,
    bits: int = 8,
    show: bool | None = None,
) -> UpscaleReport:
    """Upscale photo files (files, folders, globs) with the model file ``model_path`` into
    ``out_dir/[<sub-folder>/]<stem><suffix>.<ext>``, atomically, and return an
    :class:`UpscaleReport`.

    Reading follows :func:`drtl.photo.read_photo` (as a viewer shows the file); alpha is upscaled
    with bicubic and written back; ``ext`` (png, jpg, webp, tif, bmp) is the output format (None:
    the input's); ``quality`` is JPEG / WebP quality; ``bits=16`` writes 16-bit PNG / TIFF for
    16-bit inputs (others stay 8-bit); the colour profile and EXIF are carried where the format
    allows. ``scale``, when given, must match the model's. Inputs whose output already carries
    their fingerprint are skipped; inputs that cannot be read are refused (listed in the report)
    and the others go on. Bad settings, a model that does not fit, two inputs with one output
    name, or an output that cannot be written raise a one-line DRTLError; an output is complete or
    absent. Temporaries left in the output folders by an earlier run that was killed are removed."""
    t0 = time.perf_counter()
    if tile == 0:
        tile = None
    check_tiling(tile, overlap)
    if bits not in (8, 16):
        raise ConfigError(f"--bits {bits}: expected 8 or 16")
    if not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ConfigError(f"--quality {quality}: expected 1..100")
    fmt_forced = output_format(ext) if ext else None
    if bits == 16 and fmt_forced is not None and fmt_forced not in FORMATS_16:
        raise ConfigError(f"--bits 16 needs PNG or TIFF output, not --ext {ext}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: output path exists and is not a folder")
    files = _collect(inputs, recursive, exclude=out_dir)
    for f, _ in files:
        if not ext and f.suffix.lower().lstrip(".") not in FORMATS:
            raise ConfigError(f"{f}: no output format follows from '{f.suffix}'; give --ext png, jpg, webp or tif")
    dev = resolve_device(device)
    model, meta = load_model(model_path, expect_scale=scale, expect_arch="edsr", device=dev)
    s = int(meta["arch"]["scale"])

    jobs: list[tuple[Path, Path]] = []
    by_dest: dict[Path, Path] = {}
    for f, rel in files:
        dest = out_dir / rel / output_name(f, s, suffix, ext)
        if dest in by_dest:
            raise DataError(f"{by_dest[dest]} and {f} would both be written to {dest}; rename one of them")
        by_dest[dest] = f
        jobs.append((f, dest))
    inputs_resolved = {f.resolve() for f, _ in files}
    for dest, f in by_dest.items():
        if dest.resolve() in inputs_resolved:
            raise DataError(f"{dest} (the output for {f}) is itself an input and would be overwritten; "
                            "choose another --out or --suffix")
    for folder in sorted({d.parent for d in by_dest}):
        clean_stale_temps(folder)

    settings = json.dumps({"model": _sha256_file(Path(model_path)), "scale": s, "tile": tile, "overlap": overlap,
                           "device": dev.type, "amp": bool(amp if amp is not None else dev.type == "cuda"),
                           "bits": bits, "ext": ext, "quality": quality}, sort_keys=True)
    report = UpscaleReport(out_dir=out_dir)
    sizes = [_header_megapixels(f, s) for f, _ in jobs]
    bar = progress(total=round(sum(sizes), 3), desc="upscale", unit="MP", show=show,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} MP [{elapsed}<{remaining}, {rate_fmt}]")

    def on_tile(px: int) -> None:
        bar.update(px / 1e6)

    def shrink(mp: float) -> None:
        bar.total = max(bar.n, bar.total - mp)
        bar.refresh()

    def write(dest: Path, sr: np.ndarray, alpha, photo: Photo, fmt: str, tag: str) -> list[str]:
        try:
            return write_photo(dest, sr, alpha, gray=photo.gray, fmt=fmt, quality=quality, icc=photo.icc,
                               icc_srgb=photo.icc_srgb, exif=photo.exif, tag=tag, png_level=PNG_LEVEL)
        except OSError as exc:
            raise DataError(f"{dest}: cannot write ({exc.strerror or exc}); check the output folder") from None

    pending: deque[tuple[Path, Future]] = deque()

    def finish_write(keep: int = 0) -> None:
        """Wait for the oldest queued outputs until ``keep`` are left to the writer."""
        while len(pending) > keep:
            dest, fut = pending.popleft()
            for note in fut.result():
                warnings.warn(f"{dest}: {note}", ImageConversionWarning, stacklevel=3)
            report.written.append(dest)

    try:
        with ThreadPoolExecutor(1, thread_name_prefix="drtl-read", initializer=_lower_priority) as reader, \
                ThreadPoolExecutor(1, thread_name_prefix="drtl-write", initializer=_lower_priority) as writer:
            ahead = reader.submit(_prepare, *jobs[0], settings, bits) if jobs else None
            for i, (src, dest) in enumerate(jobs):
                prep = ahead.result()
                ahead = reader.submit(_prepare, *jobs[i + 1], settings, bits) if i + 1 < len(jobs) else None
                if prep.skipped or prep.refused:
                    (report.skipped.append(src) if prep.skipped else report.refused.append((src, prep.refused)))
                    shrink(sizes[i])
                    continue
                photo = prep.photo
                for loss in photo.losses:
                    warnings.warn(f"{src}: {loss}", ImageConversionWarning, stacklevel=2)
                sr = upscale_image(model, photo.rgb, tile=tile, overlap=overlap, device=dev, amp=amp, on_tile=on_tile)
                alpha = None if photo.alpha is None else resize_alpha(photo.alpha, (sr.shape[1], sr.shape[0]))
                fmt = fmt_forced or FORMATS[src.suffix.lower().lstrip(".")]
                pending.append((dest, writer.submit(write, dest, sr, alpha, photo, fmt, prep.tag)))
                # the next image is computed while at most PENDING_WRITES outputs wait for the writer
                # (waiting for the last one would leave a core idle while it is encoded)
                finish_write(keep=PENDING_WRITES)
                report.megapixels += sr.shape[0] * sr.shape[1] / 1e6
                del sr, alpha, photo, prep
            finish_write()
    finally:
        bar.close()
    report.seconds = time.perf_counter() - t0
    return report


# ----------------------------------------------------------------------------------------------
# CLI


def default_threads() -> int:
    """The cores this process may run on (its CPU affinity; ``os.cpu_count()`` where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cmd_upscale(args: argparse.Namespace) -> None:
    # --threads N, else every usable core (not OMP_NUM_THREADS or torch's physical-core guess),
    # set through the project's one thread rule
    apply_threads({"threads": getattr(args, "threads", None) or default_threads()})
    keep_freed_memory()  # this process upscales: tiles reuse their buffers instead of page-faulting them in
    report = upscale_paths(
        args.inputs,
        args.model,
        args.out,
        tile=args.tile or None,
        overlap=args.overlap,
        device=args.device,
        scale=args.scale,
        amp=args.amp,
        recursive=getattr(args, "recursive", False),
        suffix=getattr(args, "suffix", DEFAULT_SUFFIX),
        ext=getattr(args, "ext", None),
        quality=getattr(args, "quality", DEFAULT_QUALITY),
        bits=getattr(args, "bits", 8),
    )
    print(report.summary(), flush=True)
    if report.refused:
        n, (first, why) = len(report.refused), report.refused[0]
        more = f" (and {n - 1} more, listed above)" if n > 1 else ""
        raise DataError(f"{n} input(s) refused, the others written: {why}{more}")


__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_QUALITY",
    "DEFAULT_SUFFIX",
    "DEFAULT_TILE",
    "UpscaleReport",
    "check_tiling",
    "default_threads",
    "expand_inputs",
    "output_name",
    "tile_grid",
    "upscale_image",
    "upscale_paths",
]
