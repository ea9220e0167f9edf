"""Progress bars that show on a terminal and stay quiet in CI logs (bottom layer)."""

from __future__ import annotations

import os
import sys


def enabled() -> bool:
    if os.environ.get("DRTL_PROGRESS") in ("0", "1"):
        return os.environ["DRTL_PROGRESS"] == "1"
    return sys.stderr.isatty()


def progress(iterable=None, total=None, desc: str | None = None, **kw):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled(), leave=False, **kw)
