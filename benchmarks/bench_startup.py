"""Stage start-up: how long a `drtl` process takes before (and besides) its real work.

    python benchmarks/bench_startup.py [--reps 5] [--stage-reps 3] [--cwd REPO]

Prints a Markdown table (docs/benchmarks.md, "Stage start-up"):

- baselines measured in the same run: ``python -c pass`` and ``python -c "import torch"``;
- ``drtl --help`` (median of ``--reps``): the parser is built from the stage registry and must
  import nothing heavy;
- the fixed cost of a stage process (median of ``--stage-reps``): ``drtl evaluate --method bicubic``
  on a 2-pair 32 px paired folder, and ``drtl finetune --method scratch`` for one step on the same
  folder. Their work is negligible, so the wall time is process start + imports + reading the
  inputs + writing the outputs and the run record (git provenance included). evaluate runs twice:
  with the params of ``--cwd`` (the repository's ``threads: 1`` makes ``drtl.config.apply_threads``
  import torch to set its thread count) and with ``-S threads=0`` (no torch);
- for each stage process, the heavy modules it imports and their cumulative import time
  (``python -X importtime``, one extra run).

Stage processes run in ``--cwd`` (default: this repository, so that ``params.yaml`` and the git
provenance of the run record are the real ones); every output goes to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numpy", "scipy", "pandas", "PIL", "yaml", "skimage", "networkx", "matplotlib",
         "great_expectations", "mlflow", "boto3")


def _drtl() -> list[str]:
    exe = Path(sys.executable).with_name("drtl")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "drtl.cli"]


def wall(cmd: list[str], reps: int, cwd: Path, env: dict | None = None) -> tuple[float, list[float]]:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return statistics.median(times), times


def heavy_imports(args: list[str], cwd: Path) -> dict[str, float]:
    """{top-level heavy module: cumulative import seconds} of ``drtl ARGS`` (python -X importtime)."""
    code = "import sys; from drtl.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", code, *args], cwd=cwd,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"drtl {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    found: dict[str, float] = {}
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cum, name = line.split("|")
        if name.strip() in HEAVY and cum.strip().isdigit():  # top-level package, counted where first imported
            found[name.strip()] = max(found.get(name.strip(), 0.0), int(cum) / 1e6)
    return found


def tiny_folder(root: Path, n: int = 2, hr: int = 32, scale: int = 2) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("HR", "LR"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = rng.integers(0, 256, (hr, hr, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "HR" / f"{i:03d}.png")
        Image.fromarray(img).resize((hr // scale, hr // scale), Image.BICUBIC).save(root / "LR" / f"{i:03d}.png")
    subprocess.run([*_drtl(), "data", "manifest", str(root), "--scale", str(scale)], check=True,
                   capture_output=True)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions of the baselines and of drtl --help")
    ap.add_argument("--stage-reps", type=int, default=3, help="repetitions of each stage process")
    ap.add_argument("--cwd", default=str(REPO), help="where the stage processes run (params.yaml, git)")
    a = ap.parse_args()
    cwd = Path(a.cwd)
    env = {**os.environ, "DRTL_PROGRESS": "0"}
    rows = []

    def row(what, cmd, reps, heavy=None):
        med, times = wall(cmd, reps, cwd, env)
        rows.append((what, med, min(times), max(times), reps, heavy))
        print(f"  {what}: {med:.2f} s", file=sys.stderr, flush=True)

    row("`python -c pass`", [sys.executable, "-c", "pass"], a.reps)
    row("`python -c \"import torch\"`", [sys.executable, "-c", "import torch"], a.reps)
    row("`drtl --help`", [*_drtl(), "--help"], a.reps, heavy_imports(["--help"], cwd))
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp:
        tmp = Path(tmp)
        data = tiny_folder(tmp / "tiny")
        ev = ["evaluate", "--method", "bicubic", "--data", str(data), "--scale", "2", "--out", str(tmp / "ev" / "eval.json")]
        ft = ["finetune", "--method", "scratch", "--seed", "0", "--pool", str(data), "--out", str(tmp / "ft"),
              "-S", "target.scale=2", "-S", "finetune.iterations=1", "-S", "finetune.batch=1",
              "-S", "finetune.lr_patch=8", "-S", "finetune.checkpoint_every=0", "-S", "device=cpu"]
        row("stage `evaluate --method bicubic` (2 pairs, 32 px)", [*_drtl(), *ev], a.stage_reps,
            heavy_imports(ev, cwd))
        row("stage `evaluate --method bicubic`, `-S threads=0`", [*_drtl(), *ev, "-S", "threads=0"], a.stage_reps,
            heavy_imports([*ev, "-S", "threads=0"], cwd))
        row("stage `finetune --method scratch` (1 step)", [*_drtl(), *ft], a.stage_reps, heavy_imports(ft, cwd))

    print(f"\n{sys.version.split()[0]}, {os.cpu_count()} CPUs; wall seconds (median, min-max)\n")
    print("| process | median s | min-max s | reps | heavy imports (cumulative import s) |")
    print("|---|---|---|---|---|")
    for what, med, lo, hi, reps, heavy in rows:
        h = ", ".join(f"{k} {v:.2f}" for k, v in sorted(heavy.items(), key=lambda kv: -kv[1])) if heavy else ""
        print(f"| {what} | {med:.2f} | {lo:.2f}-{hi:.2f} | {reps} | {h} |")


if __name__ == "__main__":
    main()
