"""Trainers: multi-task pre-training (uniform / DRTL-Pre), meta-learning (MAML / DRTL-Meta), fine-tuning.

All three share :func:`drtl.train.common.run_loop` (Adam, schedule, AMP, checkpoint/resume,
progress, history); they differ only in the loss of one step.
"""

from drtl.train.common import (
    TrainConfig,
    load_checkpoint,
    lr_at,
    make_generator,
    per_sample_loss,
    pixel_loss,
    resolve_device,
    run_loop,
    save_checkpoint,
    validate_weights,
)
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
