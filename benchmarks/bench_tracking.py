"""Benchmark: logging a pipeline's run records to a fresh SQLite MLflow store.

``python benchmarks/bench_tracking.py [--seeds 2] [--repeat 1]``. Writes made-up records like those
of ``dvc repro`` on the CPU profile (7 methods x K in {1, 5, 10} x seeds: synthesize, relation,
pre-/meta-training, fine-tuning, evaluation, report; each with a small history and a small
artifact; ~90 records for 2 seeds), then times, each in a fresh process state where it matters:
``import mlflow``, opening a fresh store (creating its tables), and ``log_records`` of all records.
Prints a small table.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def import_time() -> float:
    code = "import time; t = time.perf_counter(); import mlflow; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="fresh stores logged per measurement")
    a = ap.parse_args(argv)

    from drtl.methods import METHODS
    from drtl.records import find_records
    from drtl.tracking import log_records, make_client
    from tests.tracking_demo import write_demo_records

    rows = [("import mlflow (fresh process)", [import_time() for _ in range(a.repeat)])]
    opens, ingests, cpus = [], [], []
    n = 0
    for _ in range(a.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
            tmp = Path(tmp)
            write_demo_records(tmp / "outputs", methods=tuple(METHODS), shots=(1, 5, 10), seeds=tuple(range(a.seeds)),
                               steps=20)
            records = find_records(tmp / "outputs")
            n = len(records)
            uri = f"sqlite:///{tmp / 'mlflow.db'}"
            t = time.perf_counter()
            make_client(uri)
            opens.append(time.perf_counter() - t)
            t, c = time.perf_counter(), time.process_time()
            log_records(records, {"uri": uri, "experiment": "bench"}, invocation={"command": "bench"})
            ingests.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
    rows += [("open a fresh SQLite store (tables)", opens), (f"log_records: {n} records (wall)", ingests),
             ("  of which CPU time of this process", cpus), ("  wall per record", [x / n for x in ingests])]
    print(f"load average (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'what':40s} {'median s':>9s} {'min s':>7s}")
    for what, xs in rows:
        print(f"{what:40s} {statistics.median(xs):9.3f} {min(xs):7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
