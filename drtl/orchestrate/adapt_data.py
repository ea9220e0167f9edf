"""Data preparation of ``drtl adapt``: import the camera's pairs, split them into the K shots and the
rest, and locate the auxiliary cache (its root, the built-in auxiliary HR images, the entry key).

Nothing here trains or calls a stage: :mod:`drtl.orchestrate.adapt` composes these helpers with a
small plan of stage runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from drtl.data.folder import MANIFEST, pair_paths, staged_folder
from drtl.errors import ConfigError, DataError

CACHE_VERSION = 3  # 2: the key covers the content (sha256) of the aux HR files; 3: entries hold bank/
SAMPLE_TOKEN = "@sample"
LAYOUTS = ("auto", "paired", "city100", "realsr", "drealsr")
MARKER = ".drtl-adapt.json"


# ------------------------------------------------------------------------------------------ import
def detect_layout(src: Path) -> str:
    """'paired' (HR/ + LR/) or 'city100' (NNNH.PNG + NNNL.PNG); anything else needs --layout."""
    if (src / "HR").is_dir() and (src / "LR").is_dir():
        return "paired"
    if any(re.fullmatch(r"\d+H\.png", p.name, re.IGNORECASE) for p in src.iterdir()):
        return "city100"
    raise ConfigError(f"{src}: cannot tell the layout (no HR/ + LR/ subfolders, no City100 NNNH.PNG files); "
                      f"pass --layout paired|city100|realsr|drealsr")


def _size_ratio(hr: tuple[int, int], lr: tuple[int, int]) -> int | None:
    for r in range(1, 9):
        if lr[0] * r <= hr[0] < lr[0] * r + r and lr[1] * r <= hr[1] < lr[1] * r + r:
            return r
    return None


def _copy_pairs(dst: Path, paths, manifest=None) -> None:
    """Copy (name, lr, hr) files byte for byte into the paired folder ``dst`` (atomically), with
    ``manifest`` (a DataFrame of their rows) when given."""
    with staged_folder(dst, guard=False) as tmp:
        (tmp / "HR").mkdir()
        (tmp / "LR").mkdir()
        for _, lp, hp in paths:
            shutil.copyfile(hp, tmp / "HR" / hp.name)
            shutil.copyfile(lp, tmp / "LR" / lp.name)
        if manifest is not None:
            manifest.to_csv(tmp / MANIFEST, index=False)


def _import_paired(src: Path, dst: Path, scale: int, names: list[str] | None) -> str:
    """Copy a paired folder byte for byte (its manifest too, so validation checks the hashes).

    Registered pairs (every LR at the HR size) are downscaled like City100 instead. A folder whose
    pairs are at another scale is refused with the scale to pass.
    """
    from drtl.data.folder import read_manifest, select_pairs, write_pairs
    from drtl.data.importers import _pairs
    from drtl.io import image_info

    paths = select_pairs(src, names)
    ratios = {}
    for n, lp, hp in paths:
        try:
            hi, li = image_info(hp), image_info(lp)
        except DataError:
            continue  # unreadable: validation names it
        ratios[n] = _size_ratio((hi["height"], hi["width"]), (li["height"], li["width"]))
    found = set(ratios.values())
    if found == {1}:
        write_pairs(dst, _pairs(src, {n: hp for n, _, hp in paths}, {n: lp for n, lp, _ in paths},
                                [n for n, _, _ in paths], scale), scale)
        return "paired (registered LR at HR size, downscaled)"
    wrong = sorted(r for r in found if r not in (None, scale))
    if wrong:
        bad = next(n for n, r in ratios.items() if r == wrong[0])
        raise ConfigError(f"{src}: the pairs are x{wrong[0]} (e.g. {bad}: HR = {wrong[0]} x LR), not x{scale}; "
                          f"pass --scale {wrong[0]}")
    man = None
    if (src / MANIFEST).is_file():  # keep the source's claims (hashes) for validation to check
        man = read_manifest(src)
        man = man[man["name"].isin([n for n, _, _ in paths])]
    _copy_pairs(dst, paths, man)
    return "paired"


def import_pairs(src, dst, scale: int, layout: str = "auto", names: list[str] | None = None) -> str:
    """Import the camera's pairs into the paired folder ``dst``; returns the layout used."""
    from drtl.data.importers import import_dataset

    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: pairs folder not found")
    if layout not in LAYOUTS:
        raise ConfigError(f"--layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = detect_layout(src)
    if layout == "paired":
        return _import_paired(src, Path(dst), scale, names)
    import_dataset(layout, src, dst, scale, names)
    return layout


# ------------------------------------------------------------------------------------------ split
def split_pairs(data: Path, shots: int, seed: int, scale: int, label="the pairs") -> tuple[list[str], list[str]]:
    """``data/all`` -> ``data/shots`` (the seed's first K names, :func:`drtl.data.splits.few_shot_names`)
    and ``data/rest`` (the others; removed when none). Files are copied byte for byte with their
    manifest rows (built from the files when ``all`` has no manifest). Returns (shots, rest)."""
    from drtl.data.folder import build_manifest, read_manifest
    from drtl.data.splits import few_shot_names

    paths = pair_paths(data / "all")
    names = [n for n, _, _ in paths]
    if shots > len(names):
        raise DataError(f"--shots {shots}: {label} holds only {len(names)} pairs")
    shot_list = few_shot_names(names, shots, seed)
    rest = [n for n in names if n not in set(shot_list)]
    man = read_manifest(data / "all") if (data / "all" / MANIFEST).is_file() else build_manifest(data / "all", scale)
    for part, keep in (("shots", shot_list), ("rest", rest)):
        if keep:
            _copy_pairs(data / part, [p for p in paths if p[0] in set(keep)], man[man["name"].isin(keep)])
        elif (data / part).exists():
            shutil.rmtree(data / part)
    return shot_list, rest


def out_folder(out: Path) -> None:
    """``out`` must be new, empty or an earlier ``drtl adapt`` output; it is marked as one."""
    from drtl.io import write_text

    if out.exists():
        if not out.is_dir():
            raise DataError(f"{out}: exists and is not a folder; choose another --out")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise DataError(f"{out}: exists and is not a `drtl adapt` output folder; refusing to write into it "
                            f"(choose another --out)")
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / MARKER, json.dumps({"format": "drtl-adapt", "version": CACHE_VERSION}) + "\n")


# ------------------------------------------------------------------------------------------ aux cache
def default_cache_root() -> Path:
    if os.environ.get("DRTL_CACHE_DIR"):
        return Path(os.environ["DRTL_CACHE_DIR"]) / "aux"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "drtl" / "aux"


def resolve_aux_sources(sources: list[str], cache_root: Path, echo=None) -> list[str]:
    """``@sample`` -> ``<cache_root>/sample/aux_hr`` (built with make_sample when absent)."""
    out = []
    for s in sources:
        if str(s) == SAMPLE_TOKEN:
            root = Path(cache_root) / "sample"
            if not (root / "aux_hr" / "HR").is_dir():
                from drtl.data.sample import make_sample

                if echo:
                    echo(f"building the built-in auxiliary HR images in {root}")
                with staged_folder(root, guard=False) as tmp:
                    make_sample(tmp, scale=2, seed=0)
            out.append(str(root / "aux_hr"))
        else:
            out.append(str(s))
    return out


def bank_reads(params: dict) -> dict:
    """{'parts': ..., param: value} the ``bank`` stage of the profile's relation reads (the rule of
    :meth:`drtl.stages.Stage.reads_for`, as for every cache key); {} when it needs no bank."""
    from drtl.plan import Roots, bank_for
    from drtl.runner import read_params
    from drtl.stages import get_stage

    bank = bank_for(Roots("", "", "", ""), params)
    if not bank:
        return {}
    parts = bank[0].inputs["parts"]
    return {"parts": parts, **read_params(params, get_stage("bank").reads_for(params, parts))}


def aux_fingerprint(params: dict, hr_sources: list[str], scale: int) -> tuple[str, dict]:
    """(key, what it covers) of the aux cache entry: the ``aux`` params, the content of the auxiliary
    HR folders (:func:`drtl.records.folder_fingerprint`: file names + sha256, not their paths), the
    params the bank stage reads for the parts the profile's relation needs (:func:`bank_reads`), the
    scale and the cache format version."""
    from drtl.data.folder import check_root
    from drtl.records import folder_fingerprint, sha256_json

    content = []
    for src in hr_sources:
        try:
            check_root(src, need_lr=False)
        except DataError as exc:
            raise DataError(f"aux.hr: {exc}") from None
        content.append(folder_fingerprint(Path(src) / "HR"))
    aux = {k: v for k, v in params["aux"].items() if k != "hr"}
    obj = {"version": CACHE_VERSION, "scale": int(scale), "aux": aux, "aux_hr_content": content, "bank": bank_reads(params)}
    return sha256_json(obj)[:16], obj
