"""Params profile of ``drtl-kfp run --local`` without ``--params``: the tiny profile.

The params are ``configs/tiny.yaml`` (the profile of the orchestrator parity test: 4 auxiliary
tasks, a few training iterations, K in {1, 2}, seed 0); with ``--data sample`` the built-in sample
is made small too (:data:`TINY_SAMPLE`). Numbers are smoke-test numbers only.
"""

from pathlib import Path

TINY_PARAMS = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"

# drtl.data.sample.make_sample keyword arguments of the tiny sample (the scale comes from params)
TINY_SAMPLE = {"seed": 0, "hr_size": 64, "pool_size": 4, "test_size": 2, "aux_crops": 1, "aux_size": 96}


def tiny_params(overrides: list[str] | None = None) -> dict:
    from drtl.config import load_params

    return load_params(TINY_PARAMS, list(overrides or []))
