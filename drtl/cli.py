"""The `drtl` command: one subcommand per stage, plus data tools.

Errors from the library (``drtl.errors.DRTLError``) print one line, ``drtl: error: ...``, and exit
with status 2; conversion warnings print one line each, ``drtl: warning: ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from drtl.errors import DRTLError


def _add_data(sub):
    p = sub.add_parser("data", help="import, build, validate and describe paired datasets")
    dsub = p.add_subparsers(dest="data_cmd", required=True)

    imp = dsub.add_parser("import", help="convert a public dataset layout into a paired folder")
    imp.add_argument("kind", choices=["city100", "set5", "realsr", "drealsr"])
    imp.add_argument("src", help="source folder in the dataset's own layout")
    imp.add_argument("dst", help="output paired folder (replaced atomically on success)")
    imp.add_argument("--scale", type=int, required=True)
    imp.add_argument("--names", default=None, help="subset, e.g. 001-020 or 001,005,010-012")
    imp.set_defaults(func=_cmd_import)

    val = dsub.add_parser("validate", help="run the great-expectations suite over a paired folder")
    val.add_argument("root")
    val.add_argument("--scale", type=int, required=True)
    val.add_argument("--test", default=None, help="test folder that must share no image with ROOT")
    val.add_argument("--report", default=None, help="write the validation report as JSON here")
    val.set_defaults(func=_cmd_validate)

    smp = dsub.add_parser("sample", help="build the built-in sample dataset (no download)")
    smp.add_argument("out")
    smp.add_argument("--scale", type=int, default=2)
    smp.add_argument("--seed", type=int, default=0)
    smp.set_defaults(func=_cmd_sample)

    man = dsub.add_parser("manifest", help="(re)write ROOT/manifest.csv and print it")
    man.add_argument("root")
    man.add_argument("--scale", type=int, required=True)
    man.set_defaults(func=_cmd_manifest)


def _cmd_import(a):
    from drtl.data.importers import import_dataset, parse_names

    df = import_dataset(a.kind, a.src, a.dst, a.scale, parse_names(a.names))
    r = df.iloc[0]
    print(f"imported {len(df)} pairs into {a.dst} (LR {r.lr_width}x{r.lr_height} -> HR {r.hr_width}x{r.hr_height}, x{a.scale})")


def _cmd_validate(a):
    from drtl.data.validate import summarize, validate_folder
    from drtl.io import write_text

    report = validate_folder(a.root, a.scale, a.test)
    if a.report:
        write_text(a.report, json.dumps(report, indent=2) + "\n")
    if not report["success"]:
        from drtl.errors import ValidationError

        raise ValidationError(summarize(report))
    print(f"{a.root}: {report['n_pairs']} pairs pass validation")


def _cmd_sample(a):
    from drtl.data.sample import make_sample

    info = make_sample(a.out, scale=a.scale, seed=a.seed)
    print(f"sample dataset in {a.out}: {info['n_aux_hr']} auxiliary HR images, "
          f"{info['n_pool']} pool pairs, {info['n_test']} test pairs (x{a.scale})")


def _cmd_manifest(a):
    from drtl.data.folder import write_manifest

    df = write_manifest(a.root, a.scale)
    print(df.to_string(index=False))


def _cmd_evaluate(a):
    from drtl.stages.evaluate import evaluate

    p = _params(a)  # threads and tracking come from params; the rest is explicit
    ident = {"method": a.method, "shots": a.shots, "seed": a.seed}
    name = a.method if a.seed is None else (f"{a.method}_s{a.seed}" if a.shots is None else
                                            f"{a.method}_k{a.shots}_s{a.seed}")
    rep = _tracked(p, "evaluate", name, ident,
                   lambda: evaluate(a.method, a.data, a.scale, a.out, a.model, a.shots, a.seed, a.device, a.tile),
                   inputs=[(a.data, "test")])
    print(f"{a.method} on {a.data} (x{a.scale}, {rep['n_images']} images): "
          f"PSNR-Y {rep['psnr_y']:.3f} dB, SSIM-Y {rep['ssim_y']:.4f}")


def _params(a):
    from drtl.config import apply_threads, load_params

    p = load_params(a.params, a.set)
    apply_threads(p)
    return p


def _with_params(p):
    p.add_argument("--params", default="params.yaml" if Path("params.yaml").is_file() else None,
                   help="params file (default: ./params.yaml when present, else built-in defaults)")
    p.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param, e.g. -S finetune.iterations=50 (repeatable)")
    return p


def _tracked(p, stage: str, name: str, ident: dict, fn, artifacts=(), inputs=(), history=None, section=None):
    """Run ``fn`` inside an MLflow child run when ``tracking.enabled`` (a no-op otherwise).

    Logs the stage's params section and identity (method/shots/seed), the numeric results as
    metrics, the training curve from ``history`` (a history.json path), artifacts and dataset inputs.
    """
    from drtl.tracking import flatten, tracker_from_params

    tracker = tracker_from_params(p)
    logged = {**{k: v for k, v in ident.items() if v is not None}, **flatten(p.get(section) or {}, f"{section}.")} \
        if section else {k: v for k, v in ident.items() if v is not None}
    with tracker.run(stage, name, logged) as run:
        result = fn()
        if tracker.enabled:
            if isinstance(result, dict):
                run.log_metrics({k: v for k, v in flatten(result).items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool)})
            if history is not None and Path(history).is_file():
                run.log_history(json.loads(Path(history).read_text()))
            for path in artifacts:
                path = Path(path)
                if path.is_dir():
                    run.log_artifacts(path, path.name)
                elif path.is_file():
                    run.log_artifact(path)
            for root, ctx in inputs:
                run.log_input(str(root), ctx)
    return result


def _cmd_synthesize(a):
    from drtl.stages.synthesize import synthesize

    p = _params(a)
    x = p["aux"]
    m = _tracked(p, "synthesize", "synthesize", {}, section="aux", artifacts=[Path(a.out) / "tasks.yaml"],
                 fn=lambda: synthesize(x["hr"], a.out, int(p["target"]["scale"]), x["families"], x["tasks"],
                                       x["variants"], x["val_fraction"], x["max_hr_side"], x["seed"]))
    print(f"synthesized {m['n_tasks']} tasks x {m['n_images']} HR images into {a.out} ({m['n_val_images']} held out)")


def _cmd_relation(a):
    from drtl.stages.relation import relation

    p = _params(a)
    out = Path(a.out)
    m = _tracked(p, "relation", "relation", {}, section="relation",
                 artifacts=[out / "graphs", out / "weights.json", out / "drn_eval.json"],
                 inputs=[(p["target"]["pool"], "target_pool")],
                 fn=lambda: relation(a.synth, p["target"]["pool"], a.out, int(p["target"]["scale"]),
                                     p["experiment"]["shots"], p["experiment"]["seeds"], p["relation"], p["device"]))
    print(f"DRN accuracy train {m['drn_train_accuracy']:.3f} val {m.get('drn_val_accuracy', float('nan')):.3f}; "
          f"top task {m['top_task']}; graphs in {a.out}")


def _cmd_pretrain(a):
    from drtl.stages.train import pretrain_run

    p = _params(a)
    out = Path(a.out)
    _tracked(p, "pretrain", out.name, {"method": a.method, "shots": a.shots, "seed": a.seed}, section="pretrain",
             history=out / "history.json", artifacts=[out / "model.pt"],
             fn=lambda: pretrain_run(a.method, a.synth, a.relation, a.out, p["arch"], int(p["target"]["scale"]),
                                     p["pretrain"], a.seed, a.shots, p["device"]))
    print(f"pre-trained ({a.method}) -> {a.out}/model.pt")


def _cmd_metatrain(a):
    from drtl.stages.train import metatrain_run

    p = _params(a)
    out = Path(a.out)
    _tracked(p, "metatrain", out.name, {"method": a.method, "shots": a.shots, "seed": a.seed}, section="meta",
             history=out / "history.json", artifacts=[out / "model.pt"],
             fn=lambda: metatrain_run(a.method, a.synth, a.relation, a.out, p["arch"], int(p["target"]["scale"]),
                                      p["meta"], a.seed, a.shots, p["device"]))
    print(f"meta-trained ({a.method}) -> {a.out}/model.pt")


def _cmd_finetune(a):
    from drtl.stages.train import finetune_run

    p = _params(a)
    out, pool = Path(a.out), a.pool or p["target"]["pool"]
    _tracked(p, "finetune", out.name, {"method": a.method, "shots": a.shots, "seed": a.seed}, section="finetune",
             history=out / "history.json", artifacts=[out / "model.pt"], inputs=[(pool, "target_pool")],
             fn=lambda: finetune_run(a.method, pool, a.out, p["arch"], int(p["target"]["scale"]), p["finetune"],
                                     a.shots, a.seed, a.init, p["device"]))
    print(f"fine-tuned ({a.method}, K={a.shots}, seed {a.seed}) -> {a.out}/model.pt")


def _cmd_report(a):
    from drtl.stages.experiment import eval_paths
    from drtl.stages.report import report

    p = _params(a)
    shots = [int(k) for k in a.shots.split(",")] if a.shots else [int(k) for k in p["experiment"]["shots"]]
    evals = a.evals or eval_paths(p)  # default: exactly the runs params.yaml's experiment makes
    r = _tracked(p, "report", "report", {}, lambda: report(evals, a.out, shots), artifacts=[a.out])
    print(f"{r['n_rows']} rows -> {a.out}/results.csv")


def _cmd_experiment(a):
    from drtl.stages.experiment import run_experiment

    run_experiment(_params(a), echo=lambda line: print(line, flush=True))


def _train_parser(sub, name, methods, help_):
    p = _with_params(sub.add_parser(name, help=help_))
    p.add_argument("--method", required=True, choices=methods)
    p.add_argument("--shots", type=int, default=None, help="K (needed by the DRTL variants: weights depend on it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synth", default="outputs/synth")
    p.add_argument("--relation", default="outputs/relation")
    p.add_argument("--out", required=True)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drtl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_data(sub)

    sy = _with_params(sub.add_parser("synthesize", help="make the auxiliary tasks' LR/HR pairs"))
    sy.add_argument("--out", default="outputs/synth")
    sy.set_defaults(func=_cmd_synthesize)

    re_ = _with_params(sub.add_parser("relation", help="train the DRN, relation weights and knowledge graphs"))
    re_.add_argument("--synth", default="outputs/synth")
    re_.add_argument("--out", default="outputs/relation")
    re_.set_defaults(func=_cmd_relation)

    _train_parser(sub, "pretrain", ["uniform", "drtl"], "multi-task pre-training (uniform or DRTL-Pre)").set_defaults(
        func=_cmd_pretrain)
    _train_parser(sub, "metatrain", ["maml", "drtl"], "MAML or DRTL-Meta meta-training").set_defaults(func=_cmd_metatrain)

    ft = _with_params(sub.add_parser("finetune", help="few-shot fine-tuning on the K target pairs"))
    ft.add_argument("--method", required=True,
                    choices=["scratch", "pretrain", "maml", "drtl_pre", "drtl_meta", "upper_bound"])
    ft.add_argument("--shots", type=int, required=True)
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--init", default=None, help="model file to start from (none: fresh initialisation)")
    ft.add_argument("--pool", default=None, help="few-shot pool folder (default: target.pool)")
    ft.add_argument("--out", required=True)
    ft.set_defaults(func=_cmd_finetune)

    ev = _with_params(sub.add_parser("evaluate", help="PSNR/SSIM (Y, crop = scale) of a method on a paired folder"))
    ev.add_argument("--method", default="bicubic")
    ev.add_argument("--data", required=True, help="paired folder to evaluate on")
    ev.add_argument("--scale", type=int, required=True)
    ev.add_argument("--model", default=None, help="model file (methods other than bicubic)")
    ev.add_argument("--shots", type=int, default=None)
    ev.add_argument("--seed", type=int, default=None)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--tile", type=int, default=None, help="tile size for large images (default: whole image)")
    ev.add_argument("--out", default=None, help="JSON report path")
    ev.set_defaults(func=_cmd_evaluate)

    rp = _with_params(sub.add_parser("report", help="results.csv, aggregate table and figures from evaluation reports"))
    rp.add_argument("evals", nargs="*", help="eval.json files (default: every run of params' experiment)")
    rp.add_argument("--shots", default=None, help="K list (e.g. 1,5,10) for K-independent methods' rows "
                                                  "(default: experiment.shots)")
    rp.add_argument("--out", default="reports")
    rp.set_defaults(func=_cmd_report)

    xp = _with_params(sub.add_parser("experiment", help="the whole table in one process (resumable)"))
    xp.set_defaults(func=_cmd_experiment)

    from drtl.stages.adapt import add_adapt_parser

    add_adapt_parser(sub)

    try:
        from drtl.upscale import add_upscale_parser

        add_upscale_parser(sub)
    except ImportError:  # pragma: no cover - upscale is part of the package
        pass
    try:  # the Kubeflow glue lives outside the library (drtl/ never imports kfp); kfp loads lazily
        from pipelines.cli import add_kfp_parser
    except ImportError:  # pipelines/ not installed
        pass
    else:
        add_kfp_parser(sub)
    return parser


def _showwarning(message, category, filename, lineno, file=None, line=None):
    print(f"drtl: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _showwarning
    try:
        args.func(args)
    except DRTLError as exc:
        print(f"drtl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("drtl: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
