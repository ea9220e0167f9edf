"""Fine-tuning with validation strips held out of the K pairs: keep the best weights, stop early."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from drtl.data.patches import PairSampler, split_rows
from drtl.errors import ConfigError
from drtl.train import TrainConfig
from drtl.train.finetune import finetune, val_loss


class Up(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 12, 3, padding=1)
        self.ps = nn.PixelShuffle(2)

    def forward(self, x):
        return self.ps(self.c(x))


def _pairs(n=2, h=32):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        hr = (rng.random((2 * h, 2 * h, 3)) * 255).astype(np.uint8)
        out.append((hr[::2, ::2].copy(), hr))
    return out


def test_split_rows_holds_out_the_bottom_strip():
    train, val = split_rows(_pairs(), 2, 0.25, 16)
    assert [lr.shape for lr, _ in train] == [(24, 32, 3)] * 2 and [hr.shape for _, hr in train] == [(48, 64, 3)] * 2
    assert [tuple(v[0].shape) for v in val] == [(1, 3, 8, 32)] * 2 and [tuple(v[1].shape) for v in val] == [(1, 3, 16, 64)] * 2
    assert split_rows(_pairs(), 2, 0.0, 16)[1] == []          # off
    assert split_rows(_pairs(h=20), 2, 0.25, 16)[1] == []     # too small to keep a patch: no strip


def test_keeps_the_best_weights_and_stops_early():
    torch.manual_seed(0)
    train, val = split_rows(_pairs(), 2, 0.25, 16)
    cfg = TrainConfig(iterations=40, batch=4, lr_patch=16, lr=0.5, log_every=10)  # lr far too high: diverges
    model = Up()
    start = val_loss(model, val, torch.device("cpu"))
    hist = finetune(model, PairSampler(train, 2, 16), cfg, val=val, eval_every=2, patience=3, progress=False)
    assert hist["stopped_at"] < 40 and len(hist["loss"]) == hist["stopped_at"]
    best = min(v for _, v in hist["val_curve"])
    assert hist["best_val_loss"] == best <= start
    assert val_loss(model, val, torch.device("cpu")) == pytest.approx(best)  # the best weights are restored
    with pytest.raises(ConfigError):
        finetune(Up(), PairSampler(train, 2, 16), cfg, val=val, eval_every=0)


def test_without_validation_nothing_changes():
    train, _ = split_rows(_pairs(), 2, 0.0, 16)
    cfg = TrainConfig(iterations=6, batch=4, lr_patch=16, lr=1e-3, log_every=3)
    a, b = Up(), Up()
    b.load_state_dict(a.state_dict())
    ha = finetune(a, PairSampler(train, 2, 16), cfg, gen=torch.Generator().manual_seed(1), progress=False)
    hb = finetune(b, PairSampler(train, 2, 16), cfg, gen=torch.Generator().manual_seed(1), val=None, progress=False)
    assert ha["loss"] == hb["loss"] and "best_step" not in ha
