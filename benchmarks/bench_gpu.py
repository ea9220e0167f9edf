"""The GPU check (scripts/gpu_check.sh): the GPU profile's code paths on CUDA, timed, in a few minutes.

With the sizes of params.gpu.yaml (edsr_baseline, x2), on synthetic in-memory pairs (nothing is
downloaded):

* device and dtype checks: ``device: auto`` resolves to CUDA, weights stay float32, a forward pass
  under the trainers' bf16 autocast gives bfloat16 and the loss is computed in float32;
* steps/s of pre-training (:func:`drtl.train.pretrain`: ``tasks_per_step`` tasks x ``batch`` patches),
  meta-training (:func:`drtl.train.maml_train`, first-order, ``meta_batch`` tasks x ``inner_steps``)
  and fine-tuning (:func:`drtl.train.finetune`), each in float32 and with bf16 autocast
  (``TrainConfig.amp``), next to a plain PyTorch loop on the same network and batches in the same run;
* upscaling MP/s (:func:`drtl.upscale.upscale_image`, bf16 as on CUDA by default, and float32) next to
  a plain ``model(x)``, and how far the bf16 output is from the float32 one;
* the peak CUDA memory of each phase.

Warm-up steps are excluded (cuDNN autotuning, allocator). ``--cpu-smoke`` runs the same code paths
on the CPU with tiny sizes and step counts (the test suite does, in seconds); bf16 autocast is
CUDA-only there and reported as skipped. Output: one line per measurement, and ``--json PATH``.

    python benchmarks/bench_gpu.py --json outputs/gpu_check/gpu_check.json
    python benchmarks/bench_gpu.py --cpu-smoke --json /tmp/gpu_check_smoke.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from drtl.archs import build_arch  # noqa: E402
from drtl.config import load_params  # noqa: E402
from drtl.data.patches import PairSampler  # noqa: E402
from drtl.device import resolve_device  # noqa: E402
from drtl.train import MetaConfig, TrainConfig, finetune, maml_train, per_sample_loss, pretrain  # noqa: E402
from drtl.upscale import upscale_image  # noqa: E402

SCALE = 2
# --cpu-smoke: the GPU profile's code paths with tiny sizes (seconds on one core)
SMOKE = {"tasks_per_step": 2, "pretrain_batch": 2, "lr_patch": 16, "meta_batch": 2, "inner_steps": 1,
         "support_batch": 2, "query_batch": 2, "finetune_batch": 2, "finetune_patch": 16, "upscale_side": 32}


def sizes(params: dict, smoke: bool) -> dict:
    """The batch shapes of the GPU profile (params.gpu.yaml), or the smoke sizes."""
    pre, meta, ft = params["pretrain"], params["meta"], params["finetune"]
    full = {"tasks_per_step": pre["tasks_per_step"], "pretrain_batch": pre["batch"], "lr_patch": pre["lr_patch"],
            "meta_batch": meta["meta_batch"], "inner_steps": meta["inner_steps"], "support_batch": meta["support_batch"],
            "query_batch": meta["query_batch"], "meta_patch": meta["lr_patch"], "finetune_batch": ft["batch"],
            "finetune_patch": ft["lr_patch"], "upscale_side": 1024}
    return {**full, **SMOKE, "meta_patch": SMOKE["lr_patch"]} if smoke else full


def samplers(n: int, patch: int, side: int) -> list[PairSampler]:
    """``n`` tasks of two synthetic LR/HR pairs each (LR ``side`` px), drawn like the trainers draw."""
    rng = np.random.default_rng(0)
    return [PairSampler([(rng.integers(0, 256, (side, side, 3), dtype=np.uint8),
                          rng.integers(0, 256, (SCALE * side, SCALE * side, 3), dtype=np.uint8)) for _ in range(2)],
                        SCALE, patch) for _ in range(n)]


def model(arch: dict, seed: int = 0):
    return build_arch({**arch, "scale": SCALE}, generator=torch.Generator().manual_seed(seed))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """A trainer's ``progress`` callback: the time from the end of the warm-up to the last step."""

    def __init__(self, device, warmup: int):
        self.device, self.warmup, self.t0, self.t1, self.n = device, warmup, None, None, 0

    def __call__(self, step, total, loss):
        if step == self.warmup or step == total:
            sync(self.device)
            now = time.perf_counter()
            self.t0 = now if step == self.warmup else self.t0
            self.t1, self.n = now, step - self.warmup

    @property
    def rate(self) -> float:
        return self.n / (self.t1 - self.t0)


def timed_loop(step, device, warmup: int, steps: int) -> float:
    """Steps per second of ``step()`` (a plain PyTorch step) after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps / (time.perf_counter() - t)


def phase(device):
    """Reset the CUDA peak-memory counter; the returned function reads it (MiB, None on CPU)."""
    if device.type != "cuda":
        return lambda: None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    return lambda: round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def check_device(arch: dict, device: torch.device, auto: str) -> dict:
    """device: auto's choice, the weights' dtype, the autocast forward's dtype and the loss dtype."""
    net = model(arch).to(device)
    x = torch.rand(2, 3, 16, 16, device=device)
    out = {"auto_resolves_to": str(resolve_device(auto)), "weights_dtype": str(next(net.parameters()).dtype),
           "torch": torch.__version__, "cuda": torch.version.cuda, "device": str(device)}
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = net(x)
        out.update(gpu=torch.cuda.get_device_name(device), capability=".".join(map(str, torch.cuda.get_device_capability(device))),
                   cudnn=torch.backends.cudnn.version(), bf16_supported=torch.cuda.is_bf16_supported(),
                   autocast_output_dtype=str(y.dtype))
        out["loss_dtype"] = str(per_sample_loss(y, torch.rand_like(y, dtype=torch.float32)).dtype)
    return out


def bench_pretrain(arch, s, device, amp, warmup, steps) -> float:
    cfg = TrainConfig(iterations=warmup + steps, batch=s["pretrain_batch"], lr_patch=s["lr_patch"], lr=2e-4,
                      log_every=10**6, device=str(device), amp=amp)
    clock = Clock(device, warmup)
    tasks = samplers(max(8, s["tasks_per_step"]), s["lr_patch"], s["lr_patch"] * 2)
    pretrain(model(arch), tasks, None, cfg, tasks_per_step=s["tasks_per_step"], progress=clock)
    return clock.rate


def bench_meta(arch, s, device, amp, warmup, steps) -> float:
    cfg = TrainConfig(iterations=warmup + steps, lr_patch=s["meta_patch"], lr=1e-4, log_every=10**6,
                      device=str(device), amp=amp)
    meta = MetaConfig(inner_steps=s["inner_steps"], inner_lr=1e-2, meta_batch=s["meta_batch"], first_order=True,
                      support_batch=s["support_batch"], query_batch=s["query_batch"])
    clock = Clock(device, warmup)
    tasks = samplers(max(8, s["meta_batch"]), s["meta_patch"], s["meta_patch"] * 2)
    maml_train(model(arch), tasks, None, cfg, meta, progress=clock)
    return clock.rate


def bench_finetune(arch, s, device, amp, warmup, steps) -> float:
    cfg = TrainConfig(iterations=warmup + steps, batch=s["finetune_batch"], lr_patch=s["finetune_patch"], lr=1e-4,
                      log_every=10**6, device=str(device), amp=amp)
    clock = Clock(device, warmup)
    finetune(model(arch), samplers(1, s["finetune_patch"], s["finetune_patch"] * 2)[0], cfg, progress=clock)
    return clock.rate


def plain_step(net, opt, draw, device):
    """One plain supervised step: draw a batch, forward, L1, backward, Adam."""
    def step():
        lr, hr = draw()
        loss = F.l1_loss(net(lr.to(device, non_blocking=True)), hr.to(device, non_blocking=True))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def plain_pretrain(arch, s, device, warmup, steps) -> float:
    net = model(arch).to(device).train()
    tasks, gen = samplers(s["tasks_per_step"], s["lr_patch"], s["lr_patch"] * 2), torch.Generator().manual_seed(0)

    def draw():
        parts = [t.sample(s["pretrain_batch"], gen) for t in tasks]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return timed_loop(plain_step(net, torch.optim.Adam(net.parameters(), lr=2e-4), draw, device), device, warmup, steps)


def plain_finetune(arch, s, device, warmup, steps) -> float:
    net = model(arch).to(device).train()
    task, gen = samplers(1, s["finetune_patch"], s["finetune_patch"] * 2)[0], torch.Generator().manual_seed(0)
    step = plain_step(net, torch.optim.Adam(net.parameters(), lr=1e-4), lambda: task.sample(s["finetune_batch"], gen), device)
    return timed_loop(step, device, warmup, steps)


def plain_meta(arch, s, device, warmup, steps) -> float:
    """First-order MAML by hand: per task, a copy of the network takes ``inner_steps`` SGD steps on the
    support batch; its query gradient is added to the shared network's; one Adam step."""
    net = model(arch).to(device).train()
    fast = copy.deepcopy(net)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    tasks, gen = samplers(s["meta_batch"], s["meta_patch"], s["meta_patch"] * 2), torch.Generator().manual_seed(0)

    def step():
        opt.zero_grad(set_to_none=True)
        for t in tasks:
            fast.load_state_dict(net.state_dict())
            s_lr, s_hr = t.sample(s["support_batch"], gen)
            q_lr, q_hr = t.sample(s["query_batch"], gen)
            for _ in range(s["inner_steps"]):
                grads = torch.autograd.grad(F.l1_loss(fast(s_lr.to(device)), s_hr.to(device)), list(fast.parameters()))
                with torch.no_grad():
                    for p, g in zip(fast.parameters(), grads):
                        p -= 1e-2 * g
            grads = torch.autograd.grad(F.l1_loss(fast(q_lr.to(device)), q_hr.to(device)), list(fast.parameters()))
            for p, g in zip(net.parameters(), grads):
                p.grad = g / len(tasks) if p.grad is None else p.grad + g / len(tasks)
        opt.step()
    return timed_loop(step, device, warmup, steps)


def bench_upscale(arch, s, device, repeats: int) -> dict:
    """MP/s of drtl.upscale.upscale_image (bf16 on CUDA, its default, and float32) and of a plain
    float32 ``model(x)`` on one LR image; the bf16 output's distance to the float32 one."""
    side = s["upscale_side"]
    img = np.random.default_rng(1).integers(0, 256, (side, side * 3 // 4, 3), dtype=np.uint8)
    net = model(arch).to(device).eval()
    mp = img.shape[0] * img.shape[1] * SCALE * SCALE / 1e6
    out = {"lr_size": f"{img.shape[1]}x{img.shape[0]}", "output_mp": round(mp, 6)}

    def rate(fn):
        fn()
        sync(device)
        t = time.perf_counter()
        for _ in range(repeats):
            res = fn()
        sync(device)
        return round(mp * repeats / (time.perf_counter() - t), 2), res

    x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255).to(device)
    with torch.no_grad():
        out["plain_fp32_mp_s"], _ = rate(lambda: net(x))
    out["drtl_fp32_mp_s"], fp32 = rate(lambda: upscale_image(net, img, device=device, amp=False))
    if device.type == "cuda":
        out["drtl_bf16_mp_s"], bf16 = rate(lambda: upscale_image(net, img, device=device))
        d = np.abs(bf16.astype(np.int16) - fp32.astype(np.int16))
        out["bf16_vs_fp32_max_abs"] = int(d.max())
        out["bf16_vs_fp32_psnr_db"] = round(float(10 * np.log10(255**2 / max(np.mean(d.astype(np.float64) ** 2), 1e-12))), 2)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(REPO / "params.gpu.yaml"), help="the profile whose sizes are measured")
    ap.add_argument("--cpu-smoke", action="store_true", help="the same code paths on the CPU, tiny sizes")
    ap.add_argument("--json", type=Path, help="write the measurements here")
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    params = load_params(a.params)
    device = torch.device("cpu") if a.cpu_smoke else resolve_device(params["device"])
    if device.type != "cuda" and not a.cpu_smoke:
        print("gpu_check: error: no CUDA device (torch.cuda.is_available() is False); run on a GPU or pass --cpu-smoke",
              file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    s, arch = sizes(params, a.cpu_smoke), params["arch"]
    warm, n = (1, 2) if a.cpu_smoke else (5, 40)
    meta_n = 2 if a.cpu_smoke else 8
    amps = [False, True] if device.type == "cuda" else [False]
    res = {"host": platform.node(), "arch": arch["name"], "sizes": s, "check": check_device(arch, device, params["device"])}
    print(f"device: {json.dumps(res['check'])}")
    if device.type == "cuda":
        c = res["check"]
        assert c["auto_resolves_to"].startswith("cuda") and c["weights_dtype"] == "torch.float32", c
        assert c["autocast_output_dtype"] == "torch.bfloat16" and c["loss_dtype"] == "torch.float32", c
    for name, drtl_fn, plain_fn, steps in (("pretrain", bench_pretrain, plain_pretrain, n),
                                           ("metatrain", bench_meta, plain_meta, meta_n),
                                           ("finetune", bench_finetune, plain_finetune, n)):
        row = {}
        peak = phase(device)
        row["plain_fp32_steps_s"] = round(plain_fn(arch, s, device, warm, steps), 3)
        row["plain_peak_mib"] = peak()
        for amp in amps:
            peak = phase(device)
            key = "bf16" if amp else "fp32"
            row[f"drtl_{key}_steps_s"] = round(drtl_fn(arch, s, device, amp, warm, steps), 3)
            row[f"drtl_{key}_peak_mib"] = peak()
        if device.type != "cuda":
            row["bf16"] = "skipped (bf16 autocast is CUDA-only)"
        row["drtl_vs_plain_fp32"] = round(row["drtl_fp32_steps_s"] / row["plain_fp32_steps_s"], 3)
        res[name] = row
        print(f"{name}: {json.dumps(row)}")
    peak = phase(device)
    res["upscale"] = bench_upscale(arch, s, device, repeats=2 if a.cpu_smoke else 5)
    res["upscale"]["peak_mib"] = peak()
    print(f"upscale: {json.dumps(res['upscale'])}")
    res["total_s"] = round(time.perf_counter() - t_start, 1)
    print(f"gpu_check: done in {res['total_s']} s on {device}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
