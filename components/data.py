"""Data components: ``prepare`` (built-in sample or an S3 dataset) and ``validate``.

A *dataset artifact* is one folder with the layout of the built-in sample::

    aux_hr/HR/*.png          clean HR sources for the auxiliary tasks
    pool/{HR,LR}/ + manifest.csv   the target camera's few-shot pool
    test/{HR,LR}/ + manifest.csv   the target camera's test pairs (never read before evaluation)
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from components.image import DRTL_IMAGE


@dsl.component(base_image=DRTL_IMAGE, install_kfp_package=False)
def prepare(params: str, source: str, sample: str, data: Output[Dataset]):
    """Build the built-in sample (``source="sample"``, ``sample`` = JSON kwargs of
    ``drtl.data.sample.make_sample``) or download a dataset folder (``source="s3://bucket/prefix"``,
    credentials and endpoint from the environment, see ``drtl.storage``)."""
    import json
    import tempfile
    from pathlib import Path

    import yaml

    from drtl.config import load_params
    from drtl.errors import ConfigError

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(json.loads(params)))
        p = load_params(Path(tmp) / "params.yaml")
    if source.startswith("s3://"):
        from drtl.storage import download_folder

        download_folder(source, data.path)
    elif source == "sample":
        from drtl.data.sample import make_sample

        make_sample(data.path, scale=int(p["target"]["scale"]), **json.loads(sample or "{}"))
    else:
        raise ConfigError(f"data source {source!r}: use 'sample' or an s3://bucket/prefix URI")
    data.metadata.update({"source": source, "scale": int(p["target"]["scale"])})


@dsl.component(base_image=DRTL_IMAGE, install_kfp_package=False)
def validate(params: str, data: Input[Dataset], metrics: Output[Metrics], summary: Output[Markdown]):
    """The great-expectations suite of ``drtl data validate`` on the pool (disjoint from the test
    set) and on the test set; fails the task, and so the pipeline, on any failed expectation."""
    import json
    import tempfile
    from pathlib import Path

    import yaml

    from drtl.config import load_params
    from drtl.data.validate import summarize, validate_folder
    from drtl.errors import ValidationError

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(json.loads(params)))
        p = load_params(Path(tmp) / "params.yaml")
    scale = int(p["target"]["scale"])
    root = Path(data.path)
    reports = {"pool": validate_folder(root / "pool", scale, root / "test"),
               "test": validate_folder(root / "test", scale)}
    lines = ["| folder | pairs | result |", "|---|---|---|"]
    for name, r in reports.items():
        lines.append(f"| {name} | {r['n_pairs']} | {'pass' if r['success'] else summarize(r)} |")
        metrics.log_metric(f"{name}_pairs", r["n_pairs"])
        metrics.log_metric(f"{name}_valid", int(r["success"]))
    Path(summary.path).write_text("\n".join(lines) + "\n")
    Path(metrics.path).write_text(json.dumps(reports, indent=1) + "\n")  # the artifact file: the full reports
    failed = [summarize(r) for r in reports.values() if not r["success"]]
    if failed:
        raise ValidationError("; ".join(failed))
