"""Params profiles for ``drtl kfp run --local``.

``tiny``: the whole DAG in a couple of minutes on a laptop CPU (4 auxiliary tasks, a few training
iterations, 64 px sample crops, K in {1, 2}, one seed). Numbers are smoke-test numbers only.
"""

TINY_TASKS = ["clean_bicubic", "iso_blur_s2.4", "gauss_noise30", "jpeg_q30"]

TINY_OVERRIDES = [
    f"aux.tasks=[{', '.join(TINY_TASKS)}]",
    "relation.steps=10", "relation.lr_patch=16", "relation.eval_per_task=4", "relation.patches_per_image=4",
    "pretrain.iterations=3", "pretrain.lr_patch=16", "meta.iterations=2", "meta.lr_patch=16",
    "finetune.iterations=3", "finetune.lr_patch=16", "finetune.batch=4",
    "experiment.shots=[1, 2]", "experiment.seeds=[0]",
]

# drtl.data.sample.make_sample keyword arguments of the tiny sample (the scale comes from params)
TINY_SAMPLE = {"seed": 0, "hr_size": 64, "pool_size": 4, "test_size": 2, "aux_crops": 1, "aux_size": 96}


def tiny_params(overrides: list[str] | None = None) -> dict:
    from drtl.config import load_params

    return load_params(None, TINY_OVERRIDES + list(overrides or []))
