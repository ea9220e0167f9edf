"""Kubeflow lightweight components: one per ``drtl.stages`` stage, thin wrappers, no logic.

Every component calls the same stage function as the ``drtl`` CLI. Rules that keep them thin and
runnable in the image (``components.image.DRTL_IMAGE``):

- ``drtl`` is imported inside the function body (lightweight components ship only the function
  source); nothing from this package is imported at run time;
- params travel as one ``params`` dict (the content of ``params.yaml``), validated by
  ``drtl.config.load_params`` inside the component;
- datasets, synthesized tasks, relation graphs and models are folder artifacts
  (``Dataset`` / ``Model``); stage metrics are ``Metrics``; human-readable summaries are
  ``Markdown`` or ``HTML``.

The library (``drtl/``) never imports kfp; this package does.
"""

from components.data import prepare, validate
from components.evaluate import evaluate
from components.image import DRTL_IMAGE
from components.relation import relation
from components.report import report
from components.synthesize import synthesize
from components.train import finetune, metatrain, pretrain

STAGE_COMPONENTS = {
    "prepare": prepare, "validate": validate, "synthesize": synthesize, "relation": relation,
    "pretrain": pretrain, "metatrain": metatrain, "finetune": finetune, "evaluate": evaluate,
    "report": report,
}

__all__ = ["DRTL_IMAGE", "STAGE_COMPONENTS", *STAGE_COMPONENTS]
