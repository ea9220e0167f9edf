"""SR backbones (EDSR family) and the DRN encoder, built from config dicts.

Tensors are NCHW float32 RGB in [0, 1] at every boundary. ``build_arch(cfg)`` is the entry point;
``model.arch_cfg`` records the resolved config so checkpoints carry their recipe.
"""

from drtl.archs.drn import DRNEncoder
from drtl.archs.edsr import EDSR
from drtl.archs.registry import arch_names, build_arch, resolve_arch_cfg

__all__ = ["EDSR", "DRNEncoder", "build_arch", "arch_names", "resolve_arch_cfg"]
