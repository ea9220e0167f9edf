"""Trainers: multi-task pre-training (uniform / DRTL-Pre), meta-learning (MAML / DRTL-Meta), fine-tuning.

All three share :func:`drtl.train.common.run_loop` (Adam, schedule, AMP, checkpoint/resume,
progress, history); they differ only in the loss of one step. Settings: :mod:`drtl.train.config`;
checkpoints: :mod:`drtl.train.checkpoint`; the device rule: :mod:`drtl.device`.
"""

from drtl.device import resolve_device
from drtl.train.checkpoint import load_checkpoint, save_checkpoint
from drtl.train.common import per_sample_loss, pixel_loss, run_loop, validate_weights
from drtl.train.config import TrainConfig, lr_at, make_generator
from drtl.train.finetune import finetune
from drtl.train.meta import MetaConfig, inner_adapt, maml_train, meta_loss
from drtl.train.pretrain import pretrain, weighted_task_loss

__all__ = [
    "TrainConfig",
    "MetaConfig",
    "resolve_device",
    "make_generator",
    "lr_at",
    "per_sample_loss",
    "pixel_loss",
    "validate_weights",
    "save_checkpoint",
    "load_checkpoint",
    "run_loop",
    "pretrain",
    "weighted_task_loss",
    "maml_train",
    "inner_adapt",
    "meta_loss",
    "finetune",
]
