"""Distortion Relation Network (DRN) encoder: an LR patch -> a unit vector describing its distortion.

Input: NCHW float32 RGB in [0, 1] (any H, W >= 3; 32-64 px LR patches are the intended size).
Output: (N, emb_dim) float, each row L2-normalised.

Design choices (the paper gives no architecture; these are ours):

* **High-pass input.** Blur, noise, JPEG blocking and ringing live mostly in high frequencies, which
  a shallow CNN sees only faintly next to the (irrelevant) image content. With ``highpass=True``
  the stem also receives ``highpass_gain * (x - gaussian_blur(x))`` (fixed 5x5 Gaussian, sigma 1,
  reflect padding; a buffer, not a parameter), so in_ch channels become 2 * in_ch.
* **No normalisation layers.** Per-sample normalisation (GroupNorm/InstanceNorm) would divide out
  the absolute energy of the high-frequency responses, which is precisely what encodes noise level
  and blur strength; BatchNorm would break batch size 1 and ``functional_call``. Plain conv +
  LeakyReLU(0.2), PyTorch default init.
* **Full-resolution stem, then strided stages.** Stage 0 keeps full resolution (pixel-level noise
  and 8x8 JPEG grids must not be averaged away by an early stride); each of the ``depth`` stages
  then halves the resolution (conv stride 2 + conv); widths num_feat * (1, 2, 2, 2, ...).
* **Multi-scale statistics pooling.** From the stem and from every stage the per-channel spatial
  mean *and* standard deviation are pooled and concatenated (distortion is a property of feature
  statistics, not of their position): fine scales describe noise/JPEG, coarse scales blur.
  The std uses the population variance plus 1e-6 under the square root, so it is finite (and has a
  finite gradient) even on 1x1 feature maps.
* **Reference input (``reference=True``).** A real target comes as LR/HR *pairs*, and so does every
  auxiliary task: the distortion is what separates the LR image from its HR image, not the image
  content. With a reference the encoder takes ``2 * in_ch`` channels, the LR patch and the aligned
  HR patch bicubic-downscaled to the LR size (:func:`reference_of`), and its stem also receives
  ``reference_gain * (LR - reference)``: the distortion itself, with most of the content removed.
  On the 48-task bank this doubles held-out task accuracy (0.27 -> 0.50, 300 steps of 32 px,
  docs/results.md) at the same cost. ``reference_match=True`` first gives the reference the LR
  patch's per-channel mean and standard deviation (:func:`match_moments`): a real LR capture
  differs from its HR capture in exposure and white balance too, and that photometric shift would
  otherwise dominate ``LR - reference`` and read as a tone / colour distortion.
* **Head.** Linear -> LeakyReLU -> Linear to ``emb_dim``, then L2 normalisation (cosine geometry,
  as the prototype memory bank and the relation weights use cosine similarity).

Deterministic in eval and train mode alike (no dropout, no batch statistics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from drtl.archs.edsr import default_init_


def _gaussian_taps(size: int = 5, sigma: float = 1.0) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(torch.float32)


def reference_of(hr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The reference of a reference DRN: HR (NCHW float) bicubic-downscaled (antialiased) to ``size``."""
    return F.interpolate(hr, size=tuple(size), mode="bicubic", antialias=True, align_corners=False)


def drn_input(encoder: nn.Module, lr: torch.Tensor, hr: torch.Tensor | None) -> torch.Tensor:
    """What ``encoder`` embeds for LR (NCHW) and its aligned HR: LR alone, or LR and the reference
    stacked on channels when the encoder is a reference DRN (then HR is required)."""
    if not getattr(encoder, "reference", False):
        return lr
    if hr is None:
        raise ValueError("a reference DRN embeds LR/HR pairs: the HR images are required")
    return torch.cat([lr, reference_of(hr, lr.shape[-2:])], dim=1)


def match_moments(ref: torch.Tensor, x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``ref`` (NCHW) with ``x``'s per-sample, per-channel spatial mean and std (exposure and white
    balance removed from ``x - ref``; structure such as blur, noise and ringing is kept)."""
    mr, mx = ref.mean(dim=(2, 3), keepdim=True), x.mean(dim=(2, 3), keepdim=True)
    sr, sx = ref.std(dim=(2, 3), keepdim=True, unbiased=False), x.std(dim=(2, 3), keepdim=True, unbiased=False)
    return (ref - mr) * ((sx + eps) / (sr + eps)) + mx


def _stats(feat: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 2C): spatial mean and std (population variance + 1e-6)."""
    mean = feat.mean(dim=(2, 3))
    var = (feat - mean[..., None, None]).pow(2).mean(dim=(2, 3))
    return torch.cat([mean, torch.sqrt(var + 1e-6)], dim=1)


class DRNEncoder(nn.Module):
    """Embed LR patches (NCHW float32 RGB [0, 1]) into L2-normalised distortion vectors (N, emb_dim).

    Args:
        in_ch: image channels.
        num_feat: stem width; stage i has ``num_feat * min(2**i, 2)`` channels.
        emb_dim: embedding size.
        depth: number of stride-2 stages after the full-resolution stem.
        highpass: also feed ``highpass_gain * (x - blur(x))`` to the stem.
        highpass_gain: scale of the high-pass channels (on natural images their spread is several times smaller than x's).
        reference: the input holds the LR patch and its reference (the HR patch bicubic-downscaled), 2 * in_ch channels.
        reference_gain: scale of the ``LR - reference`` channels.
        reference_match: match the reference's per-channel mean / std to the LR patch first.
        generator: torch.Generator for the initial weights (global RNG when None).
    """

    def __init__(
        self,
        in_ch: int = 3,
        num_feat: int = 32,
        emb_dim: int = 64,
        depth: int = 4,
        highpass: bool = True,
        highpass_gain: float = 4.0,
        reference: bool = False,
        reference_gain: float = 4.0,
        reference_match: bool = False,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.in_ch = int(in_ch)
        self.emb_dim = int(emb_dim)
        self.highpass = bool(highpass)
        self.highpass_gain = float(highpass_gain)
        self.reference = bool(reference)
        self.reference_gain = float(reference_gain)
        self.reference_match = bool(reference_match)
        self.input_ch = self.in_ch * (2 if self.reference else 1)
        taps = _gaussian_taps()
        self.register_buffer("blur_kernel", torch.outer(taps, taps).expand(in_ch, 1, 5, 5).clone(), persistent=False)

        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        stem_in = in_ch * (2 if highpass else 1) + (in_ch if self.reference else 0)
        self.stem = nn.Sequential(
            nn.Conv2d(stem_in, num_feat, 3, 1, 1), act(), nn.Conv2d(num_feat, num_feat, 3, 1, 1), act()
        )
        widths = [num_feat] + [num_feat * min(2**i, 2) for i in range(depth)]
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(widths[i], widths[i + 1], 3, 2, 1), act(), nn.Conv2d(widths[i + 1], widths[i + 1], 3, 1, 1), act()
            )
            for i in range(depth)
        )
        pooled = 2 * sum(widths)
        self.head = nn.Sequential(nn.Linear(pooled, 2 * emb_dim), act(), nn.Linear(2 * emb_dim, emb_dim))
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        default_init_(self, generator)

    def highpass_residual(self, x: torch.Tensor) -> torch.Tensor:
        """``x - blur(x)`` with the fixed 5x5 Gaussian (sigma 1), reflect padding, per channel."""
        k = self.blur_kernel.to(dtype=x.dtype)
        blurred = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=self.in_ch)
        return x - blurred

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.input_ch:
            raise ValueError(f"DRNEncoder expects an N x {self.input_ch} x H x W tensor, got shape {tuple(x.shape)}")
        if x.shape[2] < 3 or x.shape[3] < 3:
            raise ValueError(f"DRNEncoder needs patches of at least 3x3 pixels, got {x.shape[2]}x{x.shape[3]}")
        ref = None
        if self.reference:
            x, ref = x[:, : self.in_ch], x[:, self.in_ch :]
        inp = x - 0.5
        if self.highpass:
            inp = torch.cat([inp, self.highpass_gain * self.highpass_residual(x)], dim=1)
        if ref is not None:
            if self.reference_match:
                ref = match_moments(ref, x)
            inp = torch.cat([inp, self.reference_gain * (x - ref)], dim=1)
        feat = self.stem(inp)
        pooled = [_stats(feat)]
        for stage in self.stages:
            feat = stage(feat)
            pooled.append(_stats(feat))
        emb = self.head(torch.cat(pooled, dim=1))
        return F.normalize(emb, dim=1)
