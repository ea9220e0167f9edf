"""The ``report`` component: results table, aggregate, Markdown table and plot (``drtl.stages.report``)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Markdown, Metrics, Output

from components.image import DRTL_IMAGE


@dsl.component(base_image=DRTL_IMAGE, install_kfp_package=False)
def report(params: str, shots: str, results: Output[Dataset], table: Output[Markdown], metrics: Output[Metrics],
           plot: Output[HTML], bicubic: list = [], scratch: list = [], pretrain: list = [], maml: list = [],
           drtl_pre: list = [], drtl_meta: list = [], upper_bound: list = [], tracking_uri: str = ""):
    """One input per method: the evaluation reports (JSON strings returned by ``evaluate``) that
    ``dsl.Collected`` gathers over the seed / shot loops (nested lists are flattened). ``results``
    holds ``results.csv`` (method, shots, seed, psnr_y, ssim_y), ``aggregate.csv``, ``results.md``,
    ``psnr_vs_shots.png`` and ``metrics.json``; ``shots`` (JSON list) expands the K-independent
    methods' rows."""
    import base64
    import json
    import tempfile
    from pathlib import Path

    import yaml

    from drtl.config import load_params
    from drtl.stages.report import report as report_stage

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(json.loads(params)))
        p = load_params(Path(tmp) / "params.yaml")
    if tracking_uri:  # TODO(tracking): reaches params.tracking only, no MLflow run yet (docs/kubeflow.md)
        p["tracking"].update(uri=tracking_uri, enabled=True)

    def flat(items):
        for x in items:
            if isinstance(x, list):
                yield from flat(x)
            else:
                yield x

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for group in (bicubic, scratch, pretrain, maml, drtl_pre, drtl_meta, upper_bound):
            for text in flat(group):
                paths.append(Path(tmp) / f"eval_{len(paths):04d}.json")
                paths[-1].write_text(text if isinstance(text, str) else json.dumps(text))
        rep = report_stage(paths, results.path, expand_shots=[int(k) for k in json.loads(shots)])
    out = Path(results.path)
    Path(table.path).write_text((out / "results.md").read_text())
    for k, v in rep["metrics"].items():
        metrics.log_metric(k, v)
    Path(metrics.path).write_text((out / "metrics.json").read_text())
    img = base64.b64encode((out / "psnr_vs_shots.png").read_bytes()).decode()
    Path(plot.path).write_text(f'<html><body><img src="data:image/png;base64,{img}"/></body></html>\n')
    results.metadata.update({"n_rows": rep["n_rows"]})
