"""``make bench``: run every benchmark and write their tables into docs/benchmarks.md.

Each benchmark script prints Markdown (every figure next to a baseline measured in the same run:
a plain PyTorch loop, a same-FLOPs convolution stack, bicubic, a bare process). This runner runs
them one after another as subprocesses, records the machine (CPU model, cores, thread count,
torch version, load average before and after each script), and replaces the section between the
``<!-- make bench -->`` markers of docs/benchmarks.md with the fresh output; the prose around it
(the analysis of earlier runs) is kept. ``--only NAME`` runs a subset; ``--dry-run`` lists.

    python benchmarks/run_all.py [--threads 2] [--only upscale,startup] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BEGIN, END = "<!-- make bench: begin -->", "<!-- make bench: end -->"

# name -> (script, args): each prints its own Markdown table with its same-run baseline
BENCHMARKS = {
    "startup": ("bench_startup.py", ["--reps", "5", "--stage-reps", "3"]),
    "train": ("bench_train.py", ["--threads", "{threads}", "--steps", "5", "--warmup", "1", "--repeats", "3"]),
    "degradations": ("bench_degradations.py", ["--threads", "{threads}", "--repeats", "3"]),
    "upscale": ("bench_upscale.py", ["--threads", "{threads}", "--images", "2", "--repeats", "3", "--no-untiled-big"]),
    "tracking": ("bench_tracking.py", []),
    "adapt": ("bench_adapt.py", ["--threads", "{threads}"]),
}


def machine(threads: int) -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (f"{cpu}, {os.cpu_count()} cores visible, {threads} torch threads; Python {platform.python_version()}, "
            f"torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def load() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=None, help="comma-separated subset of " + ", ".join(BENCHMARKS))
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    names = list(BENCHMARKS) if not a.only else [n.strip() for n in a.only.split(",")]
    bad = [n for n in names if n not in BENCHMARKS]
    if bad:
        raise SystemExit(f"unknown benchmark(s) {bad}; choose from {', '.join(BENCHMARKS)}")
    parts = [f"## Latest `make bench` run\n\nMachine: {machine(a.threads)}.\n"]
    for n in names:
        script, args = BENCHMARKS[n]
        cmd = [sys.executable, str(HERE / script), *(x.format(threads=a.threads) for x in args)]
        shown = "python benchmarks/" + " ".join([script, *cmd[2:]])
        if a.dry_run:
            print(shown)
            continue
        before, t = load(), time.perf_counter()
        print(f"[bench] {shown}", flush=True)
        res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        took = time.perf_counter() - t
        body = res.stdout.strip() if res.returncode == 0 else f"FAILED (exit {res.returncode}):\n\n```\n{res.stderr[-2000:]}\n```"
        parts.append(f"### {n} — `{shown}`\n\n{body}\n\n_{took:.0f} s; load average before {before}, after {load()}._\n")
        print(body, flush=True)
    if a.dry_run:
        return 0
    out = Path(a.out)
    text = out.read_text() if out.is_file() else "# Benchmarks\n"
    block = f"{BEGIN}\n" + "\n".join(parts) + f"\n{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        head, _, rest = text.partition("\n\n")
        text = f"{head}\n\n{block}\n\n{rest}"
    out.write_text(text)
    print(f"[bench] wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
