"""Apply a trained SR model to an image of any size: tiled inference with bounded memory.

Images are numpy HWC RGB uint8 (or uint16, 16-bit) in and out, of the same type; the model sees
NCHW float32 RGB in [0, 1] (``v / 255`` or ``v / 65535``). The files and the ``drtl upscale``
command are :mod:`drtl.upscale`.

Tiling (crop-the-context): the LR image is cut into a grid of near-equal core tiles of at most
``tile`` px per side. Each core is run with at least ``overlap`` px of real image context on every
side; every tile's context window has the same size (a window that would cross the image border
is moved inward, so it sees more real image, never padding that the whole-image pass would not
see: a border tile sees exactly the border the whole-image pass sees, i.e. the model's own zero
padding). One window size means one set of convolution kernels for the whole image. The context
is cropped off in HR space; the cores tile the output without overlap, so there is no blending
and no seam as long as ``overlap`` covers the model's receptive field. For ``edsr_tiny`` the
receptive field is 12 LR px, for ``edsr_baseline`` 36 (:func:`receptive_radius`); the overlap
used is capped there (more context would change nothing), so the default ``overlap=16`` runs
``edsr_tiny`` with 12 and gives output bit-identical to untiled inference (tested); beyond
``overlap`` the influence of the missing context decays fast. Memory is bounded by one tile's activations plus
the input and output arrays.

Inference runs under ``torch.inference_mode()``; on CUDA, bf16 autocast is on by default
(``amp=None``); on CPU it is always float32.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from drtl.errors import ConfigError, DataError
from drtl.modelio import resolve_device
from drtl.progress import progress

DEFAULT_TILE = 256
DEFAULT_OVERLAP = 16
# overlap <= 2 x tile: a tile's context is at most 5 tiles wide (<= 25x the work of its core)
MAX_OVERLAP_PER_TILE = 2


def keep_freed_memory() -> bool:
    """Let glibc serve and keep the tiles' large buffers in the heap (process-wide; for a process
    that upscales, e.g. ``drtl upscale``). True where it took effect.

    By default glibc maps every buffer over its mmap threshold afresh and unmaps it when freed:
    a tile allocates ~100 MB of activations, so each tile page-faulted its memory in again (1.5 M
    minor faults and ~0.7 s of system time per 1280x960 image at 2 threads, measured: ~20 % of
    the time, 2x on the first image). ``M_MMAP_THRESHOLD`` 32 MiB (glibc's maximum; a tile's
    buffers are 1-15 MB) and ``M_TRIM_THRESHOLD`` 1 GiB keep freed buffers for the next tile; the
    peak memory is unchanged (benchmarks/bench_upscale.py)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


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


def _windows(length: int, tile: int | None, overlap: int) -> list[tuple[int, int, int, int]]:
    """[(core0, core1, ctx0, ctx1)] along one axis: every context window has the same length
    (the longest core plus 2 x ``overlap``, at most ``length``), moved inside [0, length)."""
    spans = _spans(length, tile)
    size = min(length, max(b - a for a, b in spans) + 2 * overlap)
    out = []
    for a, b in spans:
        c0 = min(max(0, a - overlap), length - size)
        out.append((a, b, c0, c0 + size))
    return out


def tile_grid(h: int, w: int, tile: int | None, overlap: int) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """[(core (y0, y1, x0, x1), context (cy0, cy1, cx0, cx1))] in LR pixels, row-major. Every
    context holds its core plus at least ``overlap`` px on each side (less only at the image
    border), and all contexts have the same size."""
    cols = _windows(w, tile, overlap)
    return [((y0, y1, x0, x1), (cy0, cy1, cx0, cx1))
            for y0, y1, cy0, cy1 in _windows(h, tile, overlap) for x0, x1, cx0, cx1 in cols]


def receptive_radius(model: nn.Module) -> int | None:
    """LR pixels beyond which an EDSR output pixel cannot see (None for other models): one per
    3x3 conv at LR resolution, one per conv at a higher resolution (a sub-pixel neighbour can lie
    in the next LR pixel), and 2 for the bicubic skip's 4 taps. Context beyond it changes nothing,
    so a tile overlap of at least this much gives exactly the untiled output."""
    from drtl.archs.edsr import EDSR

    if type(model) is not EDSR:
        return None
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if any(c.kernel_size != (3, 3) or c.dilation != (1, 1) for c in convs):
        return None
    stages = sum(isinstance(m, nn.PixelShuffle) for m in model.upsample)
    lr_convs = 2 + 2 * len(model.body) + 1  # conv_first, the blocks, conv_after_body, the first upsampling conv
    return max(lr_convs + stages, 2 if model.global_residual else 0)  # + later upsampling convs and conv_last


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




def _last_stage_weights(conv_last: nn.Conv2d, r: int, img_range: float, add_mean: torch.Tensor | None):
    """``conv_last`` (3x3, F -> C, on the map ``pixel_shuffle(z, r)``) as one 3x3 conv on ``z``
    itself (r*r*F -> r*r*C channels, output channel ``(a * r + b) * C + c`` = output colour ``c`` at
    sub-pixel ``(a, b)``), divided by ``img_range`` and with ``add_mean`` folded into its bias.

    Exact rewrite: HR pixel ``(r*i + a)``'s neighbour ``r*i + a + k - 1`` (k = 0, 1, 2) is ``z``'s
    row ``i + (a + k - 1) // r`` in phase ``(a + k - 1) % r``, and zero padding of the HR map is zero
    padding of ``z``. The output is then shuffled back to HR with a view, not a convolution at HR
    resolution with 3 output channels (slow in oneDNN) after a copy of the whole shuffled map."""
    w, b = conv_last.weight.detach(), conv_last.bias.detach()
    c_out, f = w.shape[:2]
    wp = torch.zeros(r, r, c_out, f, r, r, 3, 3, dtype=w.dtype)  # out (a, b, c), in (f, a', b'), kernel
    for a in range(r):
        for ky in range(3):
            dy, ap = divmod(a + ky - 1, r)
            for bb in range(r):
                for kx in range(3):
                    dx, bp = divmod(bb + kx - 1, r)
                    wp[a, bb, :, :, ap, bp, dy + 1, dx + 1] += w[:, :, ky, kx]
    wp = wp.reshape(r * r * c_out, f * r * r, 3, 3)
    bias = b.repeat(r * r)
    if img_range != 1.0:
        wp, bias = wp / img_range, bias / img_range
    if add_mean is not None:
        bias = bias + add_mean.reshape(-1).to(bias.dtype).repeat(r * r)
    return wp.contiguous(), bias.contiguous()


def _composite_weights(up: nn.Conv2d, w_last: torch.Tensor, b_last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The last upsampling conv ``up`` (3x3, F -> r*r*F) followed by the rewritten ``conv_last``
    (3x3, r*r*F -> r*r*C, :func:`_last_stage_weights`) as one 5x5 conv F -> r*r*C: nothing
    non-linear lies between them, so their kernels compose (computed in float64). Exact away from
    the border; at the border the two-conv chain pads the intermediate map with zeros, which the
    composite cannot, so the 1-px ring there is computed by the chain."""
    wu, bu = up.weight.detach().double(), up.bias.detach().double()
    wl = w_last.double()
    wc = torch.zeros(wl.shape[0], wu.shape[1], 5, 5, dtype=torch.float64)
    for dy in range(3):
        for dx in range(3):
            for py in range(3):
                for px in range(3):
                    wc[:, :, dy + py, dx + px] += wl[:, :, dy, dx] @ wu[:, :, py, px]
    bc = b_last.double() + wl.sum(dim=(2, 3)) @ bu
    return wc.float().contiguous(), bc.float().contiguous()


def _fused_cpu_forward(model: nn.Module):
    """A forward for ``model`` on CPU in float32 with fewer memory passes, or None when it does not apply.

    For an :class:`drtl.archs.edsr.EDSR` whose convolutions are all 3x3 / stride 1 / padding 1 /
    groups 1 with a bias: channels_last activations and oneDNN convolutions with the next
    element-wise op fused in (``torch.ops.mkldnn._convolution_pointwise``: ReLU after the first conv
    of each residual block; the residual add after the second and the long skip after
    ``conv_after_body`` accumulated in place into the addend by oneDNN's sum post-op). Every ``PixelShuffle(r)`` but the last runs its conv as r*r phase convs
    written into the shuffled channels_last map (narrow convs run faster than one wide one); the
    last one is never materialised: ``conv_last`` is rewritten to run on the unshuffled map
    (:func:`_last_stage_weights`) and composed with the last upsampling conv into one 5x5 conv
    (:func:`_composite_weights`: 19 kFLOP per LR px instead of 101 k for the two; the 1-px ring
    at the tile's edges comes from the two convs, phase by phase), and the result is shuffled into
    HR while the bicubic skip (``F.interpolate``, as ``EDSR.forward``) is added. The model's
    arithmetic is the same up to float rounding: the composite sums in another order. The ops are ``EDSR.forward``'s
    in the same order, but oneDNN's channels_last kernels and the rewritten ``conv_last`` round
    differently from the NCHW forward in the last bit (about 1e-7), which moves a uint8 output
    level on a few pixels per million (counted in benchmarks/bench_upscale.py). Every tile runs the
    same kernels, so tiled output stays bit-identical to untiled. The function takes the LR tile as
    an NCHW float tensor (any strides) and ``edges`` (top, bottom, left, right: which sides are the
    image's border, default all; the others are cropped off by the caller) and returns an
    NCHW-shaped tensor with channels_last memory.
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
    if not stages or len(ups) % 2 or not all(isinstance(c, nn.Conv2d) and isinstance(p, nn.PixelShuffle) for c, p in stages):
        return None
    # each conv before a PixelShuffle(r) as r*r convs, one per sub-pixel phase (output channels
    # k::r*r): narrow convs run faster than one wide one here (32->128 takes ~1.5x four 32->32)
    phases = [([(c.weight[k::r * r].contiguous(), c.bias[k::r * r].contiguous()) for k in range(r * r)], r)
              for c, r in ((c, p.upscale_factor) for c, p in stages)]
    *phases, (last_parts, r_last) = phases
    scale, img_range, glob_res = model.scale, model.img_range, model.global_residual
    w_last, b_last = _last_stage_weights(model.conv_last, r_last, img_range, None if glob_res else model.mean)
    # conv_last's rewrite split by input phase k (input channels k::r*r): the sum over the phases
    # is accumulated by oneDNN's add post-op, each phase map used right after it is computed
    w_groups = [w_last[:, k::r_last * r_last].contiguous() for k in range(r_last * r_last)]
    zero_bias = torch.zeros_like(b_last)
    w_comp, b_comp = _composite_weights(stages[-1][0], w_last, b_last)
    binary = op.binary
    binary_into = torch.ops.mkldnn._convolution_pointwise_.binary  # oneDNN's sum post-op, in place
    one = [1, 1]  # padding, stride, dilation

    def conv(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, post: str = "none") -> torch.Tensor:
        return op(x, w, b, one, one, one, 1, post, [], "")

    def conv_add(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """(conv(x) + bias) + other, written into ``other`` (oneDNN accumulates the conv into it:
        ~1.5x faster than the out-of-place binary add post-op here, the same values)."""
        if other is x:
            return binary(x, other, w, b, one, one, one, 1, "add", None, None, [], None)
        return binary_into(other, x, w, b, one, one, one, 1, "add", None, None, [], None)

    def conv_shuffle(parts: list, x: torch.Tensor, r: int) -> torch.Tensor:
        """pixel_shuffle(conv(x), r) as r*r phase convs (``parts``: their weights and biases) written
        into the channels_last output."""
        n, _, h, w = x.shape
        out = torch.empty(n, h, r, w, r, parts[0][0].shape[0], dtype=x.dtype)  # NHWC of the shuffled map
        for k, (wk, bk) in enumerate(parts):
            out[:, :, k // r, :, k % r, :] = conv(wk, bk, x).permute(0, 2, 3, 1)
        return out.view(n, h * r, w * r, -1).permute(0, 3, 1, 2)  # NCHW shape, channels_last memory

    cl = torch.channels_last

    def last_exact(u: torch.Tensor) -> torch.Tensor:
        """conv_last'(upsampling conv(u)), phase by phase, z zero-padded as in EDSR.forward."""
        y = None  # (n, r*r*3, hh, ww) channels_last: conv_last's output, not yet shuffled
        for (wk, bk), wg in zip(last_parts, w_groups):
            zk = conv(wk, bk, u)
            y = conv(wg, b_last, zk) if y is None else conv_add(wg, zero_bias, zk, y)
        return y

    def last_stage(u: torch.Tensor, edges: tuple[bool, bool, bool, bool]) -> torch.Tensor:
        """The same as :func:`last_exact`: the composite 5x5 conv inside, the 1-px ring at the
        ``edges`` (top, bottom, left, right; where the composite would see the upsampling conv's
        output beyond the border instead of zeros) from :func:`last_exact` on 3-px strips."""
        h, w = u.shape[-2:]
        if h < 6 or w < 6:
            return last_exact(u)
        y = op(u, w_comp, b_comp, [2, 2], one, one, 1, "none", [], "")
        top, bottom, left, right = edges
        if top:
            y[:, :, :1] = last_exact(u[:, :, :3])[:, :, :1]
        if bottom:
            y[:, :, -1:] = last_exact(u[:, :, -3:])[:, :, -1:]
        if left:
            y[:, :, :, :1] = last_exact(u[:, :, :, :3].contiguous(memory_format=cl))[:, :, :, :1]
        if right:
            y[:, :, :, -1:] = last_exact(u[:, :, :, -3:].contiguous(memory_format=cl))[:, :, :, -1:]
        return y

    def forward(x: torch.Tensor, edges: tuple[bool, bool, bool, bool] = (True, True, True, True)) -> torch.Tensor:
        xc = x.contiguous(memory_format=cl)
        if xc.shape[0] == 1 and xc.stride(0) != xc.numel():
            # a batch of one whose stride is not H*W*C (e.g. a permuted HWC image, unsqueezed):
            # torch takes such strides for NCHW, and oneDNN would run every conv in NCHW with a
            # reorder in and out of its blocked layout (1.3x slower per tile); the stride of a
            # size-1 dimension is never used, so this is the same tensor, read as channels_last
            xc = xc.as_strided(xc.shape, (xc.numel(), *xc.stride()[1:]))
        mean = model.mean.to(dtype=x.dtype)
        feat = conv(model.conv_first.weight, model.conv_first.bias, (xc - mean) * img_range)
        h = feat
        for b in model.body:
            t = conv(b.conv1.weight, b.conv1.bias, h, "relu")
            if b.res_scale == 1.0:  # x * 1.0 == x exactly: the multiply is skipped
                h = conv_add(b.conv2.weight, b.conv2.bias, t, feat.clone() if h is feat else h)  # feat: long skip
            else:
                h = h + conv(b.conv2.weight, b.conv2.bias, t) * b.res_scale
        u = conv_add(model.conv_after_body.weight, model.conv_after_body.bias, h, feat)
        del h, feat
        for parts, r in phases:
            u = conv_shuffle(parts, u, r)
        y = last_stage(u, edges)
        del u
        n, _, hh, ww = y.shape
        r = r_last
        hr = torch.empty(n, hh, r, ww, r, 3, dtype=y.dtype)  # NHWC memory of the HR output
        yv = y.permute(0, 2, 3, 1).view(n, hh, ww, r, r, 3).permute(0, 1, 3, 2, 4, 5)
        if glob_res:
            # NCHW input: the bicubic kernel is ~3x faster on it than on channels_last (same values)
            bic = F.interpolate(x.contiguous(), scale_factor=scale, mode="bicubic", align_corners=False)
            hr.copy_(bic.permute(0, 2, 3, 1).view(n, hh, r, ww, r, 3))
            hr.add_(yv)  # conv_last(...) / img_range + bicubic, as EDSR.forward (the add commutes exactly)
        else:
            hr.copy_(yv)
        return hr.view(n, hh * r, ww * r, 3).permute(0, 3, 1, 2)

    return forward


def upscale_image(
    model: nn.Module,
    img: np.ndarray,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    device: str | torch.device = "cpu",
    amp: bool | None = None,
    on_tile: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Super-resolve one HWC RGB image (uint8, or uint16 for 16 bits) with ``model`` -> HWC RGB of
    the same type, ``scale`` times larger.

    ``tile``: core tile side in LR px (None or 0: the whole image at once). ``overlap``: context px
    added on every side of each tile (clipped at the image border). ``device``: 'cpu', 'cuda',
    'cuda:N' or 'auto'; the model is moved there (in place). ``amp``: bf16 autocast; None = on for
    CUDA, off for CPU; True on CPU is an error (bf16 autocast is CUDA only here). ``on_tile``:
    called with the number of output pixels after each tile (a progress bar); without it a bar of
    tiles shows when there are several.

    On CPU an EDSR runs through :func:`_fused_cpu_forward` (channels_last, oneDNN convolutions
    with fused ReLU / adds); any other model, or another device, runs ``model(x)``. Either way the
    tiled output is bit-identical to the untiled one as long as ``overlap`` covers the receptive
    field (every tile runs the same kernels on the same values).
    """
    if tile == 0:
        tile = None
    check_tiling(tile, overlap)
    if (not isinstance(img, np.ndarray) or img.dtype not in (np.uint8, np.uint16) or img.ndim != 3
            or img.shape[2] != 3):
        desc = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise DataError(f"upscale_image expects an HWC RGB uint8 (or uint16) image, got {desc}; "
                        "read files with drtl.photo.read_photo or drtl.io.read_image")
    h, w = img.shape[:2]
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
    radius = receptive_radius(model)
    if tile is not None and radius is not None:
        overlap = min(overlap, radius)  # context beyond what the model sees is work with no effect

    top = 255.0 if img.dtype == np.uint8 else 65535.0
    out = np.empty((h * scale, w * scale, 3), dtype=img.dtype)
    out_t = torch.from_numpy(out)
    grid = tile_grid(h, w, tile, overlap)
    bar = progress(grid, total=len(grid), desc="tiles") if len(grid) > 1 and on_tile is None else grid
    arr = img if img.flags.c_contiguous and img.flags.writeable else np.array(img, order="C")
    src = torch.from_numpy(arr)  # HWC, shared with the array; the tiles are views of it
    try:
        with torch.inference_mode():
            for (y0, y1, x0, x1), (cy0, cy1, cx0, cx1) in bar:
                # NCHW view of HWC memory (channels_last); .float() keeps that layout, one copy
                x = src[cy0:cy1, cx0:cx1].permute(2, 0, 1).unsqueeze(0).to(dev).float().div_(top)
                try:
                    if fused is not None:
                        # the edge ring is exact where the core reaches the tile's edge (the image
                        # border); elsewhere it lies in the overlap, cropped off below
                        y = fused(x, (y0 == cy0, y1 == cy1, x0 == cx0, x1 == cx1))
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
                # round(clamp(v, 0, 1) * top) == clamp(round(v * top), 0, top): on the whole dense tile
                # (fast element-wise loops), then the core copied out (whole numbers: exact)
                y = y.float().mul_(top).round_().clamp_(0.0, top)
                core = y[0, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale].permute(1, 2, 0)
                out_t[y0 * scale : y1 * scale, x0 * scale : x1 * scale].copy_(core)
                del x, y, core
                if on_tile is not None:
                    on_tile((y1 - y0) * (x1 - x0) * scale * scale)
    finally:
        if was_training:
            model.train()
        if bar is not grid:
            bar.close()
    return out


__all__ = ["DEFAULT_OVERLAP", "DEFAULT_TILE", "check_tiling", "keep_freed_memory", "receptive_radius", "tile_grid", "upscale_image"]
