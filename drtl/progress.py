"""Progress bars that show on a terminal and stay quiet in CI logs (bottom layer).

``show=None`` (the default everywhere) means: a bar when stderr is a terminal, or as the environment
variable ``DRTL_PROGRESS`` (``0`` / ``1``) says; ``True`` / ``False`` force it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


def enabled() -> bool:
    if os.environ.get("DRTL_PROGRESS") in ("0", "1"):
        return os.environ["DRTL_PROGRESS"] == "1"
    return sys.stderr.isatty()


def progress(iterable=None, total=None, desc: str | None = None, show: bool | None = None, **kw):
    """A tqdm bar (disabled, hence silent, unless ``show`` or :func:`enabled` says otherwise)."""
    from tqdm.auto import tqdm

    on = enabled() if show is None else bool(show)
    return tqdm(iterable, total=total, desc=desc, disable=not on, leave=False, **kw)


class StepProgress:
    """Progress over numbered steps: a bar, a user callback ``fn(step, total, loss)``, or nothing.

    ``show`` is a callable (called after every step, no bar), or None / True / False as for
    :func:`progress`. No bar is shown when there is nothing left to do (``total <= initial``).
    """

    def __init__(self, show: bool | Callable[[int, int, float | None], None] | None, total: int,
                 initial: int = 0, desc: str | None = None):
        self.fn = show if callable(show) else None
        self.bar = None
        if self.fn is None and total > initial:
            self.bar = progress(total=total, initial=initial, desc=desc, show=show, dynamic_ncols=True)

    def update(self, step: int, total: int, loss: float | None) -> None:
        if self.fn is not None:
            self.fn(step, total, loss)
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            if loss is not None:
                self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
