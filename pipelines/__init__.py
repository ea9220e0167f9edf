"""Kubeflow pipeline of the DRTL experiment: the DAG built from the plan
(``pipelines.few_shot_realsr``), the tiny profile for local runs (``pipelines.profiles``) and the
``drtl-kfp`` command (``pipelines.cli``).

Importing this package does not import kfp; ``pipelines.few_shot_realsr`` does.
"""
