"""Stage: synthesize auxiliary tasks (LR/HR pairs for every recipe of the task bank).

Layout of the output folder::

    OUT/hr/<image>.png                 HR sources, mod-cropped (shared by every task)
    OUT/lr/<task>/<image>_v<k>.png     LR realisations (k < variants) of each task
    OUT/tasks.yaml                     the task recipes (frozen, reloadable)
    OUT/synth.json                     scale, images, train/val split of the HR images, counts

The HR images are split once into train (DRN + pre-training) and val (held-out DRN accuracy).
Every LR image depends only on (seed, task name, image name, variant), so adding or removing a
task never changes the others.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from drtl.data.folder import hr_paths, modcrop, staged_folder
from drtl.degradations.resize import imresize
from drtl.degradations.tasks import Task, dump_tasks, get_target, get_task, load_tasks, make_pair, task_bank
from drtl.errors import ConfigError, DataError
from drtl.io import read_image, write_image
from drtl.progress import progress


def _stable(s: str) -> int:
    return zlib.crc32(s.encode())


def select_tasks(families=None, names=None, exclude=None) -> list[Task]:
    """The bank's tasks by families / names, minus ``exclude`` (e.g. the positive control's held-out task)."""
    tasks = task_bank(names=names, families=families)
    if exclude:
        drop = {get_task(n).name for n in exclude}  # unknown names: a one-line ConfigError
        tasks = [t for t in tasks if t.name not in drop]
        if not tasks:
            raise ConfigError("aux.exclude removes every selected task; keep at least one")
    return tasks


def _aux_images(sources: list[str], scale: int, max_side: int | None) -> list[tuple[str, np.ndarray]]:
    imgs, seen = [], set()
    for src in sources:
        for name, path in hr_paths(src):
            key = f"{Path(src).name}_{name}" if name in seen else name
            seen.add(key)
            img = read_image(path)
            if max_side and max(img.shape[:2]) > max_side:
                img = imresize(img, scale=max_side / max(img.shape[:2]))
            imgs.append((key, modcrop(img, scale)))
    if not imgs:
        raise DataError(f"no auxiliary HR images in {', '.join(map(str, sources))}")
    return imgs


def synthesize(aux_hr: list[str], out: str | Path, scale: int, families=None, names=None, variants: int = 1,
               val_fraction: float = 0.25, max_hr_side: int | None = 256, seed: int = 0, exclude=None) -> dict:
    """Make every task's LR images from the auxiliary HR sources; returns the stage metrics."""
    tasks = select_tasks(families, names, exclude)
    images = _aux_images(list(aux_hr), scale, max_hr_side)
    n_val = int(round(len(images) * val_fraction))
    if n_val >= len(images):
        raise DataError(f"val_fraction {val_fraction} leaves no training images out of {len(images)}")
    order = np.random.default_rng(seed).permutation(len(images))
    val = sorted(images[i][0] for i in order[:n_val])
    with staged_folder(out) as tmp:
        (tmp / "hr").mkdir()
        for name, hr in images:
            write_image(tmp / "hr" / f"{name}.png", hr)
        for task in progress(tasks, desc="synthesize"):
            d = tmp / "lr" / task.name
            d.mkdir(parents=True)
            for name, hr in images:
                for v in range(variants):
                    rng = np.random.default_rng([seed, _stable(task.name), _stable(name), v])
                    lr, _ = make_pair(hr, task, scale, rng)
                    write_image(d / f"{name}_v{v}.png", lr)
        dump_tasks(tasks, tmp / "tasks.yaml")
        info = {"scale": int(scale), "seed": int(seed), "variants": int(variants), "n_tasks": len(tasks),
                "images": [n for n, _ in images], "val": val,
                "train": sorted(n for n, _ in images if n not in set(val)),
                "families": sorted({t.family for t in tasks})}
        (tmp / "synth.json").write_text(json.dumps(info, indent=2) + "\n")
    return {"n_tasks": len(tasks), "n_images": len(images), "n_val_images": len(val),
            "n_pairs": len(tasks) * len(images) * variants}


def load_synth(root: str | Path, split: str = "train", tasks_subset: list[str] | None = None):
    """(tasks, pairs_per_task, info): pairs_per_task[i] = [(lr, hr), ...] for the split's images."""
    root = Path(root)
    if not (root / "synth.json").is_file():
        raise DataError(f"{root}: not a synthesized task folder (no synth.json); run `drtl synthesize` first")
    info = json.loads((root / "synth.json").read_text())
    tasks = load_tasks(root / "tasks.yaml")
    if tasks_subset is not None:
        by_name = {t.name: t for t in tasks}
        missing = [n for n in tasks_subset if n not in by_name]
        if missing:
            raise DataError(f"{root}: tasks {missing} were not synthesized")
        tasks = [by_name[n] for n in tasks_subset]
    names = {"train": info["train"], "val": info["val"], "all": info["images"]}[split]
    hrs = {n: read_image(root / "hr" / f"{n}.png") for n in names}
    pairs = []
    for t in tasks:
        pairs.append([(read_image(root / "lr" / t.name / f"{n}_v{v}.png"), hrs[n])
                      for n in names for v in range(info["variants"])])
    return tasks, pairs, info


def run(params: dict, inputs: dict, out: Path, on_log=None) -> dict:
    """Stage contract (drtl.stages): the auxiliary tasks of ``params['aux']`` into ``out``."""
    a = params["aux"]
    return synthesize(a["hr"], out, int(params["target"]["scale"]), a["families"], a["tasks"], a["variants"],
                      a["val_fraction"], a["max_hr_side"], a["seed"], a.get("exclude"))


def synthesize_target(task_name: str, hr_dirs: list[str], out: str | Path, scale: int, seed: int = 0,
                      max_hr_side: int | None = None) -> int:
    """A paired folder (``OUT/{HR,LR}`` + manifest) of one bank task or target camera
    (:data:`drtl.degradations.tasks.TARGET_CAMERAS`) applied to HR images: the target of the
    positive control (``make control``) or of ``make nonlinear``, made from images the bank never saw."""
    from drtl.data.folder import write_manifest
    from drtl.io import atomic_folder, write_image

    task = get_target(task_name)
    images = _aux_images(list(hr_dirs), scale, max_hr_side)
    with atomic_folder(out) as tmp:
        for name, hr in images:
            rng = np.random.default_rng([seed, _stable(task.name), _stable(name)])
            lr, hr_c = make_pair(hr, task, scale, rng)
            write_image(tmp / "HR" / f"{name}.png", hr_c)
            write_image(tmp / "LR" / f"{name}.png", lr)
        write_manifest(tmp, scale)
    return len(images)
