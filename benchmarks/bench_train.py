"""Trainer overhead and meta-learning cost on a tiny EDSR (CPU by default).

Measures, on the same network and the same batches (synthetic random pairs, batch 16 of 48 px LR
patches, x2):

* ``plain``        a hand-written PyTorch loop: sample, forward, L1, zero_grad, backward, Adam step;
* ``pretrain-1``   :func:`drtl.train.pretrain` on one task (exactly the plain loop's batches);
* ``pretrain-4x4`` :func:`drtl.train.pretrain` relation-weighted, 4 tasks x 4 patches per step (the
                   batched fast path: one forward pass of 16 patches);
* ``fomaml`` / ``maml``  :func:`drtl.train.maml_train` first- / second-order with the meta-config
                   below (meta_batch 2 tasks x (support 8 + query 8) patches, 1 inner SGD step), so a
                   meta-step sees the same 16 query patches as a plain step plus 16 support patches.

Warm-up steps are excluded; each variant is run ``--repeats`` times, interleaved with the order
rotated, and the median time per step is reported next to the minimum (the better estimate when
the CPU is shared with other jobs; ratios use the minimum). Output: a Markdown table, optionally ``--json PATH``.

    python benchmarks/bench_train.py --threads 2 --steps 3 --repeats 5 --json bench_train.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drtl.data.patches import PairSampler  # noqa: E402
from drtl.train import MetaConfig, TrainConfig, maml_train, pretrain, resolve_device  # noqa: E402


class _ResBlock(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(f, f, 3, padding=1), nn.Conv2d(f, f, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class FallbackEDSR(nn.Module):
    """EDSR-like: 32 features, 4 residual blocks, PixelShuffle x2, bicubic global residual."""

    def __init__(self, f=32, blocks=4, scale=2):
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(3, f, 3, padding=1)
        self.body = nn.Sequential(*[_ResBlock(f) for _ in range(blocks)], nn.Conv2d(f, f, 3, padding=1))
        self.up = nn.Sequential(nn.Conv2d(f, f * scale * scale, 3, padding=1), nn.PixelShuffle(scale))
        self.tail = nn.Conv2d(f, 3, 3, padding=1)

    def forward(self, x):
        h = self.head(x)
        h = h + self.body(h)
        skip = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return skip + self.tail(self.up(h))


def build_model(seed: int) -> tuple[nn.Module, str]:
    torch.manual_seed(seed)
    try:
        from drtl.archs import build_arch

        return build_arch({"name": "edsr_tiny", "scale": 2}, generator=torch.Generator().manual_seed(seed)), "drtl.archs edsr_tiny"
    except Exception:
        return FallbackEDSR(), "local fallback EDSR (32 feats, 4 blocks)"


def make_samplers(n_tasks: int, lr_patch: int, lr_size: int = 96) -> list[PairSampler]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n_tasks):
        pairs = [
            (rng.integers(0, 256, (lr_size, lr_size, 3), dtype=np.uint8),
             rng.integers(0, 256, (2 * lr_size, 2 * lr_size, 3), dtype=np.uint8))
            for _ in range(2)
        ]
        out.append(PairSampler(pairs, scale=2, lr_patch=lr_patch))
    return out


class Timer:
    """progress callback: timestamps after each step; time per step excluding the warm-up."""

    def __init__(self, warmup: int):
        self.warmup, self.t_start, self.t_end, self.n = warmup, None, None, 0

    def __call__(self, step, total, loss):
        now = time.perf_counter()
        if step == self.warmup:
            self.t_start = now
        self.t_end, self.n = now, step - self.warmup

    @property
    def per_step(self) -> float:
        return (self.t_end - self.t_start) / self.n


def plain_loop(model, sampler, cfg: TrainConfig, gen, timer: Timer, device):
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas)
    for step in range(cfg.iterations):
        lr, hr = sampler.sample(cfg.batch, gen)
        loss = F.l1_loss(model(lr.to(device)), hr.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timer(step + 1, cfg.iterations, None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant and repeat")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--micro-steps", type=int, default=200, help="steps of the fixed-overhead micro-benchmark")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-second-order", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    n_iter = args.warmup + args.steps
    cfg = TrainConfig(iterations=n_iter, batch=args.batch, lr_patch=args.patch, lr=1e-4, log_every=10**9,
                      device=str(device))
    samplers = make_samplers(4, args.patch)
    weights = [0.4, 0.3, 0.2, 0.1]
    half = max(args.batch // 2, 1)
    meta = MetaConfig(inner_steps=1, inner_lr=1e-2, meta_batch=2, support_batch=half, query_batch=half)
    _, arch_name = build_model(0)

    def sync_timer():
        t = Timer(args.warmup)
        if device.type != "cuda":
            return t
        def cb(s, tot, loss):
            torch.cuda.synchronize()
            t(s, tot, loss)
        cb.per = t
        return cb

    def per(t):
        return (getattr(t, "per", t)).per_step

    variants = {
        "plain": lambda t: plain_loop(build_model(0)[0], samplers[0], cfg, torch.Generator().manual_seed(1), t, device),
        "pretrain-1": lambda t: pretrain(build_model(0)[0], samplers[:1], None, cfg, torch.Generator().manual_seed(1),
                                         progress=t),
        "pretrain-4x4": lambda t: pretrain(build_model(0)[0], samplers, weights, cfg, torch.Generator().manual_seed(1),
                                           task_batch=args.batch // 4, progress=t),
        "fomaml": lambda t: maml_train(build_model(0)[0], samplers, weights, cfg, meta,
                                       torch.Generator().manual_seed(1), progress=t),
    }
    if not args.skip_second_order:
        variants["maml"] = lambda t: maml_train(build_model(0)[0], samplers, weights, cfg,
                                                MetaConfig(**{**meta.to_dict(), "first_order": False}),
                                                torch.Generator().manual_seed(1), progress=t)
    times: dict[str, list[float]] = {k: [] for k in variants}
    t0 = time.perf_counter()
    names = list(variants)
    for rep in range(args.repeats):  # interleaved, order rotated each repeat (the CPU may be shared)
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            t = sync_timer()
            variants[name](t)
            times[name].append(per(t))
    total = time.perf_counter() - t0

    # fixed per-step cost of the trainer (python, schedule, history), measured where compute is ~0
    micro_cfg = TrainConfig(iterations=args.micro_steps + 5, batch=args.batch, lr_patch=8, lr=1e-4,
                            log_every=10**9, device=str(device))
    micro_samplers = make_samplers(1, 8, lr_size=16)
    micro_model = lambda: nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
    micro = {"plain": [], "pretrain": []}
    for _ in range(3):
        t = Timer(5)
        plain_loop(micro_model(), micro_samplers[0], micro_cfg, torch.Generator().manual_seed(1), t, device)
        micro["plain"].append(t.per_step)
        t = Timer(5)
        pretrain(micro_model(), micro_samplers, None, micro_cfg, torch.Generator().manual_seed(1), progress=t)
        micro["pretrain"].append(t.per_step)
    fixed_ms = 1e3 * (min(micro["pretrain"]) - min(micro["plain"]))
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    rows = []
    notes = {
        "plain": "hand-written Adam loop, 1 task",
        "pretrain-1": "pretrain(), 1 task, same batches as plain",
        "pretrain-4x4": f"pretrain(), weighted, 4 tasks x {args.batch // 4} patches, batched fast path",
        "fomaml": f"maml_train() first-order, {meta.meta_batch} tasks x (support {meta.support_batch} + query {meta.query_batch}), {meta.inner_steps} inner step",
        "maml": "maml_train() second-order, same meta-config",
    }
    for k in times:
        rows.append({
            "variant": k,
            "s_per_step_median": med[k],
            "s_per_step_min": best[k],
            "steps_per_s": 1.0 / best[k],
            "relative_to_plain": best[k] / best["plain"],
            "overhead_pct": 100.0 * (best[k] / best["plain"] - 1.0),
            "relative_to_plain_median": med[k] / med["plain"],
            "all_s_per_step": times[k],
            "note": notes[k],
        })
    result = {
        "device": str(device),
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "arch": arch_name,
        "batch": args.batch,
        "lr_patch": args.patch,
        "scale": 2,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "meta_config": meta.to_dict(),
        "total_s": total,
        "rows": rows,
        "micro": {"s_per_step": micro, "trainer_fixed_overhead_ms": fixed_ms,
                  "overhead_pct_of_plain_edsr_step": 100 * fixed_ms / 1e3 / best["plain"]},
    }
    print(f"# bench_train: {arch_name}, batch {args.batch} x {args.patch}px LR (x2), device {device}, "
          f"{args.threads} threads, {args.steps} timed steps x {args.repeats} repeats, torch {torch.__version__}\n")
    print("| variant | s/step (min) | s/step (median) | steps/s (min) | x plain (min) | overhead (min) | x plain (median) | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['s_per_step_min']:.4f} | {r['s_per_step_median']:.4f} | {r['steps_per_s']:.2f} | "
              f"{r['relative_to_plain']:.2f} | {r['overhead_pct']:+.1f}% | {r['relative_to_plain_median']:.2f} | {r['note']} |")
    print(f"\ntrainer fixed cost per step (1-conv net, 8 px, {args.micro_steps} steps, min of 3): "
          f"{fixed_ms:+.3f} ms = {100 * fixed_ms / 1e3 / best['plain']:+.2f}% of a plain EDSR step")
    print(f"total {total:.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
