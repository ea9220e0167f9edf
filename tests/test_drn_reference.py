"""The reference DRN (drtl.archs.drn, ``reference: true``): it embeds LR/HR pairs, so it sees the
distortion (LR minus the HR downscaled) rather than the content.

The pinned behaviour: two tasks whose LR images alone are indistinguishable (random images with a
random brightness; task B adds a fixed brightness offset to the bicubic LR) are told apart by the
reference DRN and not by the LR-only DRN of the same size and budget; the target embedding of a
reference DRN needs the shots' HR images and one-line errors say so.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drtl.archs import build_arch
from drtl.archs.drn import drn_input, reference_of
from drtl.data.patches import PairSampler
from drtl.errors import ConfigError
from drtl.relation import DRNConfig, embed_images, evaluate_drn, train_drn

SCALE, LR, PATCH = 2, 24, 16


def _pairs(seed: int, offset: float, n: int = 8):
    """(lr, hr) uint8 pairs: HR random blocks at a random brightness, LR = bicubic(HR) + offset."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        level = rng.uniform(0.25, 0.65)
        low = rng.uniform(-0.2, 0.2, (LR // 4, LR // 4, 3)) + level
        hr = np.clip(np.repeat(np.repeat(low, 4 * SCALE, 0), 4 * SCALE, 1), 0, 1)
        t = torch.from_numpy(hr).permute(2, 0, 1)[None].float()
        lr = reference_of(t, (LR, LR))[0].permute(1, 2, 0).numpy() + offset
        out.append(((np.clip(lr, 0, 1) * 255).round().astype(np.uint8), (hr * 255).round().astype(np.uint8)))
    return out


def _accuracy(reference: bool) -> float:
    gen = torch.Generator().manual_seed(0)
    enc = build_arch({"name": "drn", "num_feat": 8, "emb_dim": 16, "depth": 2, "reference": reference}, generator=gen)
    train = [PairSampler(_pairs(s, off), SCALE, PATCH) for s, off in ((1, 0.0), (2, 0.12))]
    bank, _ = train_drn(enc, train, DRNConfig(steps=80, batch_per_task=8, lr_patch=PATCH, lr=3e-3, progress=False), gen)
    held = [PairSampler(_pairs(s, off), SCALE, PATCH, augment=False) for s, off in ((3, 0.0), (4, 0.12))]
    return evaluate_drn(enc, bank, held, 64, PATCH, torch.Generator().manual_seed(1))["accuracy"]


def test_reference_drn_sees_what_lr_alone_cannot():
    with_ref, lr_only = _accuracy(True), _accuracy(False)
    assert with_ref >= 0.9, with_ref
    assert lr_only <= 0.75, lr_only


def test_reference_input_layout_and_zero_residual():
    enc = build_arch({"name": "drn", "num_feat": 8, "emb_dim": 16, "depth": 1, "reference": True})
    assert enc.arch_cfg["reference"] is True and enc.input_ch == 6
    hr = torch.rand(2, 3, 32, 32)
    x = drn_input(enc, reference_of(hr, (16, 16)), hr)
    assert x.shape == (2, 6, 16, 16)
    assert torch.equal(x[:, :3], x[:, 3:])  # LR that is the bicubic reference: no distortion
    assert enc(x).shape == (2, 16)
    with pytest.raises(ValueError, match="HR images are required"):
        drn_input(enc, x[:, :3], None)
    plain = build_arch({"name": "drn", "num_feat": 8, "emb_dim": 16, "depth": 1})
    assert plain.arch_cfg["reference"] is False and drn_input(plain, x[:, :3], None) is not None


def test_target_embedding_needs_the_shots_hr():
    enc = build_arch({"name": "drn", "num_feat": 8, "emb_dim": 16, "depth": 1, "reference": True})
    lr, hr = _pairs(5, 0.0, 2)[0]
    with pytest.raises(ConfigError, match="pass the shots' HR images"):
        embed_images(enc, [lr], PATCH, 4)
    e = embed_images(enc, [lr], PATCH, 4, hr_images=[hr])
    assert e.shape == (16,) and abs(np.linalg.norm(e) - 1) < 1e-9
    with pytest.raises(ConfigError, match="drn.*reference"):
        build_arch({"name": "drn", "reference": "yes"})


def test_reference_match_removes_exposure_and_white_balance():
    """``reference_match``: a capture that differs from its reference only by a per-channel gain and
    offset (exposure, white balance) has a zero ``LR - matched reference``; a blur does not."""
    from drtl.archs.drn import match_moments

    g = torch.Generator().manual_seed(0)
    ref = torch.rand(2, 3, 16, 16, generator=g)
    gain, offset = torch.tensor([0.8, 1.1, 0.9]).view(1, 3, 1, 1), torch.tensor([0.05, -0.02, 0.1]).view(1, 3, 1, 1)
    shifted = ref * gain + offset
    assert torch.allclose(match_moments(ref, shifted), shifted, atol=1e-3)
    blurred = torch.nn.functional.avg_pool2d(ref, 3, 1, 1, count_include_pad=False)
    assert (match_moments(ref, blurred) - blurred).abs().mean() > 0.02
    plain = build_arch({"name": "drn", "num_feat": 8, "emb_dim": 8, "depth": 1, "reference": True})
    matched = build_arch({"name": "drn", "num_feat": 8, "emb_dim": 8, "depth": 1, "reference": True,
                          "reference_match": True})
    matched.load_state_dict(plain.state_dict())
    with torch.no_grad():  # same weights: the photometric shift moves the plain embedding, not the matched one
        e_plain = plain(torch.cat([shifted, ref], 1)) - plain(torch.cat([shifted, shifted], 1))
        e_match = matched(torch.cat([shifted, ref], 1)) - matched(torch.cat([shifted, shifted], 1))
    assert e_match.abs().max() < 1e-3 < e_plain.abs().max()
    with pytest.raises(ConfigError, match="reference_match"):
        build_arch({"name": "drn", "reference": True, "reference_match": "yes"})
