"""The optimizer every trainer uses: ``torch.optim.Adam`` without its ``torch._dynamo`` import."""

from __future__ import annotations

import torch


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` without the ``torch._dynamo`` import (about 1.2-1.5 s per process).

    ``Adam.step`` is wrapped by ``torch.optim`` in a function that imports ``torch._dynamo`` on every
    call (to insert a graph break for ``torch.compile``), and ``add_param_group`` in one that imports
    it once to turn the compiler off. This project never compiles, so ``step`` runs the same update
    (``Adam.step``'s own body) under ``no_grad`` -- what the wrapper does for a non-differentiable
    optimizer -- and the wrapped methods' lazily filled cache is pre-filled with the methods
    themselves. The updates are bit-identical to ``torch.optim.Adam``'s (tested) and the state dict
    is the same, so checkpoints are interchangeable.
    """

    def __init__(self, *args, **kwargs):
        _prefill_dynamo_disable()
        super().__init__(*args, **kwargs)

    @torch.no_grad()
    def step(self, closure=None):
        if self.defaults.get("differentiable"):
            return super().step(closure)
        return torch.optim.Adam.step.__wrapped__(self, closure)


def _prefill_dynamo_disable() -> None:
    import sys

    if "torch._dynamo" in sys.modules:  # already paid for: the normal path is as cheap
        return
    for cls in (torch.optim.Optimizer, torch.optim.Adam):
        for f in vars(cls).values():
            inner, code = getattr(f, "__wrapped__", None), getattr(f, "__code__", None)
            if inner is not None and code is not None and code.co_filename.endswith("_compile.py"):
                if getattr(inner, "__dynamo_disable", None) is None:
                    setattr(inner, "__dynamo_disable", inner)


__all__ = ["Adam"]
