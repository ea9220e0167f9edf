"""Kubeflow pipeline of the DRTL experiment: the DAG (``pipelines.few_shot_realsr``), the params
profiles for local runs (``pipelines.profiles``) and the ``drtl kfp`` command (``pipelines.cli``).

Importing this package does not import kfp; ``pipelines.few_shot_realsr`` does.
"""
