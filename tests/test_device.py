"""drtl.device: the one device rule every trainer, the DRN and model loading use."""

from __future__ import annotations

import pytest
import torch

from drtl.device import device_name, resolve_device
from drtl.errors import ConfigError

HAS_CUDA = torch.cuda.is_available()


def test_cpu_is_the_default():
    assert resolve_device() == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_auto():
    assert resolve_device("auto").type == ("cuda" if HAS_CUDA else "cpu")


@pytest.mark.parametrize("bad", ["tpu", "gpu", "cuda:x", "cuda:", "", 3])
def test_unknown_devices_are_refused(bad):
    with pytest.raises(ConfigError, match="unknown device"):
        device_name(bad)
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device(bad)


def test_names_are_checked_without_a_gpu():
    assert device_name("CUDA:1") == "cuda:1"
    assert device_name(torch.device("cuda", 0)) == "cuda:0"


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", torch.device("cuda", 1)])
def test_cuda_without_cuda(name):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device(name)


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_cuda_index():
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
