"""Model files that carry their recipe: save / load / describe (weights_only-safe).

A drtl model file is a ``torch.save`` of one plain dict::

    {"format": "drtl-model", "version": 1,
     "arch": model.arch_cfg,          # resolved build_arch config (JSON-able; has 'name', 'scale' for SR)
     "state_dict": {name: tensor},    # CPU tensors
     "recipe": {...}}                 # how it was made: config, method, shots, seed, data hashes ...

Only types that ``torch.load(weights_only=True)`` accepts are written (tensors, dicts, lists, str,
int, float, bool, None): the recipe is normalised through JSON on save, so a tuple becomes a list
and anything not JSON-able is refused up front. Loading always uses ``weights_only=True``, so a file
that smuggles in an arbitrary pickled object is refused without executing it.

Files are written atomically and byte-for-byte deterministically (the same model and recipe give
the same bytes, so DVC / Kubeflow caches and hashes are stable).

Every failure is a one-line :class:`drtl.errors.ModelError` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from drtl.device import resolve_device
from drtl.errors import ConfigError, ModelError
from drtl.io import atomic_path

FORMAT = "drtl-model"
VERSION = 1


# ----------------------------------------------------------------------------------------------
# helpers


def arch_family(name: str) -> str:
    """'drn' for the relation encoder, 'edsr' for every SR backbone (edsr_tiny, edsr_baseline, edsr)."""
    return "drn" if name == "drn" else "edsr"


def _describe_arch(arch: dict) -> str:
    name = arch.get("name", "?")
    if arch_family(name) == "drn":
        return "drn (relation encoder)"
    return f"{name} x{arch.get('scale', '?')}"


def _plain(obj: Any, what: str) -> Any:
    """Normalise a JSON-able object to weights_only-loadable builtins (via a JSON round trip)."""
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be JSON-serialisable (dicts, lists, str, numbers, bool, None): {exc}") from None


# ----------------------------------------------------------------------------------------------
# save


def save_model(path: str | os.PathLike, model: nn.Module, recipe: dict | None = None) -> Path:
    """Write ``model`` (built by :func:`drtl.archs.build_arch`) and its ``recipe`` to ``path``,
    atomically. Returns the path. The recipe is any JSON-able dict (training config, method, shots,
    seed, data hashes, metrics ...)."""
    path = Path(path)
    arch = getattr(model, "arch_cfg", None)
    if not isinstance(arch, dict) or "name" not in arch:
        raise ModelError(
            f"cannot save {type(model).__name__} to {path}: it has no arch_cfg; build models with drtl.archs.build_arch"
        )
    if recipe is None:
        recipe = {}
    if not isinstance(recipe, dict):
        raise ConfigError(f"recipe must be a dict, got {type(recipe).__name__}")
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "arch": _plain(arch, "model.arch_cfg"),
        "state_dict": state,
        "recipe": _plain(recipe, "recipe"),
    }
    # Serialise to memory first: the zip's inner folder is then always 'archive/' (torch names it
    # after the file otherwise, and the temp file name is random), so the bytes are deterministic.
    buf = io.BytesIO()
    torch.save(payload, buf)
    with atomic_path(path, suffix=".pt") as tmp:
        tmp.write_bytes(buf.getbuffer())
    return path


# ----------------------------------------------------------------------------------------------
# load


def _read(path: str | os.PathLike, map_location: torch.device | str = "cpu") -> dict:
    """torch.load(weights_only=True) + format checks; returns the raw payload dict."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: model file not found")
    if not path.is_file():
        raise ModelError(f"{path}: is not a file (expected a drtl model file, e.g. model.pt)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "weights only" in msg.lower() or "weights_only" in msg.lower():
            m = re.search(r"GLOBAL ([\w.]+)", msg)
            detail = f" (e.g. {m.group(1)})" if m else ""
            raise ModelError(
                f"{path}: refused to load: the file holds pickled objects other than tensors and plain "
                f"containers{detail}; only model files written by drtl (save_model) are accepted"
            ) from None
        raise ModelError(f"{path}: not a drtl model file (cannot unpickle: {msg.splitlines()[0] if msg else exc!r})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{path}: corrupt, truncated or not a torch file ({type(exc).__name__}: {first})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        hint = ""
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            hint = " (it looks like a bare state_dict; wrap it with drtl.modelio.save_model)"
        raise ModelError(f"{path}: not a drtl model file (no format '{FORMAT}'){hint}")
    version = obj.get("version")
    if not isinstance(version, int) or version > VERSION or version < 1:
        raise ModelError(f"{path}: drtl model format version {version!r} is not supported (this drtl reads version {VERSION}); upgrade drtl")
    if not isinstance(obj.get("arch"), dict) or "name" not in obj["arch"]:
        raise ModelError(f"{path}: drtl model file without a valid 'arch' entry; the file is damaged")
    sd = obj.get("state_dict")
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"{path}: drtl model file without a valid 'state_dict'; the file is damaged")
    if not isinstance(obj.get("recipe", {}), dict):
        raise ModelError(f"{path}: drtl model file with a non-dict 'recipe'; the file is damaged")
    return obj


def _check_expectations(path: Path, arch: dict, expect_scale: int | None, expect_arch: str | None) -> None:
    name = arch["name"]
    if expect_arch is not None:
        ok = expect_arch == name or (expect_arch in ("edsr", "drn") and arch_family(name) == expect_arch)
        if not ok:
            want = "an SR model (edsr family)" if expect_arch == "edsr" else f"a '{expect_arch}' model"
            raise ModelError(f"{path} is a {_describe_arch(arch)} model but {want} was expected")
    if expect_scale is not None:
        scale = arch.get("scale")
        if scale is None:
            raise ModelError(f"{path} is a {_describe_arch(arch)} model, not an SR model with a scale (--scale {expect_scale} was asked)")
        if int(scale) != int(expect_scale):
            raise ModelError(f"{path} is a x{scale} model but --scale {expect_scale} was asked")


def _fit_state_dict(path: Path, model: nn.Module, sd: dict) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. '{missing[0]}')")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. '{unexpected[0]}')")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} of other shape (e.g. '{k}': file {list(sd[k].shape)} vs arch {list(own[k].shape)})")
        raise ModelError(f"{path}: weights do not fit its arch {_describe_arch(model.arch_cfg)}: {', '.join(parts)}; the file is damaged or was edited")
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:  # dtype or other surprises
        raise ModelError(f"{path}: weights do not load into {_describe_arch(model.arch_cfg)} ({str(exc).splitlines()[0]})") from None


def _rebuild(path: Path, arch: dict) -> nn.Module:
    # nn.Conv2d's constructor draws from the global RNG; loading a file must not change it
    with torch.random.fork_rng(devices=[]):
        return _rebuild_inner(path, arch)


def _rebuild_inner(path: Path, arch: dict) -> nn.Module:
    """build_arch(arch), tolerating presets whose resolved config names their fixed sizes
    (edsr_tiny / edsr_baseline record num_feat / num_block, which resolve_arch_cfg refuses as
    overrides): retry without them and accept only if the result resolves to the same config."""
    from drtl.archs import build_arch

    try:
        return build_arch(arch, generator=torch.Generator())  # init is overwritten by the file
    except ConfigError as exc:
        first = exc
    if "num_feat" in arch or "num_block" in arch:
        try:
            model = build_arch({k: v for k, v in arch.items() if k not in ("num_feat", "num_block")}, generator=torch.Generator())
        except ConfigError:
            model = None
        if model is not None and model.arch_cfg == arch:
            return model
    raise ModelError(f"{path}: its arch config cannot be built ({first})")


def load_model(
    path: str | os.PathLike,
    expect_scale: int | None = None,
    expect_arch: str | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict]:
    """Load a drtl model file (``weights_only=True``) -> ``(model in eval mode on device, meta)``.

    ``expect_scale``: refuse a model of another scale. ``expect_arch``: a family ('edsr' = any SR
    backbone, 'drn') or an exact arch name. ``device``: 'cpu', 'cuda', 'cuda:N' or 'auto'.
    ``meta`` = {'path', 'format', 'version', 'arch', 'recipe', 'n_params'}.
    """
    path = Path(path)
    dev = resolve_device(device)
    obj = _read(path, map_location="cpu")
    arch = obj["arch"]
    _check_expectations(path, arch, expect_scale, expect_arch)
    model = _rebuild(path, arch)
    _fit_state_dict(path, model, obj["state_dict"])
    model.eval().to(dev)
    meta = {
        "path": str(path),
        "format": obj["format"],
        "version": obj["version"],
        "arch": dict(model.arch_cfg),
        "recipe": obj.get("recipe", {}),
        "n_params": sum(int(p.numel()) for p in model.parameters()),
    }
    return model, meta


def model_info(path: str | os.PathLike) -> dict:
    """What a model file holds, for display: path, size, sha256, format/version, arch, name,
    scale (None for DRN), parameter count, tensor count and the recipe. Validates the file fully."""
    path = Path(path)
    model, meta = load_model(path)
    obj_bytes = path.read_bytes()
    arch = meta["arch"]
    return {
        "path": str(path),
        "size_bytes": len(obj_bytes),
        "sha256": hashlib.sha256(obj_bytes).hexdigest(),
        "format": meta["format"],
        "version": meta["version"],
        "name": arch["name"],
        "family": arch_family(arch["name"]),
        "scale": arch.get("scale"),
        "n_params": meta["n_params"],
        "n_tensors": len(model.state_dict()),
        "arch": arch,
        "recipe": meta["recipe"],
    }
