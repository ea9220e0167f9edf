"""`drtl upscale` speed and memory on CPU: tiled EDSR inference vs bicubic, and peak RSS.

Reports in one run (on ``--threads`` threads, default 2):

(a) throughput of :func:`drtl.upscale.upscale_image` with the default tile (256) and overlap (16),
    output megapixels per second, for the CPU default model ``edsr_tiny`` x2 (random init: speed does
    not depend on the weights) on ``--images`` LR images of ``--lr`` (default 3 x 640x480), median
    of ``--repeats`` timed runs per image after one warm-up; next to the same images upscaled
    untiled, with MATLAB-bicubic :func:`drtl.degradations.resize.imresize` and with Pillow's
    ``Image.resize(BICUBIC)`` (ratios = model time / bicubic time);
(b) peak resident memory (VmHWM, i.e. ``ru_maxrss`` of a fresh subprocess per mode; Linux's
    ``ru_maxrss`` would include the parent's peak, inherited across fork+exec) and wall time for one
    ``--big`` LR image (default 2000x1500 -> 4000x3000 output) with tiling (tile 256) and without;
    the untiled run is skipped (and said so) when its rough estimate exceeds half of MemAvailable.

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
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per image (median)")
    ap.add_argument("--images", type=int, default=3, help="number of LR images for (a)")
    ap.add_argument("--lr", type=_size, default=(640, 480), help="LR size WxH for (a) (default 640x480)")
    ap.add_argument("--big", type=_size, default=(2000, 1500), help="LR size WxH for (b) (default 2000x1500)")
    ap.add_argument("--tile", type=int, default=256, help="tile for the tiled runs (default 256)")
    ap.add_argument("--overlap", type=int, default=16)
    ap.add_argument("--arch", default="edsr_tiny", help="arch name (default edsr_tiny, the CPU default)")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--no-untiled-big", action="store_true", help="skip the untiled run of (b)")
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
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drtl.archs import build_arch  # noqa: E402
from drtl.degradations.resize import imresize  # noqa: E402
from drtl.upscale import upscale_image  # noqa: E402


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


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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
    model = _model(args)
    w, h = args.big
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    before = _maxrss_mb()
    tile = args.tile if args._rss == "tiled" else None
    t0 = time.perf_counter()
    out = upscale_image(model, img, tile=tile, overlap=args.overlap)
    dt = time.perf_counter() - t0
    print(json.dumps({"mode": args._rss, "tile": tile, "baseline_mb": before, "peak_mb": _maxrss_mb(),
                      "seconds": dt, "out_shape": list(out.shape)}))


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
           "--big", f"{args.big[0]}x{args.big[1]}", "--tile", str(args.tile), "--overlap", str(args.overlap),
           "--arch", args.arch, "--scale", str(args.scale)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return {"mode": mode, "error": (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    model = _model(args)
    imgs, source = _images(args.images, args.lr)
    s = args.scale
    upscale_image(model, imgs[0][:64, :64], tile=args.tile, overlap=args.overlap)  # warm-up
    rows = []
    for i, img in enumerate(imgs):
        h, w = img.shape[:2]
        out_mp = h * s * w * s / 1e6
        t_tiled = _median_time(lambda: upscale_image(model, img, tile=args.tile, overlap=args.overlap), args.repeats)
        t_full = _median_time(lambda: upscale_image(model, img, tile=None), args.repeats)
        t_mat = _median_time(lambda: imresize(img, scale=s), args.repeats)
        t_pil = _median_time(lambda: Image.fromarray(img).resize((w * s, h * s), Image.BICUBIC), args.repeats)
        rows.append({"image": i, "lr": f"{w}x{h}", "out_mp": out_mp, "tiled_s": t_tiled, "untiled_s": t_full,
                     "matlab_bicubic_s": t_mat, "pillow_bicubic_s": t_pil})
    tot = {k: sum(r[k] for r in rows) for k in ("out_mp", "tiled_s", "untiled_s", "matlab_bicubic_s", "pillow_bicubic_s")}

    mem = [_run_child(args, "tiled")]
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
        "throughput_out_mp_per_s": {"tiled": tot["out_mp"] / tot["tiled_s"], "untiled": tot["out_mp"] / tot["untiled_s"],
                                    "matlab_bicubic": tot["out_mp"] / tot["matlab_bicubic_s"],
                                    "pillow_bicubic": tot["out_mp"] / tot["pillow_bicubic_s"]},
        "ratio_model_vs_matlab_bicubic": tot["tiled_s"] / tot["matlab_bicubic_s"],
        "ratio_model_vs_pillow_bicubic": tot["tiled_s"] / tot["pillow_bicubic_s"],
        "big": {"lr": f"{args.big[0]}x{args.big[1]}", "out": f"{args.big[0] * s}x{args.big[1] * s}",
                "untiled_estimate_mb": est, "mem_available_mb": avail, "runs": mem},
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
        "| method | total time (s) | output MP/s | time vs MATLAB bicubic | time vs Pillow bicubic |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, key, tpk in [
        (f"upscale_image, tile {r['tile']} / overlap {r['overlap']}", "tiled_s", "tiled"),
        ("upscale_image, untiled", "untiled_s", "untiled"),
        ("imresize (MATLAB bicubic, numpy)", "matlab_bicubic_s", "matlab_bicubic"),
        ("Pillow resize BICUBIC", "pillow_bicubic_s", "pillow_bicubic"),
    ]:
        lines.append(f"| {label} | {t[key]:.3f} | {tp[tpk]:.3f} | {t[key] / t['matlab_bicubic_s']:.1f}x | "
                     f"{t[key] / t['pillow_bicubic_s']:.1f}x |")
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
