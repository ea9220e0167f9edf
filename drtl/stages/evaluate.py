"""Evaluation stage: PSNR/SSIM on the Y channel (BT.601) with a border crop equal to the scale."""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Callable

import numpy as np

from drtl.data.folder import load_pairs
from drtl.config import check_scale
from drtl.errors import ConfigError
from drtl.methods import BASELINE
from drtl.io import clean_stale_temps, write_text
from drtl.metrics import psnr, ssim
from drtl.progress import progress


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The `bicubic` method: MATLAB-compatible bicubic up-sampling of the uint8 LR."""
    from drtl.degradations.resize import imresize

    return imresize(lr, scale=float(scale))


def score_pairs(pairs, scale: int, upscale: Callable[[np.ndarray], np.ndarray]) -> dict:
    """Mean and per-image PSNR/SSIM (Y and RGB) of ``upscale(lr)`` against HR for (name, lr, hr) pairs."""
    per = []
    for name, lr, hr in progress(pairs, desc="evaluate"):
        sr = upscale(lr)
        if sr.shape != hr.shape:
            raise ConfigError(f"{name}: method output {sr.shape} does not match HR {hr.shape}; check --scale")
        per.append({
            "name": name,
            "psnr_y": psnr(sr, hr, crop_border=scale), "ssim_y": ssim(sr, hr, crop_border=scale),
            "psnr_rgb": psnr(sr, hr, crop_border=scale, y_channel=False),
        })
    mean = {k: float(np.mean([p[k] for p in per])) for k in ("psnr_y", "ssim_y", "psnr_rgb")}
    return {**mean, "n_images": len(per), "per_image": per}


def evaluate(method: str, data: str | Path, scale: int, out: str | Path | None = None,
             model: str | Path | None = None, shots: int | None = None, seed: int | None = None,
             device: str = "cpu", tile: int | None = None) -> dict:
    """Evaluate ``bicubic`` or a trained model file on a paired folder (the test pairs).

    Writes the JSON report to ``out`` when given: ``psnr_y``/``ssim_y`` means, ``psnr_rgb``, the
    per-image numbers, the run's identity (method, shots, seed, model path) and, for a fine-tuned
    model, the pairs it was fine-tuned on (``train_pairs``).
    """
    scale = check_scale(scale)
    if model is None and method != BASELINE:
        raise ConfigError(f"method {method!r} needs --model (only {BASELINE} runs without a model)")
    if out is not None and Path(out).is_dir():
        raise ConfigError(f"--out {out}: is a folder; give the JSON report's file path, e.g. {Path(out) / 'eval.json'}")
    if tile is not None:
        from drtl.upscale import DEFAULT_OVERLAP, check_tiling

        check_tiling(tile or None, DEFAULT_OVERLAP)
    pairs = load_pairs(data, scale)
    if model is None:
        def upscale(lr):
            return bicubic_upscale(lr, scale)
    else:
        from drtl.modelio import load_model
        from drtl.upscale import upscale_image

        net, meta = load_model(model, expect_scale=scale, device=device)

        def upscale(lr):
            return upscale_image(net, lr, tile=tile, device=device)
    report = {"method": method, "shots": shots, "seed": seed, "data": str(data), "scale": int(scale),
              "crop_border": int(scale), "model": str(model) if model else None,
              **score_pairs(pairs, scale, upscale)}
    if model is not None and meta["recipe"].get("pairs"):  # the pairs the model was fine-tuned on
        report["train_pairs"] = sorted(meta["recipe"]["pairs"])
    if out is not None:
        clean_stale_temps(Path(out).parent)  # temporaries of an earlier run that was killed
        write_text(out, json.dumps(report, indent=2) + "\n")
    return report


def run(params: dict, inputs: dict, out: Path, on_log=None) -> dict:
    """Stage contract (drtl.stages): ``out`` is a run folder (``out/eval.json``), a ``.json`` path, or
    None (numbers only, nothing written)."""
    if out is not None and not Path(out).suffix and Path(out).is_dir() and any(Path(out).iterdir()) and not any(
            (Path(out) / f).is_file() for f in ("eval.json", "run.json", "fingerprint.json")):
        raise ConfigError(f"--out {out}: is a folder; give the JSON report's file path (e.g. {Path(out) / 'eval.json'}) "
                          "or a new run folder")  # a folder of other files is never written into
    dest = None if out is None else (Path(out) if Path(out).suffix else Path(out) / "eval.json")
    report = evaluate(inputs.get("method") or BASELINE, inputs.get("data") or params["target"]["test"],
                      int(inputs.get("scale") or params["target"]["scale"]), dest,
                      inputs.get("model"), inputs.get("shots"), inputs.get("seed"),
                      inputs.get("device") or params["device"], inputs.get("tile"))
    return {k: report[k] for k in ("psnr_y", "ssim_y", "psnr_rgb")}
