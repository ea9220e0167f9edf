"""``python -m drtl.tracking track|report|results``: log run records, read the results back.

    python -m drtl.tracking track --root outputs [--params params.yaml] [-S tracking.uri=...]
    python -m drtl.tracking report --uri sqlite:///mlflow.db --out reports/mlflow [--parent RUN_ID]
    python -m drtl.tracking results --uri sqlite:///mlflow.db

``drtl track`` is the same command: :func:`add_track_arguments` and :func:`run_track` are what the
``drtl`` CLI wires.
"""

from __future__ import annotations

import argparse
import sys
import time

from drtl.errors import DRTLError


def add_track_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default="outputs", help="folder searched for run records (run.json, *.run.json)")
    p.add_argument("--params", default=None, help="params file whose `tracking` section is used "
                   "(default: ./params.yaml when present, else built-in defaults)")
    p.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param, e.g. -S tracking.uri=sqlite:///m.db")
    p.add_argument("--force", action="store_true", help="log even when tracking.enabled is false")


def run_track(a: argparse.Namespace, params: dict | None = None) -> int:
    """Log every record under ``a.root`` under one new parent run; prints the parent's id."""
    from drtl.tracking.log import track_folder
    from drtl.tracking.store import settings

    if params is None:
        from drtl.config import load_params

        params = load_params(a.params, a.set)
    tracking = dict(params.get("tracking") or {})
    if getattr(a, "force", False):
        tracking["enabled"] = True
    cfg = settings(tracking)
    if not cfg.enabled:
        print("tracking.enabled is false: nothing logged (-S tracking.enabled=true or --force to log)")
        return 0
    invocation = {"command": "track", "root": str(a.root),
                  **{k: v for k, v in params.items() if k != "tracking"}}
    t0 = time.time()
    pid = track_folder(a.root, tracking, invocation=invocation)
    print(f"logged the run records under {a.root} to {cfg.uri} (experiment {cfg.experiment!r}) as parent run "
          f"{pid} in {time.time() - t0:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m drtl.tracking", description="drtl runs in MLflow")
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_track_arguments(sub.add_parser("track", help="log the run records under a folder"))
    for name in ("report", "results"):
        p = sub.add_parser(name, help="the results table (and report files) from the store")
        p.add_argument("--uri", default="sqlite:///mlflow.db")
        p.add_argument("--experiment", default="drtl")
        p.add_argument("--parent", default=None, help="parent run id (default: the newest with evaluations)")
        if name == "report":
            p.add_argument("--out", default="reports/mlflow")
            p.add_argument("--shots", default=None, help="K list for K-independent methods, e.g. 1,5,10")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "track":
            return run_track(a)
        from drtl.tracking.read import report_from_mlflow, search_results

        if a.cmd == "results":
            print(search_results(a.uri, a.experiment, a.parent).to_string(index=False))
        else:
            ks = [int(k) for k in a.shots.split(",")] if a.shots else None
            r = report_from_mlflow(a.uri, a.experiment, a.out, a.parent, ks)
            print(f"{r['n_runs']} evaluation runs of parent {r['parent_run_id']} -> {r['out']}/results.csv "
                  f"({r['n_rows']} rows)")
    except DRTLError as exc:
        print(f"drtl: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
