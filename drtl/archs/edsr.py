"""EDSR without BatchNorm (Lim et al. 2017), laid out like BasicSR's ``EDSR``.

Tensors are NCHW float32 RGB in [0, 1] in and out (the output is *not* clamped; clamp when saving).

Layout (parameter names follow BasicSR, so the structure is recognisable)::

    x -> (x - rgb_mean) * img_range -> conv_first -> body (num_block x ResidualBlockNoBN)
      -> conv_after_body (+ conv_first features: the classic EDSR long skip)
      -> upsample (PixelShuffle: x2 / x3 / x4 = two x2 stages) -> conv_last -> / img_range

``global_residual=False`` (classic EDSR): ``out = conv_last(...) / img_range + rgb_mean``.
``global_residual=True`` (default here): ``out = bicubic(x) + conv_last(...) / img_range``, with
``bicubic = F.interpolate(x, scale_factor=scale, mode='bicubic', align_corners=False)``; the network
only has to learn the residual to bicubic. In that mode ``conv_last`` is initialised with PyTorch's
default init multiplied by ``tail_init_scale`` (0.1) and a zero bias, so an untrained network
already outputs (nearly) bicubic -- a sensible starting point for few-shot training, and not a
degenerate one: the scale is not 0, so every layer receives gradient from the first step (a
zero-initialised tail would leave all other layers without gradient on the first inner-loop step
of MAML).

No BatchNorm or other batch statistics anywhere: the model works with batch size 1 and is a pure
function of its parameters under ``torch.func.functional_call``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from drtl.config import SUPPORTED_SCALES as VALID_SCALES  # the one scale rule, defined in drtl.config

RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K mean, as in EDSR / BasicSR


class ResidualBlockNoBN(nn.Module):
    """conv3x3 - ReLU - conv3x3, scaled by ``res_scale`` and added to the input."""

    def __init__(self, num_feat: int, res_scale: float = 1.0):
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class Upsample(nn.Sequential):
    """Sub-pixel upsampler: x2 / x4 as log2(scale) stages of conv + PixelShuffle(2), x3 as one stage."""

    def __init__(self, scale: int, num_feat: int):
        layers: list[nn.Module] = []
        if scale in (2, 4):
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"Upsample: scale must be one of {VALID_SCALES}, got {scale!r}")
        super().__init__(*layers)


def default_init_(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """Re-initialise every Conv2d / Linear like PyTorch's default ``reset_parameters``, drawing from
    ``generator`` (the global RNG when None) so that one seed gives the same weights on any device."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in = m.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)


class EDSR(nn.Module):
    """EDSR (no BatchNorm) for RGB NCHW float32 [0, 1] input, output ``scale`` times larger.

    Args:
        scale: 2, 3 or 4.
        num_feat: feature channels (64 for EDSR-baseline).
        num_block: residual blocks (16 for EDSR-baseline).
        res_scale: residual scaling inside each block (1.0 for the baseline, 0.1 for big EDSR).
        global_residual: add the bicubic upsampling of the input to the output (see module doc).
        tail_init_scale: factor applied to ``conv_last``'s default-initialised weights when
            ``global_residual`` (bias set to 0); ignored otherwise.
        img_range: features are computed on ``(x - rgb_mean) * img_range``.
        rgb_mean: the per-channel mean subtracted on input.
        generator: torch.Generator for the initial weights (global RNG when None).
    """

    def __init__(
        self,
        scale: int,
        num_feat: int = 64,
        num_block: int = 16,
        res_scale: float = 1.0,
        global_residual: bool = True,
        tail_init_scale: float = 0.1,
        img_range: float = 1.0,
        rgb_mean: tuple[float, float, float] = RGB_MEAN,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if scale not in VALID_SCALES:
            raise ValueError(f"EDSR: scale must be one of {VALID_SCALES}, got {scale!r}")
        self.scale = int(scale)
        self.img_range = float(img_range)
        self.global_residual = bool(global_residual)
        self.tail_init_scale = float(tail_init_scale)
        # non-persistent: it is part of the recipe (arch_cfg), not of the learned state
        self.register_buffer("mean", torch.tensor(rgb_mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat, res_scale) for _ in range(num_block)])
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = Upsample(self.scale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch default init everywhere (from ``generator``), then the small tail if global_residual."""
        default_init_(self, generator)
        if self.global_residual:
            self.conv_last.weight.mul_(self.tail_init_scale)
            self.conv_last.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"EDSR expects an N x 3 x H x W tensor, got shape {tuple(x.shape)}")
        mean = self.mean.to(dtype=x.dtype)
        feat = self.conv_first((x - mean) * self.img_range)
        res = self.conv_after_body(self.body(feat)) + feat
        out = self.conv_last(self.upsample(res)) / self.img_range
        if self.global_residual:
            return out + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return out + mean
