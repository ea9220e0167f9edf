"""``drtl-kfp``: compile the Kubeflow pipeline, run it locally, submit it to a cluster.

kfp is imported only inside the subcommands, so ``drtl-kfp --help`` is fast. The library CLI
(``drtl``) does not import this package.

- ``drtl-kfp compile [--params P] [-S k=v] [--image IMG|FILE] [--out pipeline.yaml] [--gpu/--no-gpu] [--k8s/--no-k8s]``
  (``--image``: a reference, e.g. ``localhost/drtl@sha256:<digest>``, or a file holding one: the
  ``outputs/image/drtl-cpu.image`` that ``make image`` writes)
- ``drtl-kfp run --local [--params P | tiny profile] [--data sample|DIR|s3://...] [--cells JSON] [--out DIR]``
  -> ``DIR/results.csv``
- ``drtl-kfp submit --host URL [--experiment NAME] [--run-name NAME] [--package pipeline.yaml] [--cells JSON]``
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from drtl.errors import ConfigError, DRTLError

DEFAULT_EXPERIMENT = "drtl"


class KFPRunError(DRTLError):
    """A pipeline run failed (locally) or could not be submitted."""


# ------------------------------------------------------------------------------------------ helpers
def _load(params_path: str | None, overrides: list[str], tiny_default: bool) -> dict:
    from drtl.config import load_params

    if params_path is None and tiny_default:
        from pipelines.profiles import tiny_params

        return tiny_params(overrides)
    return load_params(params_path, overrides)


def _sample_json(text: str | None, tiny: bool) -> str:
    if text is None:
        from pipelines.profiles import TINY_SAMPLE

        return json.dumps(TINY_SAMPLE if tiny else {})
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--sample {text!r} is not JSON ({exc.msg}); e.g. '{{\"hr_size\": 64}}'") from None
    if not isinstance(value, dict):
        raise ConfigError(f"--sample must be a JSON object of make_sample arguments, got {text!r}")
    return json.dumps(value)


def _cells_json(text: str | None) -> list[dict] | None:
    """``--cells '[{"shots": 1, "seed": 0}, ...]'`` -> the list (None: the compiled default)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--cells {text!r} is not JSON ({exc.msg}); e.g. '[{{\"shots\": 1, \"seed\": 0}}]'") from None
    if not isinstance(value, list) or not value or not all(
            isinstance(c, dict) and set(c) == {"shots", "seed"} and all(isinstance(v, int) for v in c.values())
            for c in value):
        raise ConfigError(f"--cells must be a non-empty JSON list of {{\"shots\": K, \"seed\": S}} objects, "
                          f"got {text!r}")
    return value


def _data_source(data: str) -> str:
    """A local dataset folder becomes an absolute path (tasks may run in another directory)."""
    if data == "sample" or data.startswith("s3://"):
        return data
    if not Path(data).is_dir():
        raise ConfigError(f"--data {data!r}: use 'sample', a dataset folder (aux_hr/, pool/, test/) "
                          "or s3://bucket/prefix")
    return str(Path(data).resolve())


def pipeline_arguments(data: str = "sample", sample: str = "{}", mlflow_tracking_uri: str = "",
                       cells: list[dict] | None = None) -> dict:
    """The run-time pipeline parameters (see pipelines.few_shot_realsr); ``cells`` None: the
    compiled default sweep."""
    args = {"data": data, "sample": sample, "mlflow_tracking_uri": mlflow_tracking_uri}
    if cells is not None:
        args["cells"] = cells
    return args


# ---------------------------------------------------------------------------------------- compile
def compile_yaml(out: str | Path, params: dict | None = None, gpu: bool = True, kubernetes: bool = True,
                 image: str | None = None) -> Path:
    from components import DEFAULT_IMAGE
    from pipelines.few_shot_realsr import compile_pipeline

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compile_pipeline(str(out), params, gpu=gpu, kubernetes=kubernetes, image=image or DEFAULT_IMAGE)
    return out


# ------------------------------------------------------------------------------------------- local
def run_local(params: dict, out: str | Path, data: str = "sample", sample: dict | str | None = None,
              cache: bool = True, gpu: bool = False, mlflow_tracking_uri: str = "",
              cells: list[dict] | None = None) -> dict:
    """Run the whole pipeline with ``kfp.local`` (SubprocessRunner, this interpreter, no venv).

    Task artifacts go to ``OUT/kfp/`` (the local cache, on by default, re-uses finished tasks of
    earlier runs with the same inputs); the report lands in ``OUT/reports/`` and ``OUT/results.csv``
    (columns method, shots, seed, psnr_y, ssim_y). ``cells``: the sweep (None: the params'
    shots x seeds). Kubernetes-only settings are left out of the local pipeline; ``gpu`` trains on
    ``cuda``.
    """
    from kfp import local

    from pipelines.few_shot_realsr import build_pipeline

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sample_json = sample if isinstance(sample, str) else json.dumps(sample or {})
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(out / "kfp"),
               raise_on_error=True, enable_caching=cache)
    pipeline = build_pipeline(params, gpu=gpu, kubernetes=False)
    t0 = time.time()
    try:
        with warnings.catch_warnings():
            # per-task warnings of the local runner that say nothing here: the project image has no
            # "python" in its name; display names are a UI setting
            warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
            warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
            task = pipeline(**pipeline_arguments(_data_source(data), sample_json, mlflow_tracking_uri, cells))
    except RuntimeError as exc:
        raise KFPRunError(f"local pipeline run failed: {str(exc).splitlines()[0]} (task logs above; "
                          f"artifacts under {out / 'kfp'})") from None
    results = Path(task.outputs["Output"].path)
    reports = out / "reports"
    if reports.exists():
        shutil.rmtree(reports)
    shutil.copytree(results, reports)
    shutil.copy2(results / "results.csv", out / "results.csv")
    return {"results_csv": str(out / "results.csv"), "reports": str(reports), "artifacts": str(results),
            "seconds": round(time.time() - t0, 1)}


# ------------------------------------------------------------------------------------------ submit
def submit(host: str, params: dict | None = None, package: str | Path | None = None,
           experiment: str = DEFAULT_EXPERIMENT, run_name: str | None = None, namespace: str | None = None,
           arguments: dict | None = None, gpu: bool = True, enable_caching: bool | None = None,
           image: str | None = None) -> dict:
    """Create a run on the Kubeflow Pipelines API at ``host`` in the named experiment.

    ``package``: an already compiled pipeline YAML; otherwise ``params`` is compiled first.
    """
    import kfp

    if not host.startswith(("http://", "https://")):
        raise ConfigError(f"--host {host!r} must be the KFP API URL, e.g. http://localhost:8080")
    run_name = run_name or f"{experiment}-{time.strftime('%Y%m%d-%H%M%S')}"
    with tempfile.TemporaryDirectory() as tmp:
        if package is None:
            package = compile_yaml(Path(tmp) / "pipeline.yaml", params, gpu=gpu, image=image)
        elif not Path(package).is_file():
            raise ConfigError(f"{package}: pipeline package not found; run `drtl-kfp compile` first")
        try:
            client = kfp.Client(host=host, **({"namespace": namespace} if namespace else {}))
            result = client.create_run_from_pipeline_package(
                str(package), arguments=arguments or pipeline_arguments(), run_name=run_name,
                experiment_name=experiment, namespace=namespace, enable_caching=enable_caching)
        except DRTLError:
            raise
        except Exception as exc:  # connection refused, 4xx/5xx from the API server, ...
            raise KFPRunError(f"submitting to {host} failed: {type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
    run_id = getattr(result, "run_id", None)
    return {"run_id": run_id, "run_name": run_name, "experiment": experiment,
            "url": f"{host.rstrip('/')}/#/runs/details/{run_id}" if run_id else None}


# -------------------------------------------------------------------------------------------- argparse
def _params_args(p):
    p.add_argument("--params", default=None, help="params file (params.yaml); see each subcommand for the default")
    p.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param, e.g. -S finetune.iterations=50 (repeatable)")


def _run_args(p):
    p.add_argument("--data", default="sample",
                   help="'sample' (built-in, made in the pipeline), a dataset folder or s3://bucket/prefix")
    p.add_argument("--cells", default=None, metavar="JSON",
                   help='the sweep, e.g. \'[{"shots": 1, "seed": 0}]\' (default: the params\' shots x seeds)')
    p.add_argument("--sample", default=None, metavar="JSON", help="make_sample arguments, e.g. '{\"hr_size\": 64}'")
    p.add_argument("--mlflow-uri", default=None,
                   help="MLflow tracking URI passed to every task ('' = no tracking; default: the params' "
                        "tracking.uri when tracking.enabled; for submit only an http(s) server)")


def _mlflow_uri(a, params: dict | None, local: bool) -> str:
    """Tracking on by default, like the other orchestrators: the params' store when enabled. A local
    SQLite path is made absolute (tasks run in other folders); a cluster can only reach a server."""
    if a.mlflow_uri is not None:
        return a.mlflow_uri
    t = (params or {}).get("tracking") or {}
    if not t.get("enabled"):
        return ""
    uri = str(t.get("uri", ""))
    if local:
        from drtl.tracking import resolve_uri

        return resolve_uri(uri)
    return uri if uri.startswith(("http://", "https://")) else ""


# NAME[:TAG][@sha256:HEX], NAME = [HOST[:PORT]/]path, lower case (the OCI distribution grammar, shortened;
# the digest's length is left to the registry)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REF = re.compile(rf"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
                        r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]+)?")


def resolve_image(value: str) -> str:
    """The image reference of ``--image``: ``value`` itself, or the first line of the file ``value``
    names (``make image`` writes ``outputs/image/drtl-cpu.image``: ``localhost/drtl@sha256:...``).
    A value that is not a reference is a one-line ConfigError."""
    ref, where = value.strip(), "--image"
    if Path(value).is_file():
        lines = Path(value).read_text().split()
        ref, where = (lines[0] if lines else ""), f"--image {value}"
    if re.fullmatch(r"sha256:[0-9a-f]+", ref):
        raise ConfigError(f"{where}: {ref[:19]}... is a digest without a name; give NAME@{ref[:19]}..., "
                          "e.g. localhost/drtl@sha256:<digest>")
    if not _IMAGE_REF.fullmatch(ref):
        raise ConfigError(f"{where}: {ref!r} is not an image reference; expected NAME[:TAG][@sha256:DIGEST], "
                          "e.g. localhost/drtl@sha256:<digest>")
    return ref


def _default_params_file() -> str | None:
    return "params.yaml" if Path("params.yaml").is_file() else None


def _cmd_compile(a):
    params = _load(a.params or _default_params_file(), a.set, tiny_default=False)
    image = resolve_image(a.image)
    out = compile_yaml(a.out, params, gpu=a.gpu, kubernetes=a.k8s, image=image)
    ex = params["experiment"]
    print(f"compiled {out} (methods {len(ex['methods'])}; default cells: shots {ex['shots']} x seeds {ex['seeds']}; "
          f"image {image}; GPU {'on' if a.gpu else 'off'}, Kubernetes settings {'on' if a.k8s else 'off'})")


def _cmd_run(a):
    if not a.local:
        raise ConfigError("only `drtl-kfp run --local` runs here; use `drtl-kfp submit --host URL` for a cluster")
    tiny = a.params is None
    params = _load(a.params, a.set, tiny_default=True)
    r = run_local(params, a.out, data=a.data, sample=_sample_json(a.sample, tiny and a.data == "sample"),
                  cache=a.cache, gpu=a.gpu, mlflow_tracking_uri=_mlflow_uri(a, params, True),
                  cells=_cells_json(a.cells))
    print(f"kfp local run{' (tiny profile)' if tiny else ''} finished in {r['seconds']:.1f}s: {r['results_csv']}")


def _cmd_submit(a):
    params = None if a.package else _load(a.params or _default_params_file(), a.set, tiny_default=False)
    r = submit(a.host, params, package=a.package, experiment=a.experiment, run_name=a.run_name,
               namespace=a.namespace, gpu=a.gpu, enable_caching=a.cache, image=resolve_image(a.image),
               arguments=pipeline_arguments(a.data, _sample_json(a.sample, False), _mlflow_uri(a, params, False),
                                            _cells_json(a.cells)))
    print(f"submitted run {r['run_name']} ({r['run_id']}) to experiment {r['experiment']}: {r['url']}")


def _image_arg(p):
    from components.image import DEFAULT_IMAGE

    p.add_argument("--image", default=DEFAULT_IMAGE,
                   help=f"container image of every task: a reference (NAME[:TAG][@sha256:DIGEST]) or a file holding "
                        f"one, e.g. outputs/image/drtl-cpu.image from `make image` (default: {DEFAULT_IMAGE})")


def build_parser() -> argparse.ArgumentParser:
    """The ``drtl-kfp`` argument parser: ``compile``, ``run --local``, ``submit`` (each sets ``func``)."""
    p = argparse.ArgumentParser(prog="drtl-kfp", description="Kubeflow Pipelines: compile, run locally, submit")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("compile", help="write the pipeline's IR YAML (params, sweep and cluster settings baked in)")
    _params_args(c)
    c.add_argument("--out", default="pipeline.yaml")
    _image_arg(c)
    c.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=True,
                   help="GPU requests, node selector and tolerations on the training tasks (default: on)")
    c.add_argument("--k8s", action=argparse.BooleanOptionalAction, default=True,
                   help="Kubernetes settings: resources, retries, S3 Secret (default: on)")
    c.set_defaults(func=_cmd_compile)

    r = sub.add_parser("run", help="run the pipeline with kfp.local (tiny profile unless --params)")
    r.add_argument("--local", action="store_true", help="run on this machine (SubprocessRunner)")
    _params_args(r)
    _run_args(r)
    r.add_argument("--out", default="outputs/kfp_local", help="artifacts, reports/ and results.csv go here")
    r.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                   help="re-use finished tasks of earlier runs under --out (default: on)")
    r.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=False, help="train on cuda")
    r.set_defaults(func=_cmd_run)

    s = sub.add_parser("submit", help="create a run on a Kubeflow Pipelines cluster")
    s.add_argument("--host", required=True, help="KFP API URL, e.g. http://localhost:8080 (port-forwarded UI)")
    s.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="experiment name (created when absent)")
    s.add_argument("--run-name", default=None)
    s.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user clusters)")
    s.add_argument("--package", default=None, help="compiled pipeline YAML (default: compile --params now)")
    _params_args(s)
    _run_args(s)
    s.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=True)
    _image_arg(s)
    s.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                   help="override the tasks' caching for this run (default: as compiled, on)")
    s.set_defaults(func=_cmd_submit)
    return p


def main(argv: list[str] | None = None) -> int:
    """The ``drtl-kfp`` console script."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except DRTLError as exc:
        print(f"drtl-kfp: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
