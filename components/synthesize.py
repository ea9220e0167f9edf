"""The ``synthesize`` component: auxiliary tasks' LR/HR pairs (``drtl.stages.synthesize``)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components.image import DRTL_IMAGE


@dsl.component(base_image=DRTL_IMAGE, install_kfp_package=False)
def synthesize(params: str, data: Input[Dataset], synth: Output[Dataset], metrics: Output[Metrics]):
    """Every task of the bank (``params.aux``) applied to ``data/aux_hr``; ``synth`` is the stage's
    output folder (``hr/``, ``lr/<task>/``, ``tasks.yaml``, ``synth.json``)."""
    import json
    import tempfile
    from pathlib import Path

    import yaml

    from drtl.config import load_params
    from drtl.stages.synthesize import synthesize as synthesize_stage

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(json.loads(params)))
        p = load_params(Path(tmp) / "params.yaml")
    a = p["aux"]
    m = synthesize_stage([str(Path(data.path) / "aux_hr")], synth.path, int(p["target"]["scale"]), a["families"],
                         a["tasks"], a["variants"], a["val_fraction"], a["max_hr_side"], a["seed"])
    for k, v in m.items():
        metrics.log_metric(k, v)
    Path(metrics.path).write_text(json.dumps(m, indent=1) + "\n")
