"""The one device rule (bottom layer): which ``torch.device`` a config's device string means.

``'cpu'`` (the default), ``'cuda'`` / ``'cuda:N'`` (an error when CUDA or GPU N is absent),
``'mps'`` (an error when MPS is absent) or ``'auto'`` (CUDA when available, else CPU). Names are
case- and blank-insensitive; a ``torch.device`` is accepted too. Every refusal is a one-line
:class:`drtl.errors.ConfigError`.
"""

from __future__ import annotations

import torch

from drtl.errors import ConfigError

CHOICES = "'cpu', 'cuda', 'cuda:N' or 'auto'"


def device_name(device: str | torch.device | None = "cpu") -> str:
    """The normalised device name (``None`` -> ``'cpu'``); checks the spelling only, not availability."""
    if device is None:
        return "cpu"
    if isinstance(device, torch.device):
        device = str(device)
    if isinstance(device, str):
        name = device.strip().lower()
        if name in ("cpu", "cuda", "mps", "auto") or (name.startswith("cuda:") and name[5:].isdigit()):
            return name
    raise ConfigError(f"unknown device {device!r}; use {CHOICES}")


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """The ``torch.device`` for ``device`` on this machine; ConfigError when it is unknown or absent."""
    name = device_name(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(f"device {device!r} was asked but MPS is not available on this machine; "
                              "use device 'cpu' or 'auto'")
        return torch.device("mps")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was asked but CUDA is not available on this machine "
                              "(torch.cuda.is_available() is False); use device 'cpu' or 'auto'")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r} was asked but only {torch.cuda.device_count()} "
                              "CUDA device(s) are visible")
        return dev
    return torch.device("cpu")
