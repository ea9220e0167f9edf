"""The relation-weighted task sampler: draws i.i.d. with probability w, so that the plain mean of
the drawn tasks' losses is an unbiased estimate of the full weighted objective sum_i w_i L_i."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from drtl.errors import ConfigError
from drtl.train.common import draw_tasks
from drtl.train.pretrain import weighted_task_loss

W = torch.tensor([0.31, 0.30, 0.17, 0.12, 0.05, 0.03, 0.02, 0.0], dtype=torch.float64)


def test_draw_frequencies_match_the_weights():
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(len(W))
    draws = 0
    for _ in range(5000):
        for i in draw_tasks(W, len(W), 4, gen):
            counts[i] += 1
            draws += 1
    freq = counts / draws
    # binomial standard error at p=0.31 and 20000 draws is 0.0033: 4 sigma bounds
    assert torch.allclose(freq.double(), W, atol=0.014)
    assert counts[-1] == 0  # weight 0: never drawn


def test_uniform_is_the_same_estimator_with_w_one_over_n():
    a = draw_tasks(None, 5, 7, torch.Generator().manual_seed(3))
    b = draw_tasks(torch.full((5,), 0.2, dtype=torch.float64), 5, 7, torch.Generator().manual_seed(3))
    assert a == b and len(a) == 7  # with replacement: m may exceed the number of tasks


def test_one_task_with_all_the_weight_consumes_no_randomness():
    gen = torch.Generator().manual_seed(1)
    state = gen.get_state()
    assert draw_tasks(torch.tensor([0.0, 1.0, 0.0]), 3, 3, gen) == [1, 1, 1]
    assert torch.equal(gen.get_state(), state)
    with pytest.raises(ConfigError):
        draw_tasks(None, 3, 0, gen)


def test_expected_update_equals_the_weighted_full_batch_update():
    """Averaged over many draws, the gradient of the sampled loss equals grad sum_i w_i L_i."""
    torch.manual_seed(0)
    model = nn.Conv2d(3, 3, 1)
    n = len(W)
    batches = [(i, torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)) for i in range(n)]

    def grad_of(loss):
        model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten().clone() for p in model.parameters()])

    per_task = [grad_of(weighted_task_loss(model, [b], None)[0]) for b in batches]
    full = sum(float(W[i]) * per_task[i] for i in range(n))

    gen = torch.Generator().manual_seed(2)
    reps, m = 3000, 4
    est = torch.zeros_like(full)
    renorm = torch.zeros_like(full)  # the old sampler: 4 distinct tasks uniformly, w renormalised in the draw
    for _ in range(reps):
        drawn = draw_tasks(W, n, m, gen)
        est += sum(per_task[i] for i in drawn) / m
        pos = torch.nonzero(W > 0).flatten()
        pick = pos[torch.randperm(len(pos), generator=gen)[:m]].tolist()
        wd = W[pick] / W[pick].sum()
        renorm += sum(float(wd[j]) * per_task[i] for j, i in enumerate(pick))
    est /= reps
    renorm /= reps
    scale = full.norm()
    assert (est - full).norm() / scale < 0.05
    assert (renorm - full).norm() / scale > 2 * (est - full).norm() / scale  # the test can tell the two apart
    # linearity: the sampled loss's gradient is exactly the mean of the drawn tasks' gradients
    drawn = draw_tasks(W, n, m, torch.Generator().manual_seed(9))
    g = grad_of(weighted_task_loss(model, [batches[i] for i in drawn], None, batched=False)[0])
    assert torch.allclose(g, sum(per_task[i] for i in drawn) / m, atol=1e-6)
