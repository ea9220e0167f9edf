"""Degradation throughput and MATLAB-bicubic resize speed (CPU).

Reports in one run:

(a) ``make_pair`` throughput for the whole default task bank on a 256x256 HR image at scale 2:
    the median time per task over ``--repeats`` runs (after one warm-up), then pairs/s per family
    and overall (= tasks / sum of their median times, i.e. cycling through the bank once). The
    fixed-parameter families (blur ... second_order) are the baseline for the camera-realistic ones
    (isp, capture, realesrgan), measured in the same run; both groups get a summary row. Tasks with
    parameter ranges draw new parameters on every call, so their median is over realisations;
(b) :func:`drtl.degradations.imresize` (MATLAB bicubic, uint8) vs Pillow's ``Image.resize(BICUBIC)``
    for the same x2 / x4 downscale of a 512x512 RGB image: median times and their ratio, plus the
    max |difference| between the two results (Pillow is antialiased bicubic too but not MATLAB-exact).

The HR image is scikit-image's bundled ``astronaut`` (no download), cropped; a synthetic image is
used if it is unavailable. Output: a Markdown table; ``--json PATH`` also writes the numbers.

    python benchmarks/bench_degradations.py --threads 2 --repeats 5 --json bench_degradations.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch / BLAS / OpenMP threads (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median)")
    ap.add_argument("--size", type=int, default=256, help="HR side for (a) (default 256)")
    ap.add_argument("--scale", type=int, default=2, help="scale for (a) (default 2)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    return ap.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None:  # thread counts must be set before numpy / torch load their pools
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drtl.degradations import DEFAULT_BANK, FAMILIES, imresize, make_pair  # noqa: E402
from drtl.degradations.tasks import CAMERA_BANK  # noqa: E402


def _test_image(size: int) -> tuple[np.ndarray, str]:
    try:
        from skimage import data

        img = data.astronaut()
        src = "skimage astronaut"
    except Exception:  # pragma: no cover - skimage data missing
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:512, 0:512]
        img = np.clip(np.stack([xx / 2, yy / 2, (xx + yy) / 4], -1) + rng.normal(0, 20, (512, 512, 3)), 0, 255)
        img = img.astype(np.uint8)
        src = "synthetic"
    if img.shape[0] < size or img.shape[1] < size:
        img = np.array(Image.fromarray(img).resize((size, size), Image.BICUBIC))
    top = (img.shape[0] - size) // 2
    left = (img.shape[1] - size) // 2
    return np.ascontiguousarray(img[top : top + size, left : left + size]), src


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up (caches, kernel FFTs, weight matrices)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_bank(size: int, scale: int, repeats: int) -> dict:
    hr, src = _test_image(size)
    per_task = {}
    for task in DEFAULT_BANK:
        rng = np.random.default_rng(0)
        per_task[task.name] = (task.family, _median_time(lambda t=task: make_pair(hr, t, scale, rng), repeats))
    fam = {}
    for family in FAMILIES:
        ts = [t for f, t in per_task.values() if f == family]
        fam[family] = {"tasks": len(ts), "ms_per_pair": 1e3 * sum(ts) / len(ts), "pairs_per_s": len(ts) / sum(ts)}
    camera = {t.family for t in CAMERA_BANK}
    groups = {
        "fixed families (baseline)": [t for f, t in per_task.values() if f not in camera],
        "camera families (isp, capture, realesrgan)": [t for f, t in per_task.values() if f in camera],
        "overall": [t for _, t in per_task.values()],
    }
    for label, ts in groups.items():
        fam[label] = {"tasks": len(ts), "ms_per_pair": 1e3 * sum(ts) / len(ts), "pairs_per_s": len(ts) / sum(ts)}
    slowest = sorted(per_task.items(), key=lambda kv: -kv[1][1])[:3]
    return {
        "hr": f"{size}x{size} ({src})",
        "scale": scale,
        "families": fam,
        "per_task_ms": {k: 1e3 * v[1] for k, v in per_task.items()},
        "slowest": [(k, 1e3 * v[1]) for k, v in slowest],
    }


def bench_resize(repeats: int) -> list[dict]:
    img, _ = _test_image(512)
    pil = Image.fromarray(img)
    rows = []
    for s in (2, 4):
        ours = _median_time(lambda s=s: imresize(img, 1 / s), repeats * 4)
        theirs = _median_time(lambda s=s: pil.resize((512 // s, 512 // s), Image.BICUBIC), repeats * 4)
        diff = np.abs(imresize(img, 1 / s).astype(int) - np.asarray(pil.resize((512 // s, 512 // s), Image.BICUBIC)))
        rows.append(
            {
                "downscale": f"x{s}",
                "imresize_ms": 1e3 * ours,
                "pillow_ms": 1e3 * theirs,
                "ratio": ours / theirs,
                "max_abs_diff_vs_pillow": int(diff.max()),
                "mean_abs_diff_vs_pillow": float(diff.mean()),
            }
        )
    return rows


def main(args: argparse.Namespace) -> dict:
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:  # pragma: no cover
        pass
    bank = bench_bank(args.size, args.scale, args.repeats)
    rz = bench_resize(args.repeats)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, threads={args.threads}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "repeats": args.repeats,
        "bank": bank,
        "resize_512": rz,
    }
    print(f"## Degradation throughput: default bank ({bank['families']['overall']['tasks']} tasks), "
          f"HR {bank['hr']}, scale x{bank['scale']}, threads={args.threads}, median of {args.repeats}\n")
    print("| family | tasks | ms / pair | pairs / s |")
    print("|---|---:|---:|---:|")
    for family, row in bank["families"].items():
        print(f"| {family} | {row['tasks']} | {row['ms_per_pair']:.2f} | {row['pairs_per_s']:.1f} |")
    print("\nslowest tasks: " + ", ".join(f"{n} {ms:.1f} ms" for n, ms in bank["slowest"]))
    print("\n## MATLAB-bicubic imresize vs Pillow BICUBIC, 512x512 RGB uint8\n")
    print("| downscale | imresize ms | Pillow ms | ratio | max / mean abs diff vs Pillow |")
    print("|---|---:|---:|---:|---:|")
    for r in rz:
        print(f"| {r['downscale']} | {r['imresize_ms']:.2f} | {r['pillow_ms']:.2f} | {r['ratio']:.2f} | "
              f"{r['max_abs_diff_vs_pillow']} / {r['mean_abs_diff_vs_pillow']:.3f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(ARGS)
