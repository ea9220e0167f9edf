"""The paired-folder format and its manifest.

Layout::

    ROOT/HR/<name>.png   high-resolution ground truth, HWC RGB 8-bit
    ROOT/LR/<name>.png   low-resolution input, exactly HR / scale in both dimensions
    ROOT/manifest.csv    one row per pair (written by the importers; rebuilt on demand)

An HR-only folder (``ROOT/HR`` and no ``ROOT/LR``) is a valid *HR source* for auxiliary task
synthesis. Loaders return numpy HWC RGB uint8 arrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas (0.3-0.5 s to import) is loaded only where a DataFrame is built or read
    import pandas as pd

import numpy as np

from drtl.records import sha256_file  # noqa: F401  (one file hash for manifests and records)
from drtl.errors import DataError
from drtl.io import IMAGE_EXTS, atomic_folder, atomic_path, clean_stale_temps, image_info, read_image

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = [
    "name", "hr_path", "lr_path", "scale", "hr_height", "hr_width", "lr_height", "lr_width",
    "hr_sha256", "lr_sha256",
]



def _image_files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")}


def check_root(root: str | os.PathLike, need_lr: bool = True) -> Path:
    """Check a paired folder's structure; return its Path. Raises DataError with one line."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: folder not found; import a dataset first (drtl data import ...)")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    hr_dir = root / "HR"
    if not hr_dir.is_dir():
        raise DataError(f"{root}: no HR/ subfolder; expected ROOT/HR/<name>.png and ROOT/LR/<name>.png")
    if not _image_files(hr_dir):
        raise DataError(f"{hr_dir}: empty folder; it holds no images")
    if need_lr and not (root / "LR").is_dir():
        raise DataError(f"{root}: no LR/ subfolder; expected ROOT/LR/<name>.png next to ROOT/HR")
    return root


def pair_paths(root: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(name, lr_path, hr_path) for every pair, sorted by name. Missing partners are errors."""
    root = check_root(root, need_lr=True)
    hr = _image_files(root / "HR")
    lr = _image_files(root / "LR")
    missing = sorted(set(hr) - set(lr))
    if missing:
        raise DataError(f"{root / 'LR'}: no LR image for {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    extra = sorted(set(lr) - set(hr))
    if extra:
        raise DataError(f"{root / 'HR'}: no HR image for {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
    return [(n, lr[n], hr[n]) for n in sorted(hr)]


def hr_paths(root: str | os.PathLike) -> list[tuple[str, Path]]:
    root = check_root(root, need_lr=False)
    return sorted(_image_files(root / "HR").items())


def check_pair_shape(name_or_path, lr: np.ndarray, hr: np.ndarray, scale: int) -> None:
    if hr.shape[0] != lr.shape[0] * scale or hr.shape[1] != lr.shape[1] * scale:
        raise DataError(
            f"{name_or_path}: LR is {lr.shape[1]}x{lr.shape[0]} but HR is {hr.shape[1]}x{hr.shape[0]}; "
            f"at scale {scale} LR must be exactly HR/{scale}"
        )


def select_pairs(root: str | os.PathLike, names: list[str] | None = None) -> list[tuple[str, Path, Path]]:
    """(name, lr_path, hr_path) of the pairs in ``root``; ``names`` restricts and orders them."""
    paths = pair_paths(root)
    if names is None:
        return paths
    by_name = {n: (lp, hp) for n, lp, hp in paths}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise DataError(f"{root}: no pair named {', '.join(unknown[:5])}")
    return [(n, *by_name[n]) for n in names]


def load_pairs(root: str | os.PathLike, scale: int, names: list[str] | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Load (name, lr, hr) uint8 arrays, checking sizes. ``names`` restricts and orders the pairs."""
    paths = select_pairs(root, names)
    out = []
    for name, lp, hp in paths:
        lr, hr = read_image(lp), read_image(hp)
        check_pair_shape(lp, lr, hr, scale)
        out.append((name, lr, hr))
    return out


def build_manifest(root: str | os.PathLike, scale: int) -> pd.DataFrame:
    """Manifest of a paired folder from the files on disk (no pixel decoding beyond headers)."""
    import pandas as pd

    root = Path(root)
    rows = []
    for name, lp, hp in pair_paths(root):
        hi, li = image_info(hp), image_info(lp)
        rows.append({
            "name": name,
            "hr_path": hp.relative_to(root).as_posix(),
            "lr_path": lp.relative_to(root).as_posix(),
            "scale": int(scale),
            "hr_height": hi["height"], "hr_width": hi["width"],
            "lr_height": li["height"], "lr_width": li["width"],
            "hr_sha256": sha256_file(hp), "lr_sha256": sha256_file(lp),
        })
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def write_manifest(root: str | os.PathLike, scale: int) -> pd.DataFrame:
    df = build_manifest(root, scale)
    with atomic_path(Path(root) / MANIFEST) as tmp:
        df.to_csv(tmp, index=False)
    return df


def subset_folder(src: str | os.PathLike, dst: str | os.PathLike, names: list[str] | None = None,
                  span: tuple[int | None, int | None] | None = None) -> pd.DataFrame:
    """Copy some pairs of a paired folder into a new paired folder (replaced atomically), e.g. a
    validation split of a pool: ``names``, or ``span`` = (start, stop) over the sorted names.
    Returns the new manifest."""
    import shutil

    man = read_manifest(src)
    allnames = sorted(man["name"])
    if names is not None:
        missing = sorted(set(names) - set(allnames))
        if missing:
            raise DataError(f"{src}: no pairs named {', '.join(missing[:5])}; it holds {', '.join(allnames[:5])} ...")
        chosen = list(names)
    else:
        start, stop = span or (None, None)
        chosen = allnames[slice(start, stop)]
    if not chosen:
        raise DataError(f"{src}: the subset is empty (it has {len(allnames)} pairs)")
    rows = man.set_index("name").loc[chosen]
    with atomic_folder(dst) as tmp:
        for name, r in rows.iterrows():
            for col in ("hr_path", "lr_path"):
                (tmp / r[col]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(src) / r[col], tmp / r[col])
        out = rows.reset_index()[MANIFEST_COLUMNS]
        out.to_csv(tmp / MANIFEST, index=False)
    return out


def _manifest_path(root: str | os.PathLike) -> Path:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: no manifest; re-import the dataset or run `drtl data manifest {root} --scale S`")
    return path


def read_manifest(root: str | os.PathLike) -> pd.DataFrame:
    import pandas as pd

    return pd.read_csv(_manifest_path(root), dtype={"name": str})


def manifest_column(root: str | os.PathLike, column: str) -> dict[str, str]:
    """{pair name: the manifest's ``column`` as text}, read with the csv module (no pandas), for
    stages that only need the pairs' hashes."""
    import csv

    path = _manifest_path(root)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if column not in (reader.fieldnames or ()):
            raise DataError(f"{path}: no column {column!r}; rebuild it with `drtl data manifest {root} --scale S`")
        return {row["name"]: row[column] for row in reader}


def _looks_like_dataset(path: Path) -> bool:
    """A dataset folder, or a run folder of a stage (its record ``run.json`` or the orchestrator's
    ``fingerprint.json``): folders drtl itself writes and may replace."""
    return any((path / f).is_file() for f in (MANIFEST, "run.json", "fingerprint.json")) or (path / "HR").is_dir()


@contextmanager
def staged_folder(dest: str | os.PathLike, guard: bool = True) -> Iterator[Path]:
    """Build a folder in a temporary sibling and swap it in only if the block succeeds
    (:func:`drtl.io.atomic_folder`).

    With ``guard`` (the default) an existing ``dest`` is replaced only when it looks like a dataset
    folder (has HR/ or a manifest) or is empty; anything else is refused so a typo never wipes
    unrelated files. On any error the existing ``dest`` is left untouched and the temporary folder
    removed.
    """
    dest = Path(dest)
    if guard and dest.exists():
        if not dest.is_dir():
            raise DataError(f"{dest}: exists and is not a folder; choose another output path")
        if any(dest.iterdir()) and not _looks_like_dataset(dest):
            raise DataError(f"{dest}: exists and is not a dataset folder; refusing to overwrite it")
    if dest.parent.is_dir():
        clean_stale_temps(dest.parent)
    with atomic_folder(dest) as tmp:
        yield tmp


def write_pairs(dest: str | os.PathLike, pairs: Iterator[tuple[str, np.ndarray, np.ndarray]], scale: int,
                progress: Callable | None = None) -> pd.DataFrame:
    """Write (name, lr, hr) uint8 pairs as a paired folder (atomically, with a manifest)."""
    from drtl.io import write_image

    with staged_folder(dest) as tmp:
        (tmp / "HR").mkdir()
        (tmp / "LR").mkdir()
        n = 0
        for name, lr, hr in pairs:
            check_pair_shape(name, lr, hr, scale)
            write_image(tmp / "HR" / f"{name}.png", hr)
            write_image(tmp / "LR" / f"{name}.png", lr)
            n += 1
            if progress:
                progress(name)
        if n == 0:
            raise DataError(f"{dest}: no pairs to write; check the source folder and --names")
        df = write_manifest(tmp, scale)
    return df


def write_hr_folder(dest: str | os.PathLike, images: Iterator[tuple[str, np.ndarray]]) -> int:
    """Write an HR-only source folder atomically; returns the number of images."""
    from drtl.io import write_image

    with staged_folder(dest) as tmp:
        (tmp / "HR").mkdir()
        n = 0
        for name, hr in images:
            write_image(tmp / "HR" / f"{name}.png", hr)
            n += 1
        if n == 0:
            raise DataError(f"{dest}: no images to write")
    return n


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """:func:`drtl.degradations.ops.modcrop` (crop H and W down to multiples of ``scale``, top-left
    anchored), imported on first use so that loading paired folders does not import scipy."""
    from drtl.degradations.ops import modcrop as _modcrop

    return _modcrop(img, scale)
