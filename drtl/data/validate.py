"""Dataset validation with great-expectations.

The suite runs over a table of per-pair facts gathered from a paired folder (its manifest when
present, the files on disk otherwise):

- files exist and decode; 8-bit RGB on disk (grayscale, RGBA and 16-bit are rejected here:
  re-import them, which converts with a warning);
- LR size x scale == HR size;
- no duplicate image content (sha256) within the folder; hashes match the manifest when present;
- when a test folder is given: no content shared between this folder and the test set;
- registration: each LR, bicubic-upscaled, is shifted by at most FAIL_SHIFT_PX HR px against its HR
  and correlates with it at least FAIL_CORRELATION (drtl.data.registration); the report holds the
  estimated shift of every pair under ``registration.pairs``.

``validate_folder`` returns a report dict; ``check_folder`` raises ``ValidationError`` with one
line naming the failing expectations and files.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from drtl.config import check_scale
from drtl.data.folder import MANIFEST, _image_files, check_root, sha256_file
from drtl.data.registration import FAIL_CORRELATION, FAIL_SHIFT_PX, check_pair
from drtl.errors import DataError, ValidationError
from drtl.io import image_info, read_image

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


def _facts_for(path: Path | None, prefix: str) -> tuple[dict, np.ndarray | None]:
    row = {f"{prefix}_exists": False, f"{prefix}_decodes": False, f"{prefix}_mode": "", f"{prefix}_bits": 0,
           f"{prefix}_height": -1, f"{prefix}_width": -1, f"{prefix}_sha256": ""}
    if path is None or not path.is_file():
        return row, None
    row[f"{prefix}_exists"] = True
    row[f"{prefix}_sha256"] = sha256_file(path)
    try:
        info = image_info(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = read_image(path)  # full decode: truncated files pass a header check
    except DataError:
        return row, None
    row.update({f"{prefix}_decodes": True, f"{prefix}_mode": info["mode"], f"{prefix}_bits": info["bits"],
                f"{prefix}_height": info["height"], f"{prefix}_width": info["width"]})
    return row, img


def _registration(lr, hr, scale: int) -> dict:
    """lr_* registration columns. A pair that cannot be compared (missing, wrong size) or judged
    (too small or too flat: drtl.data.registration) gets neutral values: the other expectations
    name a broken file, and the report marks an unjudged pair ``judged: false``."""
    neutral = {"registration_checked": False, "registration_judged": False, "lr_shift_y": 0.0, "lr_shift_x": 0.0,
               "lr_shift_px": 0.0, "lr_correlation": 1.0, "bicubic_psnr_y": float("nan"), "texture": float("nan")}
    if lr is None or hr is None or hr.shape[0] != lr.shape[0] * scale or hr.shape[1] != lr.shape[1] * scale:
        return neutral
    r = check_pair(lr, hr, scale)
    row = {**neutral, "registration_checked": True, "bicubic_psnr_y": r["psnr_y"], "texture": r["texture"]}
    if r["reliable"]:
        row.update({"registration_judged": True, "lr_shift_y": r["shift_y"], "lr_shift_x": r["shift_x"],
                    "lr_shift_px": r["shift_px"], "lr_correlation": r["correlation"]})
    return row


def collect_facts(root: str | os.PathLike, scale: int, registration: bool = True) -> pd.DataFrame:
    """One row per HR image (and per orphan LR image) with what the suite checks (with
    ``registration``: the pair's estimated shift and correlation, drtl.data.registration)."""
    root = check_root(root, need_lr=True)
    hr = _image_files(root / "HR")
    lr = _image_files(root / "LR")
    manifest = None
    if (root / MANIFEST).is_file():
        manifest = pd.read_csv(root / MANIFEST, dtype={"name": str}).set_index("name")
    rows = []
    for name in sorted(set(hr) | set(lr)):
        row = {"name": name, "hr_file": f"HR/{hr[name].name}" if name in hr else f"HR/{name}.png",
               "lr_file": f"LR/{lr[name].name}" if name in lr else f"LR/{name}.png"}
        hr_row, hr_img = _facts_for(hr.get(name), "hr")
        lr_row, lr_img = _facts_for(lr.get(name), "lr")
        row.update(hr_row)
        row.update(lr_row)
        if registration:
            row.update(_registration(lr_img, hr_img, scale))
        row["lr_height_x_scale"] = row["lr_height"] * scale
        row["lr_width_x_scale"] = row["lr_width"] * scale
        for p in ("hr", "lr"):  # one column per side, so a changed file is blamed by its own name
            if manifest is not None and name in manifest.index:
                row[f"{p}_matches_manifest"] = bool(manifest.loc[name, f"{p}_sha256"] == row[f"{p}_sha256"])
            else:
                row[f"{p}_matches_manifest"] = manifest is None
        rows.append(row)
    return pd.DataFrame(rows)


def _suite(test_hashes: list[str] | None):
    import great_expectations as gx

    E = gx.expectations
    exps = [E.ExpectTableRowCountToBeBetween(min_value=1)]
    for p in ("hr", "lr"):
        exps += [
            E.ExpectColumnValuesToBeInSet(column=f"{p}_exists", value_set=[True]),
            E.ExpectColumnValuesToBeInSet(column=f"{p}_decodes", value_set=[True]),
            E.ExpectColumnValuesToBeInSet(column=f"{p}_mode", value_set=["RGB"]),
            E.ExpectColumnValuesToBeInSet(column=f"{p}_bits", value_set=[8]),
            E.ExpectColumnValuesToBeUnique(column=f"{p}_sha256"),
        ]
        if test_hashes is not None:
            exps.append(E.ExpectColumnValuesToNotBeInSet(column=f"{p}_sha256", value_set=sorted(test_hashes) or [""]))
    exps += [
        E.ExpectColumnPairValuesToBeEqual(column_A="hr_height", column_B="lr_height_x_scale"),
        E.ExpectColumnPairValuesToBeEqual(column_A="hr_width", column_B="lr_width_x_scale"),
        E.ExpectColumnValuesToBeInSet(column="hr_matches_manifest", value_set=[True]),
        E.ExpectColumnValuesToBeInSet(column="lr_matches_manifest", value_set=[True]),
        E.ExpectColumnValuesToBeBetween(column="lr_shift_px", min_value=0.0, max_value=FAIL_SHIFT_PX),
        E.ExpectColumnValuesToBeBetween(column="lr_correlation", min_value=FAIL_CORRELATION, max_value=1.0),
    ]
    return exps


# registration columns: how a failing value reads in the one-line error (value, then the rule)
_MEASURED = {
    "lr_shift_px": ("{:.2f} HR px", f"shifts over {FAIL_SHIFT_PX} HR px: crop or register each LR to its HR"),
    "lr_correlation": ("correlation {:.3f}", f"correlation with the HR under {FAIL_CORRELATION}: the LR is not a "
                       "low-resolution view of its HR; a wrong or shifted pair, or a degradation that leaves too "
                       "little of the image"),
}


def _describe(exp_type: str, kwargs: dict) -> str:
    cols = [str(kwargs[k]) for k in ("column", "column_A", "column_B") if k in kwargs]
    return f"{exp_type}({', '.join(cols)})" if cols else exp_type


def validate_folder(root: str | os.PathLike, scale: int, test_root: str | os.PathLike | None = None) -> dict:
    """Run the suite; return {'success', 'n_pairs', 'failures': [{'expectation', 'files'}]}."""
    import great_expectations as gx

    scale = check_scale(scale)
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    facts = collect_facts(root, scale)
    test_hashes = None
    if test_root is not None:
        tf = collect_facts(test_root, scale, registration=False)
        test_hashes = [h for h in list(tf["hr_sha256"]) + list(tf["lr_sha256"]) if h]
    ctx = gx.get_context(mode="ephemeral")
    try:
        ctx.variables.progress_bars = {"globally": False}
    except Exception:  # the progress-bar switch moved between GX releases; never fail on it
        pass
    bd = ctx.data_sources.add_pandas("drtl").add_dataframe_asset("manifest").add_batch_definition_whole_dataframe("all")
    suite = gx.ExpectationSuite(name="drtl_paired_folder")
    for e in _suite(test_hashes):
        suite.add_expectation(e)
    suite = ctx.suites.add(suite)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bd.get_batch(batch_parameters={"dataframe": facts}).validate(suite, result_format="COMPLETE")
    failures = []
    for r in res.results:
        if r.success:
            continue
        cfg = r.expectation_config
        idx = r.result.get("unexpected_index_list") or []
        col = cfg.kwargs.get("column", "") or cfg.kwargs.get("column_A", "")
        file_col = "lr_file" if col.startswith("lr_") else "hr_file"
        if col.startswith("hr_height") or col.startswith("hr_width"):
            file_col = "lr_file"  # a size mismatch is blamed on the LR file
        rows = {str(facts.loc[i, file_col]): i for i in idx if i in facts.index}
        failure = {"expectation": _describe(cfg.type, cfg.kwargs), "files": sorted(rows)}
        if col in _MEASURED:  # the failing values, for the one-line error
            failure.update(column=col, values=[float(facts.loc[rows[f], col]) for f in failure["files"]])
        failures.append(failure)
    reg = {}
    for _, r in facts.iterrows():
        if not r["registration_checked"]:
            continue
        entry = {"judged": bool(r["registration_judged"]), "bicubic_psnr_y": float(r["bicubic_psnr_y"]),
                 "texture": float(r["texture"])}
        if entry["judged"]:
            entry.update({"shift_y": float(r["lr_shift_y"]), "shift_x": float(r["lr_shift_x"]),
                          "shift_px": float(r["lr_shift_px"]), "correlation": float(r["lr_correlation"])})
        reg[str(r["name"])] = entry
    return {"success": bool(res.success), "root": str(root), "scale": int(scale), "n_pairs": int(len(facts)),
            "failures": failures,
            "registration": {"fail_shift_px": FAIL_SHIFT_PX, "fail_correlation": FAIL_CORRELATION,
                             "shift_units": "HR px (dy down, dx right) of the bicubic-upscaled LR against HR",
                             "pairs": reg}}


def summarize(report: dict) -> str:
    parts = []
    for f in report["failures"]:
        fmt, rule = _MEASURED.get(f.get("column"), (None, None))
        names = [f"{n} ({fmt.format(v)})" for n, v in zip(f["files"], f["values"])] if fmt else f["files"]
        files = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "") + (f" [{rule}]" if rule and names else "")
        parts.append(f"{f['expectation']}: {files}" if files else f["expectation"])
    return f"{report['root']} fails validation: " + "; ".join(parts)


def check_folder(root, scale: int, test_root=None) -> dict:
    report = validate_folder(root, scale, test_root)
    if not report["success"]:
        raise ValidationError(summarize(report))
    return report
