"""MAML / FOMAML / DRTL-Meta on torch.func.functional_call: inner loop, meta-gradients, weights, resume."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from drtl.data.patches import PairSampler
from drtl.errors import ConfigError
from drtl.train import TrainConfig, load_checkpoint
from drtl.train.meta import (
    MetaConfig,
    inner_adapt,
    maml_train,
    meta_loss,
    model_buffers,
    model_params,
    sample_meta_tasks,
)

torch.set_num_threads(1)


class Tiny(nn.Module):
    """conv -> tanh -> conv -> PixelShuffle(2) + bicubic skip, with a buffer and a frozen parameter."""

    def __init__(self, feats: int = 6, scale: int = 2):
        super().__init__()
        self.scale = scale
        self.c1 = nn.Conv2d(3, feats, 3, padding=1)
        self.c2 = nn.Conv2d(feats, 3 * scale * scale, 3, padding=1)
        self.ps = nn.PixelShuffle(scale)
        self.register_buffer("gain", torch.tensor(0.5))
        self.frozen = nn.Parameter(torch.tensor(0.9), requires_grad=False)

    def forward(self, x):
        skip = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return skip + self.gain * self.frozen * self.ps(self.c2(torch.tanh(self.c1(x))))


def make_model(seed: int = 0, dtype=torch.float32) -> Tiny:
    torch.manual_seed(seed)
    return Tiny().to(dtype)


def make_pairs(task: int, n: int = 2, hr: int = 24):
    rng = np.random.default_rng(task)
    pairs = []
    for _ in range(n):
        h = F.interpolate(torch.from_numpy(rng.random((1, 3, hr // 4, hr // 4))), size=(hr, hr), mode="bicubic",
                          align_corners=False).clamp(0, 1)
        lr = F.interpolate(h, size=(hr // 2, hr // 2), mode="area")
        lr = (lr * (0.8 + 0.1 * task) + 0.02 * torch.from_numpy(rng.standard_normal(lr.shape))).clamp(0, 1)
        to8 = lambda t: (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        pairs.append((to8(lr), to8(h)))
    return pairs


def make_samplers(n_tasks: int = 3):
    return [PairSampler(make_pairs(t), scale=2, lr_patch=8) for t in range(n_tasks)]


def make_tasks(n_tasks=3, dtype=torch.float32, mc=None, seed=0):
    mc = mc or MetaConfig(support_batch=2, query_batch=2)
    tasks = sample_meta_tasks(make_samplers(n_tasks), range(n_tasks), mc, torch.Generator().manual_seed(seed))
    return [tuple(t.to(dtype) for t in task) for task in tasks]


def grads_of(loss, params):
    return torch.autograd.grad(loss, list(params.values()))


def flat(gs):
    return torch.cat([g.reshape(-1) for g in gs])


# ------------------------------------------------------------------ (a) inner loop


@pytest.mark.parametrize("first_order", [True, False])
def test_inner_step_equals_hand_written_sgd(first_order):
    model = make_model()
    s_lr, s_hr, _, _ = make_tasks(1)[0]
    params = model_params(model)
    assert "frozen" not in params and set(model_buffers(model)) == {"gain"}
    adapted = inner_adapt(model, params, s_lr, s_hr, steps=2, inner_lr=0.05, first_order=first_order)

    ref = copy.deepcopy(model)
    for _ in range(2):  # two plain SGD steps with ordinary autograd
        ref.zero_grad()
        F.l1_loss(ref(s_lr), s_hr).backward()
        with torch.no_grad():
            for p in ref.parameters():
                if p.requires_grad:
                    p -= 0.05 * p.grad
    for name, p in ref.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(adapted[name], p, rtol=1e-5, atol=1e-7)
    # the model itself is untouched
    for (n, p), (_, q) in zip(model.named_parameters(), make_model().named_parameters()):
        assert torch.equal(p, q), n


# ------------------------------------------------------------------ (b) second-order vs finite differences


def test_second_order_meta_gradient_matches_finite_differences():
    model = make_model(dtype=torch.float64)
    tasks = make_tasks(2, torch.float64)
    w = torch.tensor([0.3, 0.7], dtype=torch.float64)
    mc = MetaConfig(inner_steps=2, inner_lr=0.5, first_order=False)
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model_params(model).items()}

    def objective(ps):
        return meta_loss(model, ps, tasks, w, mc)[0]

    g = dict(zip(params, grads_of(objective(params), params)))
    eps = 1e-7
    probes = [("c1.weight", (0, 1, 1, 1)), ("c1.weight", (3, 2, 0, 2)), ("c1.bias", (2,)),
              ("c2.weight", (5, 4, 1, 0)), ("c2.bias", (7,))]
    analytic, numeric = [], []
    with torch.no_grad():
        for name, idx in probes:
            plus = {n: p.detach().clone() for n, p in params.items()}
            minus = {n: p.detach().clone() for n, p in params.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            numeric.append((objective(plus) - objective(minus)) / (2 * eps))
            analytic.append(g[name][idx])
    analytic, numeric = torch.stack(analytic), torch.stack(numeric)
    assert analytic.abs().min() > 1e-6
    rel = (analytic - numeric).norm() / numeric.norm()
    assert rel < 1e-4, (analytic, numeric, rel)


# ------------------------------------------------------------------ (c) first- vs second-order


def test_first_order_is_query_gradient_at_adapted_params():
    model = make_model(dtype=torch.float64)
    tasks = make_tasks(2, torch.float64)
    w = torch.tensor([0.6, 0.4], dtype=torch.float64)
    fo = MetaConfig(inner_steps=2, inner_lr=0.5, first_order=True)
    so = MetaConfig(inner_steps=2, inner_lr=0.5, first_order=False)
    params = model_params(model)
    g_fo = flat(grads_of(meta_loss(model, params, tasks, w, fo)[0], params))
    g_so = flat(grads_of(meta_loss(model, params, tasks, w, so)[0], params))

    # hand-made FOMAML: w-weighted sum of query gradients taken at the (detached) adapted params
    manual = torch.zeros_like(g_fo)
    for wi, (s_lr, s_hr, q_lr, q_hr) in zip(w / w.sum(), tasks):
        adapted = inner_adapt(model, params, s_lr, s_hr, 2, 0.5, first_order=True)
        leaf = {n: a.detach().requires_grad_(True) for n, a in adapted.items()}
        q = F.l1_loss(torch.func.functional_call(model, (leaf, model_buffers(model)), (q_lr,)), q_hr)
        manual += wi * flat(grads_of(q, leaf))
    torch.testing.assert_close(g_fo, manual, rtol=1e-10, atol=1e-12)
    assert (g_fo - g_so).norm() > 1e-3 * g_so.norm()  # different estimators
    assert g_so.norm() > 0


# ------------------------------------------------------------------ (d) relation weights


@pytest.mark.parametrize("first_order", [True, False])
def test_one_hot_weights_give_single_task_meta_gradient(first_order):
    model = make_model()
    tasks = make_tasks(3)
    mc = MetaConfig(inner_steps=1, inner_lr=0.1, first_order=first_order)
    params = model_params(model)
    for j in range(3):
        onehot = torch.zeros(3)
        onehot[j] = 1.0
        g_w = flat(grads_of(meta_loss(model, params, tasks, onehot, mc)[0], params))
        g_j = flat(grads_of(meta_loss(model, params, [tasks[j]], None, mc)[0], params))
        torch.testing.assert_close(g_w, g_j, rtol=1e-6, atol=1e-8)
    # uniform weights = plain average
    g_u = flat(grads_of(meta_loss(model, params, tasks, None, mc)[0], params))
    g_avg = sum(flat(grads_of(meta_loss(model, params, [t], None, mc)[0], params)) for t in tasks) / 3
    torch.testing.assert_close(g_u, g_avg, rtol=1e-5, atol=1e-8)


def test_one_hot_maml_train_equals_single_task_training():
    samplers = make_samplers(3)
    cfg = TrainConfig(iterations=3, lr=1e-3, log_every=1)
    mc = MetaConfig(inner_steps=1, inner_lr=0.05, meta_batch=2, support_batch=2, query_batch=2)
    a, b = make_model(), make_model()
    maml_train(a, samplers, [0.0, 0.0, 1.0], cfg, mc, torch.Generator().manual_seed(4))
    maml_train(b, [samplers[2]], None, cfg, mc, torch.Generator().manual_seed(4))
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n


# ------------------------------------------------------------------ (e) determinism, buffers, resume


@pytest.mark.parametrize("first_order", [True, False])
def test_maml_train_is_deterministic(first_order):
    samplers = make_samplers(3)
    cfg = TrainConfig(iterations=3, lr=1e-3, log_every=1)
    mc = MetaConfig(inner_steps=1, inner_lr=0.05, meta_batch=2, support_batch=2, query_batch=2,
                    first_order=first_order)
    runs = []
    for seed in (1, 1, 2):
        m = make_model()
        hist = maml_train(m, samplers, [0.5, 0.3, 0.2], cfg, mc, torch.Generator().manual_seed(seed))
        runs.append((m.state_dict(), hist))
    for k in runs[0][0]:
        assert torch.equal(runs[0][0][k], runs[1][0][k]), k
    assert runs[0][1]["loss"] == runs[1][1]["loss"]
    assert not torch.equal(runs[0][0]["c1.weight"], runs[2][0]["c1.weight"])
    first = make_model()
    assert not torch.equal(runs[0][0]["c1.weight"], first.c1.weight)  # it trained
    assert torch.equal(runs[0][0]["frozen"], first.frozen) and torch.equal(runs[0][0]["gain"], first.gain)
    assert runs[0][1]["kind"] == "drtl_meta" and all(e["n_tasks"] == 2 for e in runs[0][1]["log"])


def test_maml_resume_is_bit_identical(tmp_path):
    samplers = make_samplers(2)
    cfg = TrainConfig(iterations=4, lr=1e-3, log_every=1, checkpoint_every=2)
    mc = MetaConfig(inner_steps=1, inner_lr=0.05, meta_batch=1, support_batch=2, query_batch=2, first_order=False)
    ref = make_model()
    maml_train(ref, samplers, None, cfg, mc, torch.Generator().manual_seed(3))
    ckpt = tmp_path / "meta.pt"
    # 2 tasks share one draw per step, but each sampler is only called when drawn: limit the total
    shared = {"n": 0}

    class Counting:
        def __init__(self, s):
            self.s = s

        def sample(self, batch, gen):
            shared["n"] += 1
            if shared["n"] > 6:  # 2 calls per meta-step: dies during step 4
                raise KeyboardInterrupt
            return self.s.sample(batch, gen)

    with pytest.raises(KeyboardInterrupt):
        maml_train(make_model(), [Counting(s) for s in samplers], None, cfg, mc, torch.Generator().manual_seed(3),
                   ckpt_path=ckpt)
    assert load_checkpoint(ckpt)["step"] == 2
    resumed = make_model(9)
    maml_train(resumed, samplers, None, cfg, mc, torch.Generator().manual_seed(0), ckpt_path=ckpt)
    for (n, p), (_, q) in zip(ref.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(p, q), n
    with pytest.raises(ConfigError, match="meta"):
        maml_train(make_model(), samplers, None, cfg, MetaConfig(inner_steps=2, meta_batch=1, support_batch=2,
                                                                 query_batch=2, first_order=False), ckpt_path=ckpt)


def test_meta_config_validation():
    with pytest.raises(ConfigError):
        MetaConfig(meta_batch=0)
    with pytest.raises(ConfigError):
        MetaConfig(inner_lr=-1.0)
    with pytest.raises(ConfigError):
        MetaConfig.from_dict({"inner_steps": 1, "outer_lr": 1.0})
    assert MetaConfig.from_dict({"inner_steps": 3}).inner_steps == 3
    with pytest.raises(ConfigError):
        maml_train(make_model(), make_samplers(2), [1.0, -1.0], TrainConfig(iterations=1), MetaConfig())
