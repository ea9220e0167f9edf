"""Training components: ``pretrain`` (uniform / DRTL-Pre), ``metatrain`` (MAML / DRTL-Meta) and
``finetune`` (few-shot, every method), wrappers of ``drtl.stages.train``.

Each writes a ``Model`` folder artifact holding ``model.pt`` (a drtl model file with its recipe)
and ``history.json``; ``finetune`` starts from ``init/model.pt`` when given an ``init`` model.
"""

from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import DRTL_IMAGE


@dsl.component(base_image=DRTL_IMAGE, install_kfp_package=False)
def pretrain(params: str, method: str, seed: int, synth: Input[Dataset], relation: Input[Model],
             model: Output[Model], metrics: Output[Metrics], shots: int = 0, device: str = "",
             tracking_uri: str = ""):
    """Multi-task pre-training; ``method`` 'uniform' (w = 1/N) or 'drtl' (relation weights of K =
    ``shots``, seed; ``shots`` 0 = none, for 'uniform')."""
    import json
    import tempfile
    from pathlib import Path

    import yaml

    from drtl.config import load_params
    from drtl.stages.train import pretrain_run

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(json.loads(params)))
        p = load_params(Path(tmp) / "params.yaml")
    if tracking_uri:  # TODO(tracking): reaches params.tracking only, no MLflow run yet (docs/kubeflow.md)
        p["tracking"].update(uri=tracking_uri, enabled=True)
    if int(p.get("threads") or 0) > 0:  # torch intra-op threads (on a cluster: the task's CPU limit)
        import torch

        torch.set_num_threads(int(p["threads"]))
    m = pretrain_run(method, synth.path, relation.path, model.path, p["arch"], int(p["target"]["scale"]),
                     p["pretrain"], seed, shots or None, device or p["device"])
    model.metadata.update({"stage": "pretrain", "method": method, "shots": shots, "seed": seed})
    if m.get("final_loss") is not None:
        metrics.log_metric("final_loss", m["final_loss"])
    Path(metrics.path).write_text(json.dumps(m) + "\n")


@dsl.component(base_image=DRTL_IMAGE, install_kfp_package=False)
def metatrain(params: str, method: str, seed: int, synth: Input[Dataset], relation: Input[Model],
              model: Output[Model], metrics: Output[Metrics], shots: int = 0, device: str = "",
              tracking_uri: str = ""):
    """(First-order) MAML; ``method`` 'maml' (unweighted) or 'drtl' (relation-weighted meta-gradient
    of K = ``shots``, seed; ``shots`` 0 = none, for 'maml')."""
    import json
    import tempfile
    from pathlib import Path

    import yaml

    from drtl.config import load_params
    from drtl.stages.train import metatrain_run

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(json.loads(params)))
        p = load_params(Path(tmp) / "params.yaml")
    if tracking_uri:  # TODO(tracking): reaches params.tracking only, no MLflow run yet (docs/kubeflow.md)
        p["tracking"].update(uri=tracking_uri, enabled=True)
    if int(p.get("threads") or 0) > 0:  # torch intra-op threads (on a cluster: the task's CPU limit)
        import torch

        torch.set_num_threads(int(p["threads"]))
    m = metatrain_run(method, synth.path, relation.path, model.path, p["arch"], int(p["target"]["scale"]),
                      p["meta"], seed, shots or None, device or p["device"])
    model.metadata.update({"stage": "metatrain", "method": method, "shots": shots, "seed": seed})
    if m.get("final_loss") is not None:
        metrics.log_metric("final_loss", m["final_loss"])
    Path(metrics.path).write_text(json.dumps(m) + "\n")


@dsl.component(base_image=DRTL_IMAGE, install_kfp_package=False)
def finetune(params: str, method: str, shots: int, seed: int, data: Input[Dataset], model: Output[Model],
             metrics: Output[Metrics], init: Optional[Input[Model]] = None, device: str = "",
             tracking_uri: str = ""):
    """Fine-tune on the K target pairs of (shots, seed) of ``data/pool`` (upper_bound: every pair),
    from ``init`` (a pretrain / metatrain model) or from scratch."""
    import json
    import tempfile
    from pathlib import Path

    import yaml

    from drtl.config import load_params
    from drtl.stages.train import finetune_run

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(json.loads(params)))
        p = load_params(Path(tmp) / "params.yaml")
    if tracking_uri:  # TODO(tracking): reaches params.tracking only, no MLflow run yet (docs/kubeflow.md)
        p["tracking"].update(uri=tracking_uri, enabled=True)
    if int(p.get("threads") or 0) > 0:  # torch intra-op threads (on a cluster: the task's CPU limit)
        import torch

        torch.set_num_threads(int(p["threads"]))
    m = finetune_run(method, str(Path(data.path) / "pool"), model.path, p["arch"], int(p["target"]["scale"]),
                     p["finetune"], shots, seed, str(Path(init.path) / "model.pt") if init is not None else None,
                     device or p["device"])
    model.metadata.update({"stage": "finetune", "method": method, "shots": shots, "seed": seed})
    if m.get("final_loss") is not None:
        metrics.log_metric("final_loss", m["final_loss"])
    Path(metrics.path).write_text(json.dumps(m) + "\n")
