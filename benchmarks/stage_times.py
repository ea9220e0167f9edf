"""Where the main job's time goes: a per-stage table from the run records of a finished run.

Every stage run writes ``<out>/run.json`` with its ``duration_s`` (the work inside the process,
from the stage wrapper's start to its end) and ``started`` (wall clock). This script reads the
records under ``--outputs`` (default ``outputs``) and prints, per stage: runs, total work, mean
work per run; then the wall-clock span of the whole set of runs (first start to last end), the
summed work, and their difference: the fixed cost outside the stages' work (process start-up,
imports, DVC's hashing and lock-file writes between stages). Run it after ``make run``:

    python benchmarks/stage_times.py --outputs outputs [--wall SECONDS_OF_MAKE_RUN]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outputs", default="outputs")
    ap.add_argument("--wall", type=float, default=None, help="measured wall seconds of the whole job, if known")
    a = ap.parse_args(argv)
    recs = [json.loads(p.read_text()) for p in sorted(Path(a.outputs).rglob("run.json"))]
    if not recs:
        raise SystemExit(f"no run records under {a.outputs}; run the job first")
    by = defaultdict(list)
    for r in recs:
        by[r["stage"]].append(float(r["duration_s"]))
    work = sum(sum(v) for v in by.values())
    span = max(r["started"] + r["duration_s"] for r in recs) - min(r["started"] for r in recs)
    print("| stage | runs | work (s) | mean per run (s) | share of work |")
    print("|---|---:|---:|---:|---:|")
    for st, v in sorted(by.items(), key=lambda kv: -sum(kv[1])):
        print(f"| {st} | {len(v)} | {sum(v):.1f} | {sum(v) / len(v):.2f} | {sum(v) / work:.0%} |")
    n = len(recs)
    print(f"| **all stages** | {n} | {work:.1f} | {work / n:.2f} | 100% |")
    print(f"\nspan of the runs (first start to last end): {span:.1f} s; work {work:.1f} s; "
          f"outside the stages' work: {span - work:.1f} s ({(span - work) / n:.2f} s per run)")
    if a.wall:
        print(f"whole job {a.wall:.1f} s: work {work / a.wall:.0%}, everything else {(a.wall - work) / a.wall:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
