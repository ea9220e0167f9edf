"""Stage ``prepare``: a dataset folder from the built-in sample, a local folder or an S3 prefix.

A *dataset folder* has the layout of the built-in sample: ``aux_hr/HR/*.png`` (clean HR sources of
the auxiliary tasks), ``pool/`` and ``test/`` (paired folders of the target camera).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from drtl.errors import ConfigError


def run(params: dict, inputs: dict, out: Path, on_log=None) -> dict:
    """Stage contract: make ``out`` a dataset folder from ``inputs['source']``."""
    from drtl.data.folder import staged_folder
    from drtl.io import write_text

    source = str(inputs.get("source") or "sample")
    scale = int(params["target"]["scale"])
    out = Path(out)
    if source.startswith("s3://"):
        from drtl.storage import download_folder

        download_folder(source, out)
    elif source == "sample":
        from drtl.data.sample import make_sample

        make_sample(out, scale=scale, **json.loads(inputs.get("sample") or "{}"))
    elif Path(source).is_dir():
        missing = [d for d in ("aux_hr", "pool", "test") if not (Path(source) / d).is_dir()]
        if missing:
            raise ConfigError(f"data source {source}: not a dataset folder (no {', '.join(missing)}/)")
        with staged_folder(out) as tmp:
            for d in ("aux_hr", "pool", "test"):
                shutil.copytree(Path(source) / d, tmp / d)
    else:
        raise ConfigError(f"data source {source!r}: use 'sample', a dataset folder or an s3://bucket/prefix URI")
    write_text(out / "manifest.json", json.dumps({"source": source, "scale": scale}) + "\n")
    return {}
