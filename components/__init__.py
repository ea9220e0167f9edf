"""Kubeflow components: ONE generic, thin wrapper around :func:`drtl.runner.execute` for every stage
(:mod:`components.stage`), plus the task that opens the pipeline's parent MLflow run.

The image is a compile option (:mod:`components.image` holds the default). Importing this package
does not import kfp (``drtl-kfp --help`` stays fast); :mod:`components.stage` does. The library
(``drtl/``) never imports kfp.
"""

from components.image import DEFAULT_IMAGE, DRTL_IMAGE

_STAGE = ("ARTIFACT_SLOTS", "run_stage", "stage_component", "start_tracking", "tracking_component")


def __getattr__(name: str):
    if name in _STAGE:
        from components import stage

        return getattr(stage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_IMAGE", "DRTL_IMAGE", *_STAGE]
