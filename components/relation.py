"""The ``relation`` component: DRN, memory bank, relation weights and knowledge graphs
(``drtl.stages.relation``)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.image import DRTL_IMAGE


@dsl.component(base_image=DRTL_IMAGE, install_kfp_package=False)
def relation(params: str, shots: str, seeds: str, data: Input[Dataset], synth: Input[Dataset],
             relation: Output[Model], metrics: Output[Metrics], graphs: Output[HTML], device: str = "",
             tracking_uri: str = ""):
    """Train the DRN on the auxiliary tasks, embed the K target shots of every (shots, seed) of the
    sweep (``shots``/``seeds``: JSON lists) and write weights + graphs into the ``relation`` folder."""
    import base64
    import json
    import tempfile
    from pathlib import Path

    import yaml

    from drtl.config import load_params
    from drtl.stages.relation import relation as relation_stage, run_key

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(json.loads(params)))
        p = load_params(Path(tmp) / "params.yaml")
    if tracking_uri:  # TODO(tracking): reaches params.tracking only, no MLflow run yet (docs/kubeflow.md)
        p["tracking"].update(uri=tracking_uri, enabled=True)
    if int(p.get("threads") or 0) > 0:  # torch intra-op threads (on a cluster: the task's CPU limit)
        import torch

        torch.set_num_threads(int(p["threads"]))
    ks, ss = [int(k) for k in json.loads(shots)], [int(s) for s in json.loads(seeds)]
    m = relation_stage(synth.path, str(Path(data.path) / "pool"), relation.path, int(p["target"]["scale"]), ks, ss,
                       p["relation"], device or p["device"])
    for k in ("drn_train_accuracy", "drn_val_accuracy", "drn_val_image_accuracy", "n_tasks"):
        if k in m:
            metrics.log_metric(k, m[k])
    Path(metrics.path).write_text(json.dumps(m, indent=1) + "\n")
    parts = ["<h3>Relation weights (DRTL)</h3>"]
    for k in ks:
        for s in ss:
            key = run_key(k, s)
            png = Path(relation.path) / "graphs" / key / "weights.png"
            img = base64.b64encode(png.read_bytes()).decode()
            parts.append(f"<h4>K={k}, seed {s}: top tasks {', '.join(m['top_tasks'][key])}</h4>"
                         f'<img src="data:image/png;base64,{img}"/>')
    Path(graphs.path).write_text("<html><body>" + "\n".join(parts) + "</body></html>\n")
