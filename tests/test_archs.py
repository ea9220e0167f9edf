"""Tests for drtl.archs: EDSR family, DRN encoder, registry."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from drtl.archs import DRNEncoder, EDSR, arch_names, build_arch
from drtl.errors import ConfigError


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors on a shared 2-core box: intra-op threading only adds contention (100x slower)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def smooth_image(n=1, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_output_shapes(scale):
    model = build_arch({"name": "edsr_tiny", "scale": scale}, generator=torch.Generator().manual_seed(0))
    x = torch.rand(2, 3, 16, 12)
    y = model(x)
    assert y.shape == (2, 3, 16 * scale, 12 * scale) and y.dtype == torch.float32
    classic = build_arch({"name": "edsr", "num_feat": 8, "num_block": 1, "scale": scale, "global_residual": False})
    assert classic(x[:1]).shape == (1, 3, 16 * scale, 12 * scale)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_untrained_edsr_tiny_is_close_to_bicubic(scale):
    model = build_arch({"name": "edsr_tiny", "scale": scale}, generator=torch.Generator().manual_seed(1))
    x = smooth_image(seed=scale)
    with torch.no_grad():
        y = model(x)
    bic = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    psnr = 10 * torch.log10(1.0 / torch.mean((y - bic) ** 2))
    assert psnr > 35.0
    assert not torch.equal(y, bic)  # the residual branch is small but alive


# exact counts (computed by hand for edsr_baseline x2:
#  head 1,792 + 16 blocks x 73,856 + body conv 36,928 + upsampler 147,712 + tail 1,731 = 1,369,859)
@pytest.mark.parametrize(
    "name, scale, expected",
    [
        ("edsr_tiny", 2, 121_987),
        ("edsr_tiny", 3, 168_227),
        ("edsr_tiny", 4, 158_979),
        ("edsr_baseline", 2, 1_369_859),
        ("edsr_baseline", 3, 1_554_499),
        ("edsr_baseline", 4, 1_517_571),
    ],
)
def test_param_counts(name, scale, expected):
    assert n_params(build_arch({"name": name, "scale": scale})) == expected


def test_edsr_baseline_matches_published_size():
    # EDSR paper / BasicSR: EDSR-baseline x2 has 1.37M parameters, x4 1.5M (published, rounded)
    assert round(n_params(build_arch({"name": "edsr_baseline", "scale": 2})) / 1e6, 2) == 1.37
    assert round(n_params(build_arch({"name": "edsr_baseline", "scale": 4})) / 1e6, 1) == 1.5


def test_drn_param_count():
    assert n_params(build_arch({"name": "drn"})) == 306_560


@pytest.mark.parametrize("cfg", [{"name": "edsr_tiny", "scale": 2}, {"name": "drn", "num_feat": 8, "emb_dim": 16}])
def test_functional_call_matches_and_differentiates(cfg):
    model = build_arch(cfg, generator=torch.Generator().manual_seed(3))
    x = smooth_image(n=2, seed=4)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    out_fc = functional_call(model, params, (x,))
    with torch.no_grad():
        out = model(x)
    assert torch.equal(out_fc.detach(), out)

    if cfg["name"] == "drn":
        loss = (out_fc[0] * out_fc[1]).sum()  # embeddings have unit norm: use a cosine similarity
    else:
        loss = (out_fc - 0.5).abs().mean()
    grads = torch.autograd.grad(loss, list(params.values()))
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)

    # a one-step functional update changes the output; the module's own weights stay untouched
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    fast = {k: p - 0.1 * g for (k, p), g in zip(params.items(), grads)}
    assert not torch.allclose(functional_call(model, fast, (x,)), out_fc)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_generator_makes_init_reproducible_and_state_dict_roundtrip():
    a = build_arch({"name": "edsr_tiny", "scale": 2}, generator=torch.Generator().manual_seed(7))
    b = build_arch({"name": "edsr_tiny", "scale": 2}, generator=torch.Generator().manual_seed(7))
    c = build_arch({"name": "edsr_tiny", "scale": 2}, generator=torch.Generator().manual_seed(8))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["conv_first.weight"], c.state_dict()["conv_first.weight"])
    assert "mean" not in sa  # the rgb mean is recipe (arch_cfg), not state
    c.load_state_dict(sa, strict=True)
    x = smooth_image()
    assert torch.equal(a(x), c(x))


def test_arch_cfg_recorded_and_rebuildable():
    model = build_arch({"name": "edsr", "num_feat": 16, "num_block": 2, "scale": 3})
    cfg = model.arch_cfg
    assert cfg == {
        "name": "edsr",
        "scale": 3,
        "num_feat": 16,
        "num_block": 2,
        "res_scale": 1.0,
        "global_residual": True,
        "tail_init_scale": 0.1,
        "img_range": 1.0,
        "rgb_mean": [0.4488, 0.4371, 0.4040],
    }
    assert json.loads(json.dumps(cfg)) == cfg
    again = build_arch(cfg)
    assert again.arch_cfg == cfg and n_params(again) == n_params(model)
    drn = build_arch({"name": "drn", "emb_dim": 32})
    assert drn.arch_cfg["emb_dim"] == 32 and drn.arch_cfg["highpass"] is True
    assert isinstance(drn, DRNEncoder) and isinstance(model, EDSR)


def test_drn_unit_norm_batch1_and_deterministic():
    model = build_arch({"name": "drn"}, generator=torch.Generator().manual_seed(5)).eval()
    x = smooth_image(n=3, size=32, seed=6)
    with torch.no_grad():
        e = model(x)
        e1 = model(x[:1])
        e_again = model(x)
    assert e.shape == (3, 64)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0)
    assert e1.shape == (1, 64)
    torch.testing.assert_close(e1[0], e[0], atol=1e-5, rtol=1e-5)  # no batch coupling
    assert torch.equal(e, e_again)
    # tiny patches (1x1 feature maps after 4 stride-2 stages) stay finite, gradients too
    tiny = torch.rand(1, 3, 8, 8, requires_grad=True)
    out = build_arch({"name": "drn", "num_feat": 8, "emb_dim": 8})(tiny)
    out[0, 0].backward()
    assert torch.isfinite(out).all() and torch.isfinite(tiny.grad).all()


def test_drn_highpass_and_noise_sensitivity():
    model = build_arch({"name": "drn", "num_feat": 8, "emb_dim": 16}, generator=torch.Generator().manual_seed(2))
    flat = torch.full((1, 3, 16, 16), 0.3)
    assert model.highpass_residual(flat).abs().max() < 1e-6
    x = smooth_image(size=24, seed=9)
    g = torch.Generator().manual_seed(10)
    noisy = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(noisy), atol=1e-3)
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        model(torch.rand(1, 1, 16, 16))


def test_registry_names_and_errors():
    assert arch_names() == ["edsr_tiny", "edsr_baseline", "edsr", "drn"]
    bad = [
        ({"name": "rcan", "scale": 2}, "valid names: edsr_tiny, edsr_baseline, edsr, drn"),
        ({"scale": 2}, "valid names"),
        ("edsr_tiny", "mapping"),
        ({"name": "edsr_tiny", "scale": 5}, "scale must be one of 2, 3, 4"),
        ({"name": "edsr_tiny", "scale": True}, "scale must be one of"),
        ({"name": "edsr_tiny", "scale": 2.0}, "scale must be one of"),
        ({"name": "edsr_tiny"}, "'scale' is required"),
        ({"name": "edsr_tiny", "scale": 2, "num_feat": 64}, "use name 'edsr'"),
        ({"name": "edsr_baseline", "scale": 2, "num_blocks": 8}, "unknown key"),
        ({"name": "edsr", "scale": 2, "num_feat": 16}, "num_block"),
        ({"name": "edsr", "scale": 2, "num_feat": 0, "num_block": 1}, "num_feat"),
        ({"name": "edsr_tiny", "scale": 2, "global_residual": "yes"}, "global_residual"),
        ({"name": "edsr_tiny", "scale": 2, "rgb_mean": [0.5, 0.5]}, "rgb_mean"),
        ({"name": "drn", "emb_dim": -3}, "emb_dim"),
        ({"name": "drn", "scale": 2}, "unknown key"),
    ]
    for cfg, msg in bad:
        with pytest.raises(ConfigError, match=msg) as info:
            build_arch(cfg)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["edsr_tiny", "edsr_baseline"])
def test_resolved_arch_cfg_rebuilds_presets(name):
    m = build_arch({"name": name, "scale": 2})
    assert build_arch(m.arch_cfg).arch_cfg == m.arch_cfg
    with pytest.raises(ConfigError, match="fixes num_feat"):
        build_arch({**m.arch_cfg, "num_feat": 7})
