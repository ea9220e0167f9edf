"""Apply a trained SR model to images of any size: tiled inference with bounded memory, and the
``drtl upscale`` command.

Images are numpy HWC RGB uint8 in and out; the model sees NCHW float32 RGB in [0, 1].

Tiling (crop-the-context): the LR image is cut into a grid of near-equal core tiles of at most
``tile`` px per side. Each core is run with ``overlap`` px of real image context on every side
(clipped at the image border: a border tile sees exactly the border the whole-image pass sees,
i.e. the model's own zero padding, so nothing is reflected or invented), and the context is
cropped off in HR space; the cores tile the output without overlap, so there is no blending and
no seam as long as ``overlap`` covers the model's receptive field. For ``edsr_tiny`` the
receptive field is about 12 LR px, for ``edsr_baseline`` about 36; beyond ``overlap`` the
influence of the missing context decays fast, and the default ``overlap=16`` stays within 1/255 of
untiled inference for the tiny model (tested). Memory is bounded by one tile's activations plus
the uint8 input and output arrays.

Inference runs under ``torch.inference_mode()``; on CUDA, bf16 autocast is on by default
(``amp=None``); on CPU it is always float32.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from drtl.config import apply_threads
from drtl.errors import ConfigError, DataError
from drtl.io import IMAGE_EXTS, clean_stale_temps, image_info, read_image, write_image
from drtl.modelio import load_model, resolve_device
from drtl.progress import progress

DEFAULT_TILE = 256
DEFAULT_OVERLAP = 16
# overlap <= 2 x tile: a tile's context is at most 5 tiles wide (<= 25x the work of its core)
MAX_OVERLAP_PER_TILE = 2
_GLOB_CHARS = set("*?[")


# ----------------------------------------------------------------------------------------------
# core


def _model_scale(model: nn.Module) -> int:
    cfg = getattr(model, "arch_cfg", None) or {}
    scale = cfg.get("scale", getattr(model, "scale", None))
    if not isinstance(scale, int) or scale < 1:
        raise ConfigError(f"{type(model).__name__} is not an SR model with an integer scale (arch_cfg {cfg!r})")
    return scale


def _spans(length: int, tile: int | None) -> list[tuple[int, int]]:
    """Split [0, length) into ceil(length / tile) near-equal consecutive spans."""
    n = 1 if tile is None or tile >= length else math.ceil(length / tile)
    edges = [i * length // n for i in range(n + 1)]
    return [(edges[i], edges[i + 1]) for i in range(n)]


def tile_grid(h: int, w: int, tile: int | None, overlap: int) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """[(core (y0, y1, x0, x1), context (cy0, cy1, cx0, cx1))] in LR pixels, row-major."""
    out = []
    for y0, y1 in _spans(h, tile):
        for x0, x1 in _spans(w, tile):
            ctx = (max(0, y0 - overlap), min(h, y1 + overlap), max(0, x0 - overlap), min(w, x1 + overlap))
            out.append(((y0, y1, x0, x1), ctx))
    return out


def check_tiling(tile: int | None, overlap: int) -> None:
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1):
        raise ConfigError(f"tile must be a positive number of pixels (or None / 0 for no tiling), got {tile!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or overlap < 0:
        raise ConfigError(f"overlap must be an integer >= 0, got {overlap!r}")
    if tile is not None and overlap > MAX_OVERLAP_PER_TILE * tile:
        raise ConfigError(
            f"tile {tile} with overlap {overlap}: an overlap over {MAX_OVERLAP_PER_TILE}x the tile recomputes every "
            f"pixel up to {((tile + 2 * overlap) / tile) ** 2:.0f} times; use a tile >= "
            f"{-(-overlap // MAX_OVERLAP_PER_TILE)} (or 0: the whole image at once) or a smaller overlap")


def _fused_cpu_forward(model: nn.Module):
    """A forward for ``model`` on CPU in float32 with fewer memory passes, or None when it does not apply.

    For an :class:`drtl.archs.edsr.EDSR` whose convolutions are all 3x3 / stride 1 / padding 1 /
    groups 1 with a bias: channels_last activations and oneDNN convolutions with the next
    element-wise op fused in (``torch.ops.mkldnn._convolution_pointwise``: ReLU after the first conv
    of each residual block, the residual add after the second, the long skip after
    ``conv_after_body``, the bicubic skip after ``conv_last``), and each conv before a
    ``PixelShuffle(r)`` split into r*r phase convs written into the shuffled channels_last map (the
    same sums per output value, faster than one wide conv plus ``pixel_shuffle``). Every op is one of
    ``EDSR.forward``, in the same order (a multiply or divide by 1.0 is skipped: it is exact), but
    oneDNN's channels_last kernels round differently from the NCHW ones in the last bit (about
    1e-7; likewise ``model.to(memory_format=torch.channels_last)``), which moves a uint8 output
    level on a few pixels per million (counted in benchmarks/bench_upscale.py). Every tile runs the
    same kernels, so tiled output stays bit-identical to untiled. The function takes the LR tile as an
    NCHW float tensor (any strides) and returns a channels_last tensor.
    """
    from drtl.archs.edsr import EDSR, ResidualBlockNoBN

    op = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
    if type(model) is not EDSR or op is None or not torch.backends.mkldnn.is_available():
        return None
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for c in convs:
        if (c.kernel_size != (3, 3) or c.stride != (1, 1) or c.padding != (1, 1) or c.dilation != (1, 1)
                or c.groups != 1 or c.bias is None or c.padding_mode != "zeros"
                or c.weight.dtype != torch.float32 or c.weight.device.type != "cpu"):
            return None
    if not all(type(b) is ResidualBlockNoBN for b in model.body):
        return None
    ups = list(model.upsample)
    stages = list(zip(ups[0::2], ups[1::2]))  # (conv, PixelShuffle) pairs, as EDSR's Upsample makes them
    if len(ups) % 2 or not all(isinstance(c, nn.Conv2d) and isinstance(p, nn.PixelShuffle) for c, p in stages):
        return None
    # each conv before a PixelShuffle(r) as r*r convs, one per sub-pixel phase (output channels k::r*r):
    # narrow convs run faster than one wide one here (4 x 32->32 in 32 ms against 32->128 in 49 ms)
    phases = [([(c.weight[k::r * r].contiguous(), c.bias[k::r * r].contiguous()) for k in range(r * r)], r)
              for c, r in ((c, p.upscale_factor) for c, p in stages)]
    binary = op.binary
    one = [1, 1]  # padding, stride, dilation

    def conv(c: nn.Conv2d, x: torch.Tensor, post: str = "none") -> torch.Tensor:
        return op(x, c.weight, c.bias, one, one, one, 1, post, [], "")

    def conv_add(c: nn.Conv2d, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        # (conv(x) + bias) + other, the add done by oneDNN as a post-op on the conv's output
        return binary(x, other, c.weight, c.bias, one, one, one, 1, "add", None, None, [], None)

    def conv_shuffle(parts: list, x: torch.Tensor, r: int) -> torch.Tensor:
        """pixel_shuffle(conv(x), r) as r*r phase convs (``parts``: their weights and biases) written
        into the channels_last output."""
        n, _, h, w = x.shape
        out = torch.empty(n, h, r, w, r, parts[0][0].shape[0], dtype=x.dtype)  # NHWC of the shuffled map
        for k, (wk, bk) in enumerate(parts):
            out[:, :, k // r, :, k % r, :] = op(x, wk, bk, one, one, one, 1, "none", [], "").permute(0, 2, 3, 1)
        return out.view(n, h * r, w * r, -1).permute(0, 3, 1, 2)  # NCHW shape, channels_last memory

    cl = torch.channels_last
    scale, img_range = model.scale, model.img_range

    def forward(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=cl)
        mean = model.mean.to(dtype=x.dtype)
        feat = conv(model.conv_first, (x - mean) * img_range)
        h = feat
        for b in model.body:
            t = conv(b.conv1, h, "relu")
            if b.res_scale == 1.0:  # x * 1.0 == x exactly: the multiply is skipped
                h = conv_add(b.conv2, t, h)
            else:
                h = h + conv(b.conv2, t) * b.res_scale
        u = conv_add(model.conv_after_body, h, feat)
        del h, feat
        for parts, r in phases:
            u = conv_shuffle(parts, u, r)
        if model.global_residual:
            bic = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).contiguous(memory_format=cl)
            if img_range == 1.0:  # out / 1.0 == out exactly
                return conv_add(model.conv_last, u, bic)
            return conv(model.conv_last, u) / img_range + bic
        return conv(model.conv_last, u) / img_range + mean

    return forward


def upscale_image(
    model: nn.Module,
    img_uint8: np.ndarray,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    device: str | torch.device = "cpu",
    amp: bool | None = None,
) -> np.ndarray:
    """Super-resolve one HWC RGB uint8 image with ``model`` -> HWC RGB uint8, ``scale`` times larger.

    ``tile``: core tile side in LR px (None or 0: the whole image at once). ``overlap``: context px
    added on every side of each tile (clipped at the image border). ``device``: 'cpu', 'cuda',
    'cuda:N' or 'auto'; the model is moved there (in place). ``amp``: bf16 autocast; None = on for
    CUDA, off for CPU; True on CPU is an error (bf16 autocast is CUDA only here).

    On CPU an EDSR runs through :func:`_fused_cpu_forward` (channels_last, oneDNN convolutions
    with fused ReLU / adds); any other model, or another device, runs ``model(x)``. Either way the
    tiled output is bit-identical to the untiled one as long as ``overlap`` covers the receptive
    field (every tile runs the same kernels on the same values).
    """
    if tile == 0:
        tile = None
    check_tiling(tile, overlap)
    if not isinstance(img_uint8, np.ndarray) or img_uint8.dtype != np.uint8 or img_uint8.ndim != 3 or img_uint8.shape[2] != 3:
        desc = f"{img_uint8.dtype} {img_uint8.shape}" if isinstance(img_uint8, np.ndarray) else type(img_uint8).__name__
        raise DataError(f"upscale_image expects an HWC RGB uint8 image, got {desc}; read files with drtl.io.read_image")
    h, w = img_uint8.shape[:2]
    if h < 1 or w < 1:
        raise DataError(f"upscale_image got an empty image ({h}x{w})")
    scale = _model_scale(model)
    dev = resolve_device(device)
    if amp is None:
        amp = dev.type == "cuda"
    elif amp and dev.type != "cuda":
        raise ConfigError("bf16 autocast (amp=True) is only used on CUDA; run with amp=None/False on CPU")

    params = next(iter(model.parameters()), None)
    if params is not None and params.device != dev:
        model.to(dev)
    was_training = model.training
    model.eval()
    fused = _fused_cpu_forward(model) if dev.type == "cpu" and not amp else None

    out = np.empty((h * scale, w * scale, 3), dtype=np.uint8)
    grid = tile_grid(h, w, tile, overlap)
    bar = progress(grid, total=len(grid), desc="tiles") if len(grid) > 1 else grid
    arr = img_uint8 if img_uint8.flags.c_contiguous and img_uint8.flags.writeable else np.array(img_uint8, order="C")
    src = torch.from_numpy(arr)  # HWC uint8, shared with the array; the tiles are views of it
    try:
        with torch.inference_mode():
            for (y0, y1, x0, x1), (cy0, cy1, cx0, cx1) in bar:
                # NCHW view of HWC memory (channels_last); .float() keeps that layout, one copy
                x = src[cy0:cy1, cx0:cx1].permute(2, 0, 1).unsqueeze(0).to(dev).float().div_(255.0)
                try:
                    if fused is not None:
                        y = fused(x)
                    elif amp:
                        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                            y = model(x.contiguous())
                    else:
                        y = model(x.contiguous())
                except torch.OutOfMemoryError:
                    raise ConfigError(
                        f"out of {dev.type.upper()} memory on a {cy1 - cy0}x{cx1 - cx0} LR tile; "
                        f"use a smaller --tile (now {tile or 'none'})"
                    ) from None
                expect = (1, 3, (cy1 - cy0) * scale, (cx1 - cx0) * scale)
                if tuple(y.shape) != expect:
                    raise ConfigError(f"model output {tuple(y.shape)} for input {tuple(x.shape)} is not x{scale} ({expect})")
                oy, ox = (y0 - cy0) * scale, (x0 - cx0) * scale
                core = y[0, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale]
                core = core.float().clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
                out[y0 * scale : y1 * scale, x0 * scale : x1 * scale] = core.permute(1, 2, 0).cpu().numpy()
                del x, y, core
    finally:
        if was_training:
            model.train()
        if bar is not grid:
            bar.close()
    return out


# ----------------------------------------------------------------------------------------------
# files


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS


def _not_image(path: Path) -> DataError:
    return DataError(f"{path}: not an image file (extension '{path.suffix or 'none'}'; expected one of {', '.join(IMAGE_EXTS)})")


def expand_inputs(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files as given, folders -> their image files (by extension, non-recursive, sorted), globs ->
    their matches (sorted; ``**`` recurses). Duplicates are dropped; nothing is skipped silently:
    a named or matched file that is not an image, a missing path, an empty folder or a glob that
    matches nothing is a :class:`DataError`."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not inputs:
        raise DataError("no input images given")
    files: list[Path] = []
    for item in inputs:
        s = os.fspath(item)
        p = Path(s)
        if p.is_dir():
            # hidden files (temporaries of an interrupted write among them) are not inputs
            found = sorted((c for c in p.iterdir() if c.is_file() and _is_image(c) and not c.name.startswith(".")),
                           key=lambda c: c.name)
            if not found:
                raise DataError(f"{p}: folder has no image files ({', '.join(IMAGE_EXTS)})")
            files += found
        elif p.is_file():
            if not _is_image(p):
                raise _not_image(p)
            files.append(p)
        elif _GLOB_CHARS & set(s):
            matches = sorted(Path(m) for m in glob.glob(s, recursive=True))
            matches = [m for m in matches if not m.is_dir()]
            if not matches:
                raise DataError(f"{s}: no file matches this pattern")
            for m in matches:
                if not _is_image(m):
                    raise _not_image(m)
            files += matches
        else:
            raise DataError(f"{p}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def output_name(path: Path, scale: int) -> str:
    return f"{path.stem}_x{scale}.png"


def upscale_paths(
    inputs: list[str | os.PathLike],
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    device: str = "cpu",
    scale: int | None = None,
    amp: bool | None = None,
) -> list[Path]:
    """Upscale image files (files, folders, globs) with the model file ``model_path`` into
    ``out_dir/<stem>_x<scale>.png`` (8-bit RGB PNG, written atomically). Returns the written paths
    in input order. ``scale``, when given, must match the model's. Input conversions (gray, alpha,
    16-bit) follow :func:`drtl.io.read_image` and warn. Every problem is a one-line DRTLError; an
    unreadable input stops the run naming it, leaving no partial output for that file. Temporaries
    left in ``out_dir`` by an earlier run that was killed are removed first."""
    if tile == 0:
        tile = None
    check_tiling(tile, overlap)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: output path exists and is not a folder")
    clean_stale_temps(out_dir)
    files = expand_inputs(inputs)
    dev = resolve_device(device)
    model, meta = load_model(model_path, expect_scale=scale, expect_arch="edsr", device=dev)
    s = int(meta["arch"]["scale"])

    targets: dict[str, Path] = {}
    for f in files:
        name = output_name(f, s)
        if name in targets:
            raise DataError(f"{targets[name]} and {f} would both be written to {out_dir / name}; rename one of them")
        targets[name] = f
    inputs_resolved = {f.resolve() for f in files}
    for name, f in targets.items():
        if (out_dir / name).resolve() in inputs_resolved:
            raise DataError(f"{out_dir / name} (the output for {f}) is itself an input and would be overwritten; choose another --out")
    for f in files:  # cheap header check first: fail before spending time on the others
        image_info(f)

    written: list[Path] = []
    for f in progress(files, total=len(files), desc="upscale"):
        img = read_image(f)
        sr = upscale_image(model, img, tile=tile, overlap=overlap, device=dev, amp=amp)
        dest = out_dir / output_name(f, s)
        write_image(dest, sr)
        written.append(dest)
    return written


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
    written = upscale_paths(
        args.inputs,
        args.model,
        args.out,
        tile=args.tile or None,
        overlap=args.overlap,
        device=args.device,
        scale=args.scale,
        amp=args.amp,
    )
    print(f"upscaled {len(written)} image(s) with {args.model} into {args.out}")


__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE",
    "check_tiling",
    "default_threads",
    "expand_inputs",
    "output_name",
    "tile_grid",
    "upscale_image",
    "upscale_paths",
]
