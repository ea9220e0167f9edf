"""experiments/expert_relation.py: the ``adapted`` score is the model's PSNR-Y on the bottom strips
of the shots (the finetune stage's validation rows), after fine-tuning on their top rows only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drtl.archs import build_arch
from drtl.modelio import save_model
from drtl.stages.expert import shot_psnr
from tests.conftest import experiment_module

SECTION = {"iterations": 2, "batch": 2, "lr_patch": 8, "lr": 1e-12, "schedule": "constant", "log_every": 1,
           "checkpoint_every": 0, "val_fraction": 0.25, "eval_every": 1}


@pytest.fixture
def probe():
    return experiment_module("expert_relation")


def _shots(rng, n=2, hr=32):
    """Smooth HR images (a low-frequency pattern a network can learn) and their 2x subsampling."""
    from scipy import ndimage

    out = []
    for i in range(n):
        h = ndimage.gaussian_filter(rng.uniform(0, 255, (hr, hr, 3)), (3, 3, 0))
        h = np.clip((h - h.min()) / (np.ptp(h) + 1e-9) * 255, 0, 255).astype(np.uint8)
        out.append((f"s{i}", h[::2, ::2].copy(), h))
    return out


def test_adapted_scores_the_bottom_strips_only(probe, tmp_path):
    torch.set_num_threads(1)
    model = build_arch({"name": "edsr_tiny", "scale": 2}, generator=torch.Generator().manual_seed(0))
    path = save_model(tmp_path / "m.pt", model)
    shots = _shots(np.random.default_rng(0))
    strips = [(n, lr[12:], hr[24:]) for n, lr, hr in shots]  # 16 LR rows: the bottom 4 are held out
    # a negligible learning rate leaves the model as it was: the score is its PSNR on the strips
    got = probe.adapted(path, shots, 2, SECTION, seed=0)
    assert got == pytest.approx(shot_psnr(model.eval(), strips, 2), abs=1e-4)
    tops = [(n, lr.copy(), hr.copy()) for n, lr, hr in shots]
    for _, lr, hr in tops:  # the rows it trains on do not enter the score
        lr[:12] = 0
        hr[:24] = 0
    assert probe.adapted(path, tops, 2, SECTION, seed=0) == pytest.approx(got, abs=1e-4)
    # with a real rate the fine-tuning moves the model (best weights kept on the strips)
    assert probe.adapted(path, shots, 2, {**SECTION, "lr": 0.002, "iterations": 10}, seed=0) != pytest.approx(
        got, abs=1e-4)
