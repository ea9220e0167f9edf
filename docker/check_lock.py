"""Check that the Python environment running this script holds exactly requirements.lock.

Run inside the image at build time (docker/Dockerfile*, after the installs) and by the tests on
the project's own environment. Every locked package must be installed at its pinned version (a local
label such as ``+cpu`` satisfies ``==``, as for pip); nothing else may be installed but the project
itself (``drtl``) and pip. ``--torch-deps``: also allow the requirements of the installed torch that
the lock does not hold (the CUDA build's nvidia-* / triton wheels, pinned by torch itself).
Prints one line; exits 1 with the differences.

    python docker/check_lock.py requirements.lock [--torch-deps]
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ALWAYS = {"drtl", "pip"}


def lock_requirements(path: Path) -> dict[str, Requirement]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            if not re.fullmatch(r"==[^,*]+", str(req.specifier)):
                raise SystemExit(f"{path}: {line!r} is not pinned with ==")
            out[canonicalize_name(req.name)] = req
    return out


def installed() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in md.distributions()}


def differences(lock: dict[str, Requirement], have: dict[str, str], torch_deps: bool = False) -> list[str]:
    allowed = set(ALWAYS)
    if torch_deps and "torch" in have:
        allowed |= {canonicalize_name(Requirement(r).name) for r in (md.requires("torch") or [])
                    if "extra ==" not in r}
    out = [f"missing {n}{r.specifier}" for n, r in sorted(lock.items()) if n not in have]
    out += [f"{n}=={have[n]} but the lock pins {r.specifier}" for n, r in sorted(lock.items())
            if n in have and not r.specifier.contains(have[n], prereleases=True)]
    out += [f"not in the lock: {n}=={v}" for n, v in sorted(have.items()) if n not in lock and n not in allowed]
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or not Path(argv[0]).is_file():
        print("usage: python docker/check_lock.py requirements.lock [--torch-deps]", file=sys.stderr)
        return 2
    lock = lock_requirements(Path(argv[0]))
    bad = differences(lock, installed(), "--torch-deps" in argv[1:])
    if bad:
        print(f"check_lock: the environment differs from {argv[0]}: " + "; ".join(bad))
        return 1
    print(f"check_lock: the environment is {argv[0]} ({len(lock)} packages) + drtl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
