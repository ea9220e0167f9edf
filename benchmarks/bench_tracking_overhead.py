"""Benchmark: MLflow tracking's share of a whole pipeline run (at most 5 % of `make run`).

``python benchmarks/bench_tracking_overhead.py ROOT [--wall-s S] [--repeat 3]``: ROOT is a checkout
where ``make run`` (``dvc repro``) has finished. Stages never import MLflow; the only tracking cost
is the ``track`` stage, one ``drtl track`` process that logs every run record. This times that
process (into a fresh SQLite store, ``--repeat`` times, median) and compares it with the same run's
stage time: the sum of the ``duration_s`` of its run records (the work inside the stages), and
``--wall-s`` (the measured wall time of ``make run``) when given.
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--wall-s", type=float, default=None, help="measured wall time of make run (s)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from drtl.config import load_params
    from drtl.plan import plan
    from drtl.records import read_record, record_path

    root = a.root.resolve()
    p = load_params(root / "params.yaml")
    runs = plan(p, reports="reports")
    recs = [read_record(root / record_path(r.out)) for r in runs if (root / record_path(r.out)).is_file()]
    stage_s = sum(r.duration_s for r in recs)
    drtl = Path(sys.executable).parent / "drtl"
    times = []
    for _ in range(a.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "DRTL_PROGRESS": "0"}
            t = time.perf_counter()
            subprocess.run([str(drtl), "track", "--reports", "reports", "-S", "tracking.enabled=true",
                            "-S", f"tracking.uri=sqlite:///{tmp}/mlflow.db"], cwd=root, env=env, check=True,
                           capture_output=True)
            times.append(time.perf_counter() - t)
    track_s = statistics.median(times)
    print(f"machine: {os.cpu_count()} cores; {len(recs)} run records in {root}")
    print("| measure | seconds | tracking share |")
    print("|---|---|---|")
    print(f"| `drtl track` (import mlflow, fresh store, log {len(recs)} records), median of {a.repeat} | "
          f"{track_s:.1f} | |")
    print(f"| sum of the stages' own time (run records) | {stage_s:.1f} | {100 * track_s / (stage_s + track_s):.1f} % |")
    if a.wall_s:
        print(f"| `make run` wall time (measured, includes the track stage) | {a.wall_s:.1f} | "
              f"{100 * track_s / a.wall_s:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
