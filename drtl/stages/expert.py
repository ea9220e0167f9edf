"""The expert relation (``relation.similarity: expert``): which family's pre-training restores the
K shots best.

The DRN's cosine measures how the target *looks* next to each task; what DRTL needs is which tasks
*transfer*. The expert relation measures that directly, at the cost of a few small trainings:

- one **expert** per task family, pre-trained from fresh weights on that family's tasks alone
  (the profile's network ``arch``, the recipe ``relation.expert``), once, by the camera-free
  ``bank`` stage (:mod:`drtl.stages.bank`);
- the camera-fitted task (``relation.fitted``), a family of its own, gets an expert trained on its
  pairs for each (K, seed), and so do the composed tasks (``relation.composed``, one family);
- per (K, seed) every expert super-resolves the LR of the K shots; its score is the mean PSNR-Y
  (border = scale) against their HR. The test pairs are never read;
- family weights ``softmax(psnr / tau_db)``, shared evenly by the family's tasks: a task's logit
  is ``psnr_f / tau_db - log(n_f)``.

The experts are the headroom's family models at the probe's budget (``drtl headroom``; both use
:func:`drtl.stages.train.group_model` on the profile's ``arch``: ``edsr_tiny`` in the CPU profiles,
``edsr_baseline`` in ``params.gpu.yaml``); the relation asks the same question as the headroom
without fine-tuning or test pairs.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from drtl.stages.train import group_model

def shot_psnr(model, shots, scale: int, device: str = "cpu") -> float:
    """Mean PSNR-Y (border = scale) of ``model``'s SR of the (name, lr, hr) shots' LR."""
    from drtl.metrics import psnr
    from drtl.upscale import upscale_image

    return float(np.mean([psnr(upscale_image(model, lr, device=device), hr, crop_border=scale)
                          for _, lr, hr in shots]))


class Experts:
    """The family experts of a bank, networks of ``arch`` (the params' ``arch``, the network the
    table trains): trained by the bank stage (:meth:`train`), loaded by the relation stage
    (:meth:`from_bank`); :meth:`scores` per (K, seed)."""

    def __init__(self, rp: dict, tasks, pairs, scale: int, device: str, arch: dict):
        self.section, self.seed, self.arch = dict(rp["expert"]), int(rp["seed"]), dict(arch)
        self.fams = [t.family for t in tasks] if tasks is not None else []
        self.pairs, self.scale, self.device = pairs, scale, device
        self.models: dict = {}

    def train(self) -> dict:
        """{family: its expert}, one pre-training per family (a progress bar on a terminal)."""
        from drtl.progress import progress

        for family in progress(list(dict.fromkeys(self.fams)), desc="bank: family experts"):
            w = [1.0 if f == family else 0.0 for f in self.fams]
            self.models[family] = group_model(self.pairs, w, self.arch, self.section, self.scale, self.device,
                                              self.seed, "relation.expert")
        return self.models

    @classmethod
    def from_bank(cls, folder, families: list[str], rp: dict, scale: int, device: str, arch: dict) -> "Experts":
        """The experts a bank stage saved under ``folder/experts/``."""
        from pathlib import Path

        from drtl.errors import DataError
        from drtl.modelio import load_model

        ex = cls(rp, None, None, scale, device, arch)
        for family in dict.fromkeys(families):
            path = Path(folder) / "experts" / f"{family}.pt"
            if not path.is_file():
                raise DataError(f"{folder}: no expert for family {family!r}; rebuild the bank with --parts experts")
            ex.models[family] = load_model(path, expect_scale=scale)[0].cpu()
        return ex

    def scores(self, shots, extra: dict | None = None) -> dict[str, float]:
        """{family: the family expert's mean PSNR-Y on the shots}; ``extra``: {family: its tasks'
        (lr, hr) pairs, one list per task}, families made for these shots (the fitted task, the
        composed tasks), each gets an expert trained on its tasks at equal weight and scored too."""
        out = {f: shot_psnr(m, shots, self.scale, self.device) for f, m in self.models.items()}
        for family, pairs in (extra or {}).items():
            model = group_model(pairs, [1.0] * len(pairs), self.arch, self.section, self.scale, self.device,
                                self.seed, "relation.expert")
            out[family] = shot_psnr(model, shots, self.scale, self.device)
        return out


def task_logits(families: list[str], family_psnr: dict[str, float], tau_db: float) -> np.ndarray:
    """Per task ``psnr_f / tau_db - log(n_f)``: softmax over the tasks gives each family
    ``softmax(psnr / tau_db)``, shared evenly by its tasks."""
    n = Counter(families)
    return np.array([family_psnr[f] / float(tau_db) - math.log(n[f]) for f in families], dtype=np.float64)
