"""The ``evaluate`` component: PSNR / SSIM (Y, crop = scale) on the test pairs (``drtl.stages.evaluate``)."""

from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import DRTL_IMAGE


@dsl.component(base_image=DRTL_IMAGE, install_kfp_package=False)
def evaluate(params: str, method: str, seed: int, data: Input[Dataset], metrics: Output[Metrics],
             model: Optional[Input[Model]] = None, shots: int = 0, device: str = "",
             tracking_uri: str = "") -> str:
    """Evaluate ``bicubic`` (no model) or ``model/model.pt`` on ``data/test``. The ``metrics``
    artifact is the stage's JSON report (plus logged psnr_y / ssim_y / psnr_rgb); the returned
    string is the same report as JSON, which the ``report`` component collects. ``shots`` 0 (the
    default) marks a method that does not depend on K (bicubic, upper_bound): null in the report."""
    import json
    import tempfile
    from pathlib import Path

    import yaml

    from drtl.config import load_params
    from drtl.stages.evaluate import evaluate as evaluate_stage

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(json.loads(params)))
        p = load_params(Path(tmp) / "params.yaml")
    if tracking_uri:  # TODO(tracking): reaches params.tracking only, no MLflow run yet (docs/kubeflow.md)
        p["tracking"].update(uri=tracking_uri, enabled=True)
    if int(p.get("threads") or 0) > 0:  # torch intra-op threads (on a cluster: the task's CPU limit)
        import torch

        torch.set_num_threads(int(p["threads"]))
    rep = evaluate_stage(method, str(Path(data.path) / "test"), int(p["target"]["scale"]), metrics.path,
                         str(Path(model.path) / "model.pt") if model is not None else None, shots or None, seed,
                         device or p["device"])
    for k in ("psnr_y", "ssim_y", "psnr_rgb"):
        metrics.log_metric(k, rep[k])
    metrics.metadata.update({"method": method, "shots": shots, "seed": seed})
    return json.dumps(rep)
