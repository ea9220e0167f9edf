"""Stage ``validate``: the great-expectations suite (:mod:`drtl.data.validate`) on the few-shot
pool (which must share no image with the test pairs) and on the test pairs."""

from __future__ import annotations

import json
from pathlib import Path

from drtl.errors import ValidationError


GATE = "passed"


def run(params: dict, inputs: dict, out: Path, on_log=None) -> dict:
    """Stage contract: validate the pool (disjoint from the test pairs) and the test pairs; write
    ``out/pool.json`` and ``out/test.json``, and ``out/passed`` when every expectation holds; fail on
    any failed expectation. ``test`` = "" or
    "none": the pool alone (e.g. ``drtl adapt`` when every pair is a shot)."""
    from drtl.data.validate import summarize, validate_folder
    from drtl.io import write_text

    scale = int(inputs.get("scale") or params["target"]["scale"])
    pool, test = inputs.get("pool") or params["target"]["pool"], inputs.get("test")
    test = params["target"]["test"] if test is None else (None if str(test).lower() in ("", "none") else test)
    reports = {"pool": validate_folder(pool, scale, test)}
    if test is not None:
        reports["test"] = validate_folder(test, scale)
    out = Path(out)
    for name, r in reports.items():
        write_text(out / f"{name}.json", json.dumps(r, indent=2) + "\n")
    failed = [summarize(r) for r in reports.values() if not r["success"]]
    if failed:
        raise ValidationError("; ".join(failed))
    write_text(out / GATE, "validation passed\n")  # the same bytes whatever the data: it orders, it does not key
    return {f"{name}_pairs": r["n_pairs"] for name, r in reports.items()}
