"""Trainers: the shared loop, pre-training (uniform / weighted), fine-tuning, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from drtl.data.patches import PairSampler
from drtl.errors import ConfigError, DRTLError, ModelError
from drtl.train import (
    TrainConfig,
    finetune,
    load_checkpoint,
    lr_at,
    pretrain,
    save_checkpoint,
    validate_weights,
    weighted_task_loss,
)
from drtl.train.pretrain import sample_task_batches

torch.set_num_threads(1)


class Tiny(nn.Module):
    """conv -> act -> conv -> PixelShuffle(2) + bicubic skip (~1k params)."""

    def __init__(self, feats: int = 8, scale: int = 2):
        super().__init__()
        self.scale = scale
        self.c1 = nn.Conv2d(3, feats, 3, padding=1)
        self.c2 = nn.Conv2d(feats, 3 * scale * scale, 3, padding=1)
        self.ps = nn.PixelShuffle(scale)

    def forward(self, x):
        skip = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return skip + self.ps(self.c2(torch.tanh(self.c1(x))))


def make_model(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny()


def make_pairs(task: int, n: int = 3, hr: int = 24, seed: int = 0):
    """Smooth random HR images and a task-specific synthetic degradation (blur + shift + noise)."""
    rng = np.random.default_rng(seed * 100 + task)
    pairs = []
    for _ in range(n):
        base = rng.random((3, hr // 4, hr // 4))
        h = torch.from_numpy(base)[None]
        h = F.interpolate(h, size=(hr, hr), mode="bicubic", align_corners=False).clamp(0, 1)
        k = 2 + (task % 2)
        lr = F.avg_pool2d(F.pad(h, (k // 2, k // 2, k // 2, k // 2), mode="replicate"), k, stride=1)
        lr = F.interpolate(lr[..., : hr, : hr], size=(hr // 2, hr // 2), mode="area")
        lr = (lr + 0.03 * task + 0.02 * torch.from_numpy(rng.standard_normal(lr.shape))).clamp(0, 1)
        to8 = lambda t: (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        pairs.append((to8(lr), to8(h)))
    return pairs


def make_samplers(n_tasks: int = 3, lr_patch: int = 8):
    return [PairSampler(make_pairs(t), scale=2, lr_patch=lr_patch, augment=True) for t in range(n_tasks)]


def weights_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same(a, b, exact=True):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


CFG = TrainConfig(iterations=8, batch=4, lr_patch=8, lr=5e-3, log_every=4, seed=0)


# ------------------------------------------------------------------ config & helpers


def test_config_validation():
    with pytest.raises(ConfigError):
        TrainConfig(schedule="linear")
    with pytest.raises(ConfigError):
        TrainConfig(lr=-1.0)
    with pytest.raises(ConfigError):
        TrainConfig(device="gpu")
    with pytest.raises(ConfigError):
        TrainConfig.from_dict({"iterations": 3, "learning_rate": 1e-3})
    cfg = TrainConfig.from_dict({"iterations": 3, "betas": [0.8, 0.9], "milestones": [1, 2], "schedule": "step"})
    assert cfg.betas == (0.8, 0.9) and cfg.milestones == (1, 2)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_lr_schedules():
    c = TrainConfig(iterations=10, lr=1.0, schedule="step", milestones=(3, 6), gamma=0.1)
    assert [lr_at(s, c) for s in (0, 2, 3, 5, 6, 9)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    c = TrainConfig(iterations=10, lr=1.0, schedule="cosine", min_lr_ratio=0.0)
    assert lr_at(0, c) == pytest.approx(1.0) and lr_at(5, c) == pytest.approx(0.5)
    assert lr_at(9, c) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.9)))
    assert lr_at(7, TrainConfig(lr=0.3)) == 0.3


def test_weights_validation():
    samplers = make_samplers(3)
    cfg = CFG.replace(iterations=1)
    for bad in ([0.5, 0.5], [0.5, 0.6, -0.1], [0.0, 0.0, 0.0], [float("nan"), 0.5, 0.5]):
        with pytest.raises(ConfigError):
            pretrain(make_model(), samplers, bad, cfg)
    with pytest.raises(ConfigError):
        validate_weights([1.0], 0)
    w = validate_weights([2.0, 1.0, 1.0], 3)
    assert torch.allclose(w, torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64))
    assert validate_weights(None, 3) is None


# ------------------------------------------------------------------ training behaviour


def test_loss_decreases():
    samplers = make_samplers(1)
    model = make_model()
    cfg = TrainConfig(iterations=50, batch=8, lr_patch=8, lr=1e-2, log_every=10, seed=1)
    hist = finetune(model, samplers[0], cfg)
    assert len(hist["loss"]) == 50 and [e["step"] for e in hist["log"]] == [10, 20, 30, 40, 50]
    first, last = np.mean(hist["loss"][:5]), np.mean(hist["loss"][-10:])
    assert last < 0.7 * first, (first, last)
    assert hist["log"][-1]["loss"] == pytest.approx(np.mean(hist["loss"][-10:]))


def test_batched_fast_path_equals_per_task_loop():
    samplers = make_samplers(3)
    model = make_model()
    batches = sample_task_batches(samplers, [2, 0, 1], 4, torch.Generator().manual_seed(3))
    w = torch.tensor([0.2, 0.5, 0.3])
    grads = []
    for batched in (True, False):
        model.zero_grad()
        loss, per_task = weighted_task_loss(model, batches, w, "l1", batched=batched)
        loss.backward()
        grads.append((loss.detach(), per_task, [p.grad.clone() for p in model.parameters()]))
    (l1, pt1, g1), (l2, pt2, g2) = grads
    torch.testing.assert_close(l1, l2, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(pt1, pt2, rtol=1e-6, atol=1e-7)
    manual = sum(w[j] * pt2[j] for j in range(3)) / w.sum()
    torch.testing.assert_close(l2, manual, rtol=1e-6, atol=1e-7)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # and through the full trainer
    out = []
    for batched in (True, False):
        m = make_model()
        pretrain(m, samplers, [0.2, 0.5, 0.3], CFG, batched=batched)
        out.append(weights_of(m))
    assert_same(out[0], out[1], exact=False)


def test_one_hot_weights_equal_single_task_training():
    samplers = make_samplers(3)
    a, b, c = make_model(), make_model(), make_model()
    pretrain(a, samplers, [0.0, 1.0, 0.0], CFG, torch.Generator().manual_seed(5))
    pretrain(b, [samplers[1]], None, CFG, torch.Generator().manual_seed(5))
    finetune(c, samplers[1], CFG, torch.Generator().manual_seed(5))
    assert_same(weights_of(a), weights_of(b))
    assert_same(weights_of(a), weights_of(c))


def test_tasks_per_step_and_logging():
    samplers = make_samplers(4)
    logs, ticks = [], []
    hist = pretrain(
        make_model(), samplers, None, CFG, tasks_per_step=2, on_log=logs.append,
        progress=lambda s, t, l: ticks.append(s),
    )
    assert ticks == list(range(1, 9)) and len(logs) == 2 and logs == hist["log"]
    for e in logs:
        assert e["n_tasks"] == 2 and 1 <= sum(k.startswith("loss_task") for k in e) <= 2  # with replacement
        assert {"step", "loss", "lr", "elapsed_s"} <= e.keys()
    assert hist["kind"] == "pretrain" and len(hist["loss"]) == 8


def test_weighted_differs_from_uniform():
    samplers = make_samplers(3)
    a, b = make_model(), make_model()
    pretrain(a, samplers, None, CFG)
    pretrain(b, samplers, [0.7, 0.2, 0.1], CFG)
    assert not torch.equal(a.c1.weight, b.c1.weight)


def test_amp_ignored_on_cpu_and_tqdm_forced(capsys):
    samplers = make_samplers(1)
    a, b = make_model(), make_model()
    capsys.readouterr()
    finetune(a, samplers[0], CFG.replace(amp=True), progress=True)
    bar = capsys.readouterr().err
    finetune(b, samplers[0], CFG, progress=False)
    assert_same(weights_of(a), weights_of(b))
    # progress=True draws the bar on a non-terminal stderr, named and sized by the run (tqdm redraws at
    # most every 0.1 s, so a run this short may show only its first frame)
    assert bar.startswith("\rfinetune:") and f"/{CFG.iterations} [" in bar, bar
    assert capsys.readouterr().err == ""  # progress=False: nothing at all


def test_nan_loss_is_reported():
    samplers = make_samplers(1)
    model = make_model()
    with torch.no_grad():
        model.c2.bias.fill_(float("nan"))
    with pytest.raises(DRTLError, match="loss became nan at step 1"):
        finetune(model, samplers[0], CFG)


# ------------------------------------------------------------------ checkpoints


class Crash(RuntimeError):
    pass


class CrashingSampler:
    """Wraps a sampler and raises after ``limit`` sample() calls (a killed job); ``counter`` (a
    one-element list) may be shared by several samplers so that the limit counts calls to any of them."""

    def __init__(self, inner, limit, counter=None):
        self.inner, self.limit, self.counter = inner, limit, [0] if counter is None else counter

    def sample(self, batch, gen):
        self.counter[0] += 1
        if self.counter[0] > self.limit:
            raise Crash("killed")
        return self.inner.sample(batch, gen)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_is_bit_identical(tmp_path, schedule):
    samplers = make_samplers(2)
    cfg = CFG.replace(iterations=10, checkpoint_every=5, log_every=3, schedule=schedule)
    ref = make_model(0)
    ref_hist = pretrain(ref, samplers, [0.3, 0.7], cfg, torch.Generator().manual_seed(11))

    ckpt = tmp_path / "run" / "ckpt.pt"
    shared = [0]
    crashing = [CrashingSampler(s, 12, shared) for s in samplers]  # 2 draws x 1 batch per step: dies in step 7
    with pytest.raises(Crash):
        pretrain(make_model(0), crashing, [0.3, 0.7], cfg, torch.Generator().manual_seed(11), ckpt_path=ckpt)
    assert load_checkpoint(ckpt)["step"] == 5
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["ckpt.pt"]  # no temp files left

    # fresh process state: other init, other generator seed; everything comes from the checkpoint
    resumed = make_model(123)
    hist = pretrain(resumed, samplers, [0.3, 0.7], cfg, torch.Generator().manual_seed(999), ckpt_path=ckpt)
    assert_same(weights_of(ref), weights_of(resumed))
    assert hist["resumed_from"] == [5]
    assert hist["loss"] == ref_hist["loss"]
    assert [e["step"] for e in hist["log"]] == [e["step"] for e in ref_hist["log"]]
    assert load_checkpoint(ckpt)["step"] == 10

    # a finished run reruns as a no-op
    again = make_model(7)
    pretrain(again, samplers, [0.3, 0.7], cfg, ckpt_path=ckpt)
    assert_same(weights_of(ref), weights_of(again))


def test_resume_refuses_other_settings(tmp_path):
    samplers = make_samplers(2)
    ckpt = tmp_path / "c.pt"
    cfg = CFG.replace(iterations=2)
    pretrain(make_model(), samplers, [0.5, 0.5], cfg, ckpt_path=ckpt)
    with pytest.raises(ConfigError, match="lr"):
        pretrain(make_model(), samplers, [0.5, 0.5], cfg.replace(lr=1e-3), ckpt_path=ckpt)
    with pytest.raises(ConfigError, match="weights"):
        pretrain(make_model(), samplers, [0.3, 0.7], cfg, ckpt_path=ckpt)
    with pytest.raises(ConfigError, match="'drtl_pre' run, not 'pretrain'"):
        pretrain(make_model(), samplers, None, cfg, ckpt_path=ckpt)
    with pytest.raises(ConfigError, match="not 'finetune'"):
        finetune(make_model(), samplers[0], cfg, ckpt_path=ckpt)
    # log/checkpoint cadence may change
    pretrain(make_model(), samplers, [0.5, 0.5], cfg.replace(log_every=1), ckpt_path=ckpt)


def test_checkpoint_roundtrip_and_errors(tmp_path):
    p = tmp_path / "x.pt"
    state = {"step": 3, "model": {"w": torch.arange(4.0)}, "hist": [1.0, 2.0], "name": "a", "none": None}
    save_checkpoint(p, state)
    back = load_checkpoint(p)
    assert back["step"] == 3 and torch.equal(back["model"]["w"], torch.arange(4.0)) and back["none"] is None
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="delete it"):
        load_checkpoint(p)
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_loads_weights_only(tmp_path):
    ckpt = tmp_path / "c.pt"
    finetune(make_model(), make_samplers(1)[0], CFG.replace(iterations=2), ckpt_path=ckpt)
    state = torch.load(ckpt, weights_only=True)
    assert state["kind"] == "finetune" and state["step"] == 2
    m = make_model(5)
    m.load_state_dict(state["model"])


def test_drtl_adam_matches_torch_adam_without_importing_dynamo():
    """drtl.optim.Adam skips torch.optim's torch._dynamo import; its updates are torch's, bit for bit."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from drtl.optim import Adam\n"
        "torch.manual_seed(0)\n"
        "a = torch.nn.Conv2d(3, 3, 3); b = torch.nn.Conv2d(3, 3, 3); b.load_state_dict(a.state_dict())\n"
        "oa = Adam(a.parameters(), lr=1e-2, weight_decay=1e-3)\n"
        "for _ in range(3):\n"
        "    oa.zero_grad(); a(torch.ones(1, 3, 8, 8)).pow(2).sum().backward(); oa.step()\n"
        "assert 'torch._dynamo' not in sys.modules\n"
        "ob = torch.optim.Adam(b.parameters(), lr=1e-2, weight_decay=1e-3)\n"
        "for _ in range(3):\n"
        "    ob.zero_grad(); b(torch.ones(1, 3, 8, 8)).pow(2).sum().backward(); ob.step()\n"
        "assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))\n"
        "assert str(oa.state_dict()) == str(ob.state_dict())\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
