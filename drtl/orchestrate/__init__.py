"""Orchestrators: they execute or render the plan (:mod:`drtl.plan`) and never hold stage logic.

- :mod:`drtl.orchestrate.experiment`: ``drtl experiment``, the whole plan in one resumable process;
- :mod:`drtl.orchestrate.dvcgen`: ``drtl dvc generate|check``, ``dvc.yaml`` rendered from the plan;
- :mod:`drtl.orchestrate.adapt`: ``drtl adapt``, a small plan for one new camera.

The Kubeflow pipeline (``pipelines/``) renders the same plan; the library never imports it.
"""
