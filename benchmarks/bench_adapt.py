"""`drtl adapt` end to end on a real camera: City100 iPhone X, x2, K=5, cold and warm aux cache.

The camera is ``../shared/datasets/city100-iphonex`` (pairs 001-020, imported by `drtl adapt`
itself at x2 into a temp folder: LR = MATLAB-bicubic downscale of the registered ``L``). K=5 shots
train, the other 15 pairs evaluate (PSNR/SSIM on Y, crop 2) against bicubic. The auxiliary HR
images are the adapt profile's default, the built-in sample's ``aux_hr`` (scikit-image photos,
built into the cache root on first use).

Two runs of ``python -m drtl.cli adapt`` (``drtl adapt``), each a fresh process
on ``--threads`` threads (default 2; OMP_NUM_THREADS and ``-S threads=N``):

- **cold**: an empty aux cache, so the run also builds the sample aux HR images, synthesizes the
  auxiliary tasks and trains the distortion relation network;
- **warm**: the same cache, a new output folder (what a second camera / second K pays).

Prints a Markdown table (wall and CPU seconds, per-step seconds from ``summary.json``, PSNR/SSIM vs
bicubic); ``--json PATH`` also writes the numbers. MLflow tracking is off (the numbers are the
pipeline's; pass ``-S tracking.enabled=true`` to include it). Skips with a message when the dataset is absent.

    nice -n 19 .venv/bin/python benchmarks/bench_adapt.py --json bench_adapt.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "datasets" / "city100-iphonex"


def _parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC, help="City100 folder (NNNH.PNG / NNNL.PNG)")
    ap.add_argument("--names", default="001-020", help="pairs to use (default 001-020)")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch / OpenMP threads (default 2)")
    ap.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra param overrides passed to drtl adapt")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (default: temp)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    return ap.parse_args(argv)


def _run(args, out: Path, cache: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "DRTL_PROGRESS": "0", "GX_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, "-m", "drtl.cli", "adapt", "--pairs", str(args.src), "--names", args.names,
           "--scale", str(args.scale), "--shots", str(args.shots), "--seed", str(args.seed), "--out", str(out),
           "--aux-cache", str(cache), "-S", f"threads={args.threads}", "-S", "tracking.enabled=false"]
    for s in args.set:
        cmd += ["-S", s]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=str(REPO), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sys.stdout.write("".join(f"    {line}\n" for line in proc.stdout.splitlines()))
    if proc.returncode != 0:
        raise SystemExit(f"drtl adapt failed (exit {proc.returncode})")
    s = json.loads((out / "summary.json").read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "summary": s}


def main(argv=None) -> int:
    args = _parse(argv)
    if not args.src.is_dir():
        print(f"bench_adapt: {args.src} is absent; nothing to measure (see ../shared/datasets/README.md)")
        return 0
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_adapt-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    if cache.exists():
        shutil.rmtree(cache)
    rows = {}
    try:
        for label in ("cold", "warm"):
            out = work / label
            if out.exists():
                shutil.rmtree(out)
            print(f"{label} aux cache: drtl adapt --pairs {args.src} --names {args.names} --scale {args.scale} "
                  f"--shots {args.shots} ({args.threads} threads)", flush=True)
            rows[label] = _run(args, out, cache)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    steps = ["import", "validate", "synthesize", "bank", "relation", "pretrain", "finetune", "evaluate"]
    print()
    print(f"City100 iPhone X x{args.scale}, pairs {args.names}, K={args.shots} (seed {args.seed}), "
          f"{args.threads} threads, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average at the end {load[0]:.2f}")
    print()
    print("| aux cache | wall s | CPU s | " + " | ".join(steps) + " | PSNR-Y model | PSNR-Y bicubic | gain dB |"
          " SSIM-Y model | SSIM-Y bicubic |")
    print("|---|" + "---:|" * (len(steps) + 7))
    for label, r in rows.items():
        s = r["summary"]
        t = s["timings_s"]
        ev = s["eval"] or {}
        cells = [f"{t.get(k, 0.0):.1f}" for k in steps]
        m, b = ev.get("model", {}), ev.get("bicubic", {})
        print(f"| {label} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | " + " | ".join(cells)
              + f" | {m.get('psnr_y', float('nan')):.3f} | {b.get('psnr_y', float('nan')):.3f} | "
                f"{ev.get('gain_psnr_y', float('nan')):+.3f} | {m.get('ssim_y', float('nan')):.4f} | "
                f"{b.get('ssim_y', float('nan')):.4f} |")
    top = rows["cold"]["summary"]["relation"]["top"]
    print()
    print("closest auxiliary distortions (cold run): " + ", ".join(f"{x['task']} ({x['weight']:.3f})" for x in top))
    print("(the step columns are the stage's own timings; wall includes Python/torch start-up and the "
          "building of the sample aux HR images in the cold run)")
    if args.json:
        args.json.write_text(json.dumps({
            "dataset": str(args.src), "names": args.names, "scale": args.scale, "shots": args.shots,
            "seed": args.seed, "threads": args.threads, "cpu_count": os.cpu_count(), "loadavg_end": load,
            "runs": {k: {"wall_s": v["wall_s"], "cpu_s": v["cpu_s"], "timings_s": v["summary"]["timings_s"],
                         "eval": v["summary"]["eval"], "aux_cache": v["summary"]["aux_cache"]}
                     for k, v in rows.items()}}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
