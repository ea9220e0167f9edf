"""The DRN file format (``drn.pt``), owned here: the relation stage writes it, the relation stage
(``drn`` input) and ``drtl adapt`` read it back.

A ``torch.save`` dict, loadable with ``weights_only=True``: ``encoder`` (state dict), ``arch``
(the encoder's arch config for :func:`drtl.archs.build_arch`), ``bank`` (the memory bank's state
dict: one prototype per task), ``tasks`` and ``families`` (names in prototype order) and ``config``
(the :class:`drtl.relation.DRNConfig` it was trained with, as a dict).
"""

from __future__ import annotations

import os

import torch

from drtl.errors import ModelError


def save_drn(path: str | os.PathLike, encoder, bank, tasks: list[str], families: list[str], config: dict) -> None:
    torch.save({"encoder": encoder.state_dict(), "arch": encoder.arch_cfg, "bank": bank.state_dict(),
                "tasks": list(tasks), "families": list(families), "config": dict(config)}, path)


def load_drn(path: str | os.PathLike):
    """(encoder, bank, state dict) from a ``drn.pt``; one-line ModelError for a damaged or foreign file."""
    from drtl.archs import build_arch
    from drtl.relation.drn import MemoryBank

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        encoder = build_arch(dict(state["arch"]))
        encoder.load_state_dict(state["encoder"])
        protos = state["bank"]["prototypes"]
        bank = MemoryBank(protos.shape[0], protos.shape[1])
        bank.load_state_dict(state["bank"])
    except Exception as exc:  # a damaged or foreign file
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{path}: unreadable relation network ({type(exc).__name__}: {first})") from None
    return encoder, bank, state
