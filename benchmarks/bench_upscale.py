"""`drtl upscale` speed and memory on CPU: tiled EDSR inference vs bicubic, and peak RSS.

Reports in one run (on ``--threads`` threads, default 2):

(a) throughput of :func:`drtl.upscale.upscale_image` with the default tile and overlap (16),
    output megapixels per second, for the CPU default model ``edsr_tiny`` x2 (random init: speed does
    not depend on the weights) on ``--images`` LR images of ``--lr`` (default 3 x 640x480), the
    fastest of ``--repeats`` timed runs per image after one warm-up (the variants are interleaved,
    so load from other work hits them alike); next to the same images upscaled untiled, with
    MATLAB-bicubic :func:`drtl.degradations.resize.imresize`, with Pillow's
    ``Image.resize(BICUBIC)`` and with the **reference**: a plain ``nn.Sequential`` of 3x3
    convolutions (3 -> F, n x F -> F, F -> k at LR resolution, F = the model's ``num_feat``)
    whose FLOPs per output pixel equal the model's (counted from the model's own Conv2d layers
    with forward hooks), run channels_last on the same LR images cut into blocks of the tile size
    (no overlap: exactly that much work, in cache-sized pieces). ``core / reference`` is the share
    of what this CPU's convolutions allow that the upscale core reaches;
(b) peak resident memory (VmHWM, i.e. ``ru_maxrss`` of a fresh subprocess per mode; Linux's
    ``ru_maxrss`` would include the parent's peak, inherited across fork+exec) and wall time for one
    ``--big`` LR image (default 2000x1500 -> 4000x3000 output) with tiling (tile 256) and without;
    the untiled run is skipped (and said so) when its rough estimate exceeds half of MemAvailable;
    and the peak RSS of the whole ``drtl upscale`` command on that image as a PNG file.

(c) ``drtl upscale`` end to end (a fresh ``python -m drtl.cli upscale`` process: imports, model
    load, PNG read and write included: process start to the last output's mtime; the exit, after
    the interpreter's teardown, is shown too) on
    ``--cli-images`` PNGs of ``--cli-lr`` (default 4 x 1280x960) with ``--threads``; the fastest of
    ``--cli-runs`` runs (0 images: skipped). In the same run, on the same images: the reference
    stack on ``--cli-ref-tile`` tiles (default 240x320, i.e. 4x4 tiles of 1280x960, run
    channels_last; its output MP/s is the yardstick: ``end to end / reference``), and where the
    end-to-end time goes: a process that only imports ``drtl.upscale`` (start-up), Pillow decoding
    the inputs, encoding the outputs as the command does (PNG level ``drtl.upscale.PNG_LEVEL``),
    and :func:`upscale_image` in-process. ``--before DIR`` also times ``drtl upscale`` of another
    checkout (e.g. ``git archive <commit> | tar -x -C DIR``), interleaved with this one.

The process calls :func:`drtl.upscale.keep_freed_memory` first, as ``drtl upscale`` does (tiles
reuse their buffers instead of page-faulting them in). The core's output is also checked: tiled against untiled (bit-identical expected) and untiled
against the model's plain NCHW forward (uint8 levels that differ, from last-bit rounding).

The LR images are scikit-image's bundled photos (no download) resized to the LR size; synthetic
images are used if they are unavailable. Output: a Markdown table; ``--json PATH`` also writes the
numbers.

    python benchmarks/bench_upscale.py --threads 2 --repeats 3 --json bench_upscale.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def _parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch / BLAS / OpenMP threads (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per image (the fastest counts)")
    ap.add_argument("--images", type=int, default=3, help="number of LR images for (a)")
    ap.add_argument("--lr", type=_size, default=(640, 480), help="LR size WxH for (a) (default 640x480)")
    ap.add_argument("--big", type=_size, default=(2000, 1500), help="LR size WxH for (b) (default 2000x1500)")
    ap.add_argument("--tile", type=int, default=None, help="tile for the tiled runs (default drtl.upscale.DEFAULT_TILE)")
    ap.add_argument("--overlap", type=int, default=16)
    ap.add_argument("--arch", default="edsr_tiny", help="arch name (default edsr_tiny, the CPU default)")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--no-untiled-big", action="store_true", help="skip the untiled run of (b)")
    ap.add_argument("--cli-images", type=int, default=4, help="images for (c), the CLI end to end (0: skip)")
    ap.add_argument("--cli-lr", type=_size, default=(1280, 960), help="LR size WxH for (c) (default 1280x960)")
    ap.add_argument("--cli-runs", type=int, default=3, help="runs of the command in (c); the fastest counts")
    ap.add_argument("--cli-ref-tile", type=_size, default=(320, 240), help="reference tile WxH in (c) (default 320x240)")
    ap.add_argument("--before", type=Path, default=None, help="another checkout whose drtl upscale (c) also times")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    ap.add_argument("--_rss", choices=["tiled", "untiled"], default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None:  # thread counts must be set before numpy / torch load their pools
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)
    os.environ.setdefault("DRTL_PROGRESS", "0")

import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drtl.archs import build_arch  # noqa: E402
from drtl.degradations.resize import imresize  # noqa: E402
from drtl.upscale import DEFAULT_TILE, keep_freed_memory, tile_grid, upscale_image  # noqa: E402
from torch import nn  # noqa: E402


def _model(args):
    return build_arch({"name": args.arch, "scale": args.scale}, generator=torch.Generator().manual_seed(0))


def _images(n: int, size: tuple[int, int]) -> tuple[list[np.ndarray], str]:
    w, h = size
    try:
        from skimage import data

        srcs = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.hubble_deep_field()]
        imgs = [np.asarray(Image.fromarray(srcs[i % len(srcs)]).convert("RGB").resize((w, h), Image.BICUBIC)) for i in range(n)]
        return imgs, "scikit-image photos resized"
    except Exception:  # pragma: no cover - skimage data missing
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:h, 0:w]
        imgs = []
        for _ in range(n):
            base = (yy[..., None] * 0.5 + xx[..., None] * 0.3 + rng.integers(0, 255, 3)) % 256
            imgs.append(np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8))
        return imgs, "synthetic"


def _best_times(fns: dict, repeats: int) -> dict:
    """Fastest of ``repeats`` runs of each function, the functions interleaved (one warm-up each)."""
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def conv_flops(model: nn.Module, h: int = 32, w: int = 32) -> float:
    """FLOPs (2 x multiply-adds) of every Conv2d of ``model`` on one 1x3xhxw input, from forward hooks."""
    total = [0.0]

    def hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
        total[0] += 2.0 * k * out.numel()

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            model(torch.rand(1, 3, h, w))
    finally:
        for hd in hs:
            hd.remove()
    return total[0]


def reference_stack(flops_per_lr_px: float, num_feat: int) -> tuple[nn.Sequential, float]:
    """3x3 convs 3 -> F, n x F -> F, F -> k (stride 1, padding 1) whose FLOPs per LR pixel are
    ``flops_per_lr_px`` to within one output channel of the last conv; returns (stack, its FLOPs
    per LR pixel)."""
    per = lambda cin, cout: 2.0 * 9 * cin * cout  # noqa: E731
    rest = flops_per_lr_px - per(3, num_feat)
    n = int(rest // per(num_feat, num_feat))
    k = max(1, round((rest - n * per(num_feat, num_feat)) / per(num_feat, 1)))
    layers = [nn.Conv2d(3, num_feat, 3, 1, 1)] + [nn.Conv2d(num_feat, num_feat, 3, 1, 1) for _ in range(n)]
    layers.append(nn.Conv2d(num_feat, k, 3, 1, 1))
    stack = nn.Sequential(*layers).eval().to(memory_format=torch.channels_last)
    return stack, per(3, num_feat) + n * per(num_feat, num_feat) + per(num_feat, k)


def _run_stack(stack: nn.Sequential, img: np.ndarray, tile: int) -> None:
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float().div_(255.0)  # HWC memory = channels_last
    h, w = img.shape[:2]
    with torch.inference_mode():
        for (y0, y1, x0, x1), _ in tile_grid(h, w, tile, 0):
            stack(x[:, :, y0:y1, x0:x1])


def _proc_status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _maxrss_mb() -> float:
    """Peak RSS of this process image. Linux's ru_maxrss carries the parent's peak across
    fork+exec, so prefer VmHWM (per address space, fresh after exec); ru_maxrss elsewhere."""
    hwm = _proc_status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_child(args) -> None:
    """Fresh process: build model + image, then one upscale; print JSON on stdout."""
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    model = _model(args)
    w, h = args.big
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    before = _maxrss_mb()
    tile = (args.tile or DEFAULT_TILE) if args._rss == "tiled" else None
    t0 = time.perf_counter()
    out = upscale_image(model, img, tile=tile, overlap=args.overlap)
    dt = time.perf_counter() - t0
    print(json.dumps({"mode": args._rss, "tile": tile, "baseline_mb": before, "peak_mb": _maxrss_mb(),
                      "seconds": dt, "out_shape": list(out.shape)}))


def _cli_peak_rss(args) -> dict:
    """Peak RSS of ``drtl upscale`` on one ``--big`` PNG (reader and writer threads included): a
    wrapper process whose only child is the command reports RUSAGE_CHILDREN's ru_maxrss."""
    from drtl.io import write_image
    from drtl.modelio import save_model

    repo = Path(__file__).resolve().parents[1]
    w, h = args.big
    img, _ = _images(1, (w, h))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_image(tmp / "in" / "big.png", img[0])
        model_path = save_model(tmp / "model.pt", _model(args), {"method": "bench"})
        cmd = [sys.executable, "-m", "drtl.cli", "upscale", str(tmp / "in" / "big.png"), "--model", str(model_path),
               "--out", str(tmp / "out"), "--threads", str(args.threads)]
        wrapper = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
                   f"subprocess.run({cmd!r}, check=True, capture_output=True); "
                   "print(json.dumps({'seconds': time.perf_counter() - t, "
                   "'peak_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))")
        env = {**os.environ, "PYTHONPATH": str(repo), "DRTL_PROGRESS": "0"}
        res = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _mem_available_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _untiled_estimate_mb(args) -> float:
    """Rough peak of an untiled pass: ~5 LR feature maps, 2 of the upsampler's (scale^2 x wider),
    plus HR feature maps, all float32."""
    cfg = build_arch({"name": args.arch, "scale": args.scale}).arch_cfg
    w, h = args.big
    f = cfg["num_feat"] * 4 * w * h
    return (5 * f + 3 * f * args.scale**2) / 2**20 + 600  # + interpreter / torch


def _run_child(args, mode: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_rss", mode, "--threads", str(args.threads),
           "--big", f"{args.big[0]}x{args.big[1]}", "--tile", str(args.tile or DEFAULT_TILE), "--overlap", str(args.overlap),
           "--arch", args.arch, "--scale", str(args.scale)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return {"mode": mode, "error": (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _run_tiles(stack: nn.Sequential, img: np.ndarray, th: int, tw: int) -> None:
    """The reference stack on ``th`` x ``tw`` blocks of ``img`` (channels_last, no overlap)."""
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float().div_(255.0)  # HWC memory = channels_last
    h, w = img.shape[:2]
    with torch.inference_mode():
        for y0 in range(0, h, th):
            for x0 in range(0, w, tw):
                stack(x[:, :, y0 : y0 + th, x0 : x0 + tw])


def _time_cmd(cmd: list[str], env: dict, out: Path) -> tuple[float, float]:
    """(seconds from process start to the last output file written (its mtime), to process exit)."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)  # a rerun would skip the files already done
    t0, p0 = time.time(), time.perf_counter()
    # cwd outside the repository: `python -m` puts the cwd first on sys.path, ahead of PYTHONPATH
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=out.parent)
    exit_s = time.perf_counter() - p0
    return max(f.stat().st_mtime for f in out.rglob("*") if f.is_file()) - t0, exit_s


def _cli_end_to_end(args, model, stack, flops_scale: float) -> dict:
    """Time ``python -m drtl.cli upscale`` on ``--cli-images`` PNGs (fresh process; fastest of
    ``--cli-runs``), the reference on the same images, and the parts of the command's time."""
    import io as _io

    from drtl.io import write_image
    from drtl.modelio import save_model
    from drtl.photo import png_bytes
    from drtl.upscale import PNG_LEVEL

    repo = Path(__file__).resolve().parents[1]
    imgs, _ = _images(args.cli_images, args.cli_lr)
    tw, th = args.cli_ref_tile
    out_mp = sum(i.shape[0] * i.shape[1] for i in imgs) * args.scale**2 / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i, img in enumerate(imgs):
            write_image(tmp / "in" / f"{i:02d}.png", img)
        model_path = save_model(tmp / "model.pt", _model(args), {"method": "bench"})
        trees = {"now": repo} | ({"before": args.before.resolve()} if args.before else {})
        best = {k: float("inf") for k in trees}
        best_exit = {k: float("inf") for k in trees}
        start_s = float("inf")
        for _ in range(args.cli_runs):  # interleaved, so load from other work hits them alike
            for k, tree in trees.items():
                env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]),
                       "DRTL_PROGRESS": "0"}
                cmd = [sys.executable, "-m", "drtl.cli", "upscale", str(tmp / "in"), "--model", str(model_path),
                       "--out", str(tmp / f"out_{k}"), "--threads", str(args.threads)]
                last, ex = _time_cmd(cmd, env, tmp / f"out_{k}")
                best[k], best_exit[k] = min(best[k], last), min(best_exit[k], ex)
            env = {**os.environ, "PYTHONPATH": str(repo)}
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import drtl.upscale, drtl.cli"], check=True, env=env)
            start_s = min(start_s, time.perf_counter() - t0)
        files = sorted((tmp / "in").glob("*.png"))
        parts = _best_times({
            "reference_s": lambda: [_run_tiles(stack, img, th, tw) for img in imgs],
            "decode_s": lambda: [Image.open(f).load() for f in files],
            "core_s": lambda: [upscale_image(model, img, tile=DEFAULT_TILE) for img in imgs],
        }, max(1, args.repeats - 1))
        outs = [upscale_image(model, img, tile=DEFAULT_TILE) for img in imgs]
        parts |= _best_times({
            "encode_s": lambda: [png_bytes(o, PNG_LEVEL) for o in outs],
            "encode_pillow_level1_s": lambda: [Image.fromarray(o).save(_io.BytesIO(), format="PNG", compress_level=1)
                                               for o in outs],
        }, max(1, args.repeats - 1))
    parts["reference_s"] *= flops_scale
    ref_mp_s = out_mp / parts["reference_s"]
    res = {"images": len(imgs), "lr": f"{args.cli_lr[0]}x{args.cli_lr[1]}", "out_mp": out_mp, "seconds": best["now"],
           "out_mp_per_s": out_mp / best["now"], "reference_tile": f"{tw}x{th}", "reference_mp_per_s": ref_mp_s,
           "ratio_vs_reference": out_mp / best["now"] / ref_mp_s, "exit_s": best_exit["now"], "startup_s": start_s,
           **parts}
    if "before" in best:
        res["before"] = {"tree": str(args.before), "seconds": best["before"], "out_mp_per_s": out_mp / best["before"],
                         "ratio_vs_reference": out_mp / best["before"] / ref_mp_s, "exit_s": best_exit["before"]}
    return res


def _check_output(model, img: np.ndarray, tile: int, overlap: int) -> dict:
    """uint8 values that differ: tiled vs untiled, and untiled vs the model's plain NCHW forward."""
    full = upscale_image(model, img, tile=None)
    tiled = upscale_image(model, img, tile=tile, overlap=overlap)
    with torch.inference_mode():
        y = model(torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float().div_(255.0).contiguous())
    plain = y[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return {"values": int(full.size), "tiled_vs_untiled": int((tiled != full).sum()),
            "untiled_vs_plain_nchw_forward": int((plain != full).sum()),
            "max_level_diff_vs_plain": int(np.abs(plain.astype(np.int16) - full).max())}


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as `drtl upscale` does (the reference's buffers are served by the same heap)
    args.tile = args.tile or DEFAULT_TILE
    model = _model(args)
    imgs, source = _images(args.images, args.lr)
    s = args.scale
    flops_lr = conv_flops(model) / (32 * 32)
    stack, stack_flops_lr = reference_stack(flops_lr, model.arch_cfg["num_feat"])
    rows = []
    for i, img in enumerate(imgs):
        h, w = img.shape[:2]
        out_mp = h * s * w * s / 1e6
        t = _best_times({
            "tiled_s": lambda: upscale_image(model, img, tile=args.tile, overlap=args.overlap),
            "reference_s": lambda: _run_stack(stack, img, args.tile),
            "untiled_s": lambda: upscale_image(model, img, tile=None),
            "matlab_bicubic_s": lambda: imresize(img, scale=s),
            "pillow_bicubic_s": lambda: Image.fromarray(img).resize((w * s, h * s), Image.BICUBIC),
        }, args.repeats)
        rows.append({"image": i, "lr": f"{w}x{h}", "out_mp": out_mp, **t})
    keys = ("out_mp", "tiled_s", "reference_s", "untiled_s", "matlab_bicubic_s", "pillow_bicubic_s")
    tot = {k: sum(r[k] for r in rows) for k in keys}
    lr_px = tot["out_mp"] * 1e6 / s**2
    # the reference's FLOPs differ from the model's by under one output channel of its last conv:
    # its time is scaled to the model's FLOPs, so "reference MP/s" is for exactly the model's work
    tot["reference_s"] *= flops_lr / stack_flops_lr
    check = _check_output(model, imgs[0], args.tile, args.overlap)
    cli = _cli_end_to_end(args, model, stack, flops_lr / stack_flops_lr) if args.cli_images > 0 else None
    mem = [_run_child(args, "tiled")]
    cli_mem = _cli_peak_rss(args)
    est = _untiled_estimate_mb(args)
    avail = _mem_available_mb()
    if args.no_untiled_big:
        mem.append({"mode": "untiled", "skipped": "--no-untiled-big"})
    elif avail is not None and est > avail / 2:
        mem.append({"mode": "untiled", "skipped": f"estimated {est:.0f} MB > half of MemAvailable ({avail:.0f} MB)"})
    else:
        mem.append(_run_child(args, "untiled"))

    result = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
                    "threads": args.threads},
        "model": build_arch({"name": args.arch, "scale": s}).arch_cfg,
        "images": source,
        "tile": args.tile,
        "overlap": args.overlap,
        "repeats": args.repeats,
        "per_image": rows,
        "total": tot,
        "flops_per_output_px": flops_lr / s**2,
        "reference": {"layers": len(stack), "last_out_channels": stack[-1].out_channels,
                      "flops_per_output_px": stack_flops_lr / s**2,
                      "gflop_per_s": flops_lr * lr_px / tot["reference_s"] / 1e9},
        "core_gflop_per_s": flops_lr * lr_px / tot["tiled_s"] / 1e9,
        "ratio_core_vs_reference": tot["reference_s"] / tot["tiled_s"],
        "loadavg": os.getloadavg(),
        "output_check": check,
        "cli": cli,
        "throughput_out_mp_per_s": {"tiled": tot["out_mp"] / tot["tiled_s"], "reference": tot["out_mp"] / tot["reference_s"],
                                    "untiled": tot["out_mp"] / tot["untiled_s"],
                                    "matlab_bicubic": tot["out_mp"] / tot["matlab_bicubic_s"],
                                    "pillow_bicubic": tot["out_mp"] / tot["pillow_bicubic_s"]},
        "ratio_model_vs_matlab_bicubic": tot["tiled_s"] / tot["matlab_bicubic_s"],
        "ratio_model_vs_pillow_bicubic": tot["tiled_s"] / tot["pillow_bicubic_s"],
        "big": {"lr": f"{args.big[0]}x{args.big[1]}", "out": f"{args.big[0] * s}x{args.big[1] * s}",
                "untiled_estimate_mb": est, "mem_available_mb": avail, "runs": mem, "cli": cli_mem},
    }
    return result


def _table(r: dict) -> str:
    tp = r["throughput_out_mp_per_s"]
    t = r["total"]
    n = len(r["per_image"])
    lr = r["per_image"][0]["lr"]
    lines = [
        f"### drtl upscale on CPU ({r['machine']['threads']} threads, torch {r['machine']['torch']}), "
        f"{r['model']['name']} x{r['model']['scale']}, {n} x {lr} LR ({r['images']})",
        "",
        f"Model: {r['flops_per_output_px'] / 1e3:.1f} kFLOP per output px (its Conv2d layers). Reference: "
        f"nn.Sequential of {r['reference']['layers']} 3x3 convs ({r['reference']['flops_per_output_px'] / 1e3:.1f} "
        f"kFLOP per output px, time scaled to the model's FLOPs), {r['reference']['gflop_per_s']:.0f} GFLOP/s; "
        f"the core {r['core_gflop_per_s']:.0f} GFLOP/s = **{r['ratio_core_vs_reference']:.2f}x the reference**. "
        f"Load average {r['loadavg'][0]:.1f}.",
        "",
        "| method | total time (s) | output MP/s | time vs MATLAB bicubic | time vs Pillow bicubic |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, key, tpk in [
        (f"upscale_image, tile {r['tile']} / overlap {r['overlap']}", "tiled_s", "tiled"),
        ("reference conv stack (same FLOPs)", "reference_s", "reference"),
        ("upscale_image, untiled", "untiled_s", "untiled"),
        ("imresize (MATLAB bicubic, numpy)", "matlab_bicubic_s", "matlab_bicubic"),
        ("Pillow resize BICUBIC", "pillow_bicubic_s", "pillow_bicubic"),
    ]:
        lines.append(f"| {label} | {t[key]:.3f} | {tp[tpk]:.3f} | {t[key] / t['matlab_bicubic_s']:.1f}x | "
                     f"{t[key] / t['pillow_bicubic_s']:.1f}x |")
    c = r["output_check"]
    lines += ["", f"Output check (image 0, {c['values']} uint8 values): tiled vs untiled {c['tiled_vs_untiled']} differ; "
              f"untiled vs the model's plain NCHW forward {c['untiled_vs_plain_nchw_forward']} differ "
              f"(max {c['max_level_diff_vs_plain']} level)."]
    if r.get("cli"):
        k = r["cli"]
        lines += ["", f"### `drtl upscale` end to end (fresh process, PNG in/out), {k['images']} x {k['lr']} LR -> "
                  f"{k['out_mp']:.1f} output MP, --threads {r['machine']['threads']}", "",
                  "| what | time (s) | output MP/s | vs reference |", "|---|---:|---:|---:|",
                  f"| `drtl upscale`, process start to last file written (exit {k['exit_s']:.2f} s) | {k['seconds']:.2f} | "
                  f"{k['out_mp_per_s']:.2f} | **{k['ratio_vs_reference']:.2f}x** |"]
        if k.get("before"):
            b = k["before"]
            lines.append(f"| `drtl upscale` of {b['tree']} (interleaved; exit {b['exit_s']:.2f} s) | {b['seconds']:.2f} | "
                         f"{b['out_mp_per_s']:.2f} | {b['ratio_vs_reference']:.2f}x |")
        lines += [f"| reference conv stack on {k['reference_tile']} tiles (same FLOPs, in-process) | {k['reference_s']:.2f} | "
                  f"{k['reference_mp_per_s']:.2f} | 1.00x |",
                  f"| of which: start-up (a process importing drtl.upscale) | {k['startup_s']:.2f} | | |",
                  f"| of which: decoding the inputs (Pillow) | {k['decode_s']:.2f} | | |",
                  f"| of which: upscale_image (in-process) | {k['core_s']:.2f} | {k['out_mp'] / k['core_s']:.2f} | "
                  f"{k['out_mp'] / k['core_s'] / k['reference_mp_per_s']:.2f}x |",
                  f"| of which: encoding the outputs (PNG, writer thread) | {k['encode_s']:.2f} | | |",
                  f"| (Pillow's PNG encoder at level 1, for comparison) | {k['encode_pillow_level1_s']:.2f} | | |"]
    b = r["big"]
    lines += ["", f"### Peak memory, one {b['lr']} LR -> {b['out']} output (fresh process, peak RSS = VmHWM)", "",
              "| mode | peak RSS (MB) | RSS before inference (MB) | increase (MB) | time (s) |", "|---|---:|---:|---:|---:|"]
    for run in b["runs"]:
        label = f"tile {run.get('tile')}" if run["mode"] == "tiled" else "untiled"
        if "skipped" in run or "error" in run:
            lines.append(f"| {run['mode']} | - | - | - | {run.get('skipped') or run.get('error')} |")
        else:
            lines.append(f"| {label} | {run['peak_mb']:.0f} | {run['baseline_mb']:.0f} | "
                         f"{run['peak_mb'] - run['baseline_mb']:.0f} | {run['seconds']:.1f} |")
    c = b.get("cli") or {}
    if "peak_mb" in c:
        lines.append(f"| `drtl upscale` end to end (PNG in and out, tile 256) | {c['peak_mb']:.0f} | - | - | {c['seconds']:.1f} |")
    elif c:
        lines.append(f"| `drtl upscale` end to end | - | - | - | {c.get('error')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if ARGS._rss:
        _rss_child(ARGS)
        sys.exit(0)
    res = main(ARGS)
    print(_table(res))
    if ARGS.json:
        ARGS.json.parent.mkdir(parents=True, exist_ok=True)
        ARGS.json.write_text(json.dumps(res, indent=2) + "\n")
