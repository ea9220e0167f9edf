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

# `drtl data import` kinds: drtl.data.importers.IMPORTERS plus "hr" (tests/test_startup.py checks they agree;
# the parser imports nothing heavy, so the list is not read from that module)
IMPORT_KINDS = ("city100", "set5", "realsr", "drealsr", "hr")


def _add_data(sub):
    p = sub.add_parser("data", help="import, build, validate and describe paired datasets")
    dsub = p.add_subparsers(dest="data_cmd", required=True)

    imp = dsub.add_parser("import", help="convert a public dataset layout into a paired folder")
    imp.add_argument("kind", choices=IMPORT_KINDS,
                     help="a paired dataset's layout, or hr: a folder of clean HR images for aux.hr (no LR)")
    imp.add_argument("src", help="source folder in the dataset's own layout")
    imp.add_argument("dst", help="output folder (replaced atomically on success)")
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

    sbs = dsub.add_parser("subset", help="copy some pairs of a paired folder into a new one (e.g. a validation split)")
    sbs.add_argument("src")
    sbs.add_argument("dst", help="output paired folder (replaced atomically on success)")
    g = sbs.add_mutually_exclusive_group(required=True)
    g.add_argument("--names", help="pairs by name: 001-005 or a,b,c")
    g.add_argument("--slice", dest="span", help="START:STOP over the sorted names, e.g. :6 or 6:")
    sbs.set_defaults(func=_cmd_subset)

    tgt = dsub.add_parser("target", help="a paired folder of one bank task or target camera applied to HR images (a control's target)")
    tgt.add_argument("task", help="a task of the bank, e.g. gauss_noise30, or a target camera: camera_nonlinear")
    tgt.add_argument("out", help="output paired folder (replaced atomically on success)")
    tgt.add_argument("--hr", nargs="+", required=True, help="folders with HR/*.png (images the bank never saw)")
    tgt.add_argument("--scale", type=int, default=2)
    tgt.add_argument("--seed", type=int, default=0)
    tgt.set_defaults(func=_cmd_target)

    man = dsub.add_parser("manifest", help="(re)write ROOT/manifest.csv and print it")
    man.add_argument("root")
    man.add_argument("--scale", type=int, required=True)
    man.set_defaults(func=_cmd_manifest)


def _cmd_import(a):
    from drtl.data.importers import import_dataset, import_hr, parse_names

    if a.kind == "hr":
        n = import_hr(a.src, a.dst, a.scale, parse_names(a.names))
        print(f"imported {n} HR images into {a.dst}/HR (mod-cropped to x{a.scale}; an aux.hr source)")
        return
    df = import_dataset(a.kind, a.src, a.dst, a.scale, parse_names(a.names))
    r = df.iloc[0]
    print(f"imported {len(df)} pairs into {a.dst} (LR {r.lr_width}x{r.lr_height} -> HR {r.hr_width}x{r.hr_height}, x{a.scale})")


def _cmd_subset(a):
    from drtl.data.folder import subset_folder
    from drtl.data.importers import parse_names
    from drtl.errors import ConfigError

    span = None
    if a.span is not None:
        try:
            start, stop = (int(v) if v.strip() else None for v in a.span.split(":"))
        except ValueError:
            raise ConfigError(f"--slice {a.span!r}: expected START:STOP with integers, e.g. :6 or 6:") from None
        span = (start, stop)
    df = subset_folder(a.src, a.dst, parse_names(a.names) if a.names else None, span)
    print(f"{a.dst}: {len(df)} pairs ({', '.join(df['name'][:3])}{' ...' if len(df) > 3 else ''})")


def _cmd_target(a):
    from drtl.config import check_scale
    from drtl.stages.synthesize import synthesize_target

    n = synthesize_target(a.task, a.hr, a.out, check_scale(a.scale), a.seed)
    print(f"{a.out}: {n} pairs of task {a.task} (x{a.scale})")


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


def _params(a):
    from drtl.config import load_params

    return load_params(a.params, a.set)


def _with_params(p):
    p.add_argument("--params", default="params.yaml" if Path("params.yaml").is_file() else None,
                   help="params file (default: ./params.yaml when present, else built-in defaults)")
    p.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param, e.g. -S finetune.iterations=50 (repeatable)")
    return p


# ------------------------------------------------------------------ one subcommand per stage, from the registry
_DEFAULT_OUT = {"prepare": None, "validate": "validate", "synthesize": "synthesize", "relation": "relation",
                "report": "report"}


def _add_stage(sub, spec):
    p = _with_params(sub.add_parser(spec.name, help=spec.help, description=spec.help))
    for a in spec.args:
        if a.kind == "paths":
            p.add_argument(a.name, nargs="*", help=a.help)
            continue
        p.add_argument(f"--{a.name}", type=int if a.kind == "int" else str, default=a.default, required=a.required,
                       choices=list(a.choices) if a.choices else None, help=a.help or None)
    optional_out = spec.name in _DEFAULT_OUT or spec.name == "evaluate"
    p.add_argument("--out", required=not optional_out,
                   help="output folder (default: the plan's)" if spec.name in _DEFAULT_OUT else
                   "run folder, or a .json report path" if spec.name == "evaluate" else "run folder")
    p.set_defaults(func=_cmd_stage, stage=spec.name)
    return p


def _cmd_stage(a):
    from drtl.records import IDENTITY_KEYS
    from drtl.runner import execute
    from drtl.stages import get_stage

    spec = get_stage(a.stage)
    p = _params(a)
    inputs = {x.name: getattr(a, x.name) for x in spec.args}
    out = a.out
    if out is None and _DEFAULT_OUT.get(a.stage):
        from drtl.plan import roots

        out = roots(p, reports="reports").folder(_DEFAULT_OUT[a.stage])
    if out is None and a.stage != "evaluate":
        from drtl.errors import ConfigError

        raise ConfigError(f"drtl {a.stage}: --out is required")
    m = execute(a.stage, p, inputs, out)  # evaluate without --out: the numbers only, nothing written
    shown = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    ident = " ".join(f"{k}={inputs[k]}" for k in IDENTITY_KEYS if inputs.get(k) is not None)
    print(f"{a.stage}{' ' + ident if ident else ''}: {shown or 'done'}{' -> ' + str(out) if out else ''}")


def _cmd_experiment(a):
    from drtl.orchestrate.experiment import run_experiment

    run_experiment(_params(a), echo=lambda line: print(line, flush=True))


def _cmd_headroom(a):
    from drtl.orchestrate.headroom import headroom

    headroom(_params(a), echo=lambda line: print(line, flush=True), groups=a.groups)


def _cmd_track(a):
    from drtl.orchestrate.experiment import track
    from drtl.plan import plan

    p = _params(a)
    if not p["tracking"]["enabled"]:
        print("tracking.enabled is false: nothing logged")
        return
    track(p, plan(p, reports=a.reports), {"orchestrator": a.orchestrator}, echo=print)


def _cmd_dvc(a):
    from drtl.orchestrate import dvcgen

    p = _params(a)
    if a.dvc_cmd == "generate":
        print(f"wrote {dvcgen.write(p, a.file)}")
        removed = dvcgen.prune_lock(p, a.file)
        if removed:
            print(f"removed {len(removed)} stale stage(s) from {Path(a.file).with_name('dvc.lock')}: "
                  f"{', '.join(removed[:5])}{' ...' if len(removed) > 5 else ''}")
    else:
        dvcgen.check(p, a.file)
        print(f"{a.file} matches the plan")


def _cmd_plan(a):
    from drtl.plan import plan

    for r in plan(_params(a)):
        print(f"{r.id:40s} -> {r.out}" + (f"   after {', '.join(r.deps[:3])}{' ...' if len(r.deps) > 3 else ''}"
                                          if r.deps else ""))


def _cmd_params(a):
    """Every key of the resolved profile (DEFAULTS <- --params <- -S), as the YAML file DVC reads."""
    import yaml

    text = yaml.safe_dump(_params(a), sort_keys=False, width=110)
    if a.out is None:
        print(text, end="")
        return
    from drtl.io import write_text

    write_text(a.out, text)
    print(f"wrote {a.out}")


# ------------------------------------------------------------------ adapt and upscale: argparse only here
# Building the parser imports nothing heavy (``drtl --help`` stays fast): the command functions
# below call drtl.orchestrate.adapt and drtl.upscale (torch, pandas), imported when the command runs.
# The defaults below are those modules' constants (tests/test_startup.py checks they agree).
ADAPT_LAYOUTS = ("auto", "paired", "city100", "realsr", "drealsr")  # drtl.orchestrate.adapt_data.LAYOUTS
UPSCALE_TILE, UPSCALE_OVERLAP = 256, 16                              # drtl.upscale.DEFAULT_TILE / DEFAULT_OVERLAP
UPSCALE_SUFFIX, UPSCALE_QUALITY = "_x{scale}", 95                    # drtl.upscale.DEFAULT_SUFFIX / DEFAULT_QUALITY
UPSCALE_EXTS = ("png", "jpg", "webp", "tif")                         # output formats (drtl.photo.FORMATS)


def _cmd_adapt(a):
    from drtl.config import apply_threads
    from drtl.data.importers import parse_names
    from drtl.orchestrate.adapt import adapt, adapt_params

    params = adapt_params(a.params, a.set)
    apply_threads(params)
    s = adapt(a.pairs, a.scale, a.shots, a.out, params, seed=a.seed, aux_cache=a.aux_cache,
              echo=lambda line: print(line, flush=True), layout=a.layout, names=parse_names(a.names), bank=a.bank)
    if s["eval"]:
        e = s["eval"]
        print(f"adapted x{s['scale']} model for K={s['shots']} -> {s['model']}: PSNR-Y {e['model']['psnr_y']:.3f} dB "
              f"vs bicubic {e['bicubic']['psnr_y']:.3f} dB on {e['n_pairs']} remaining pairs", flush=True)
    else:
        print(f"adapted x{s['scale']} model for K={s['shots']} -> {s['model']} (no pair left to evaluate)", flush=True)


def _cmd_bank(a):
    from drtl.config import apply_threads
    from drtl.orchestrate.adapt import adapt_params, build_bank

    params = adapt_params(a.params, a.set)
    apply_threads(params)
    build_bank(a.out, params, a.scale, seed=a.seed, aux_cache=a.aux_cache, echo=lambda line: print(line, flush=True))


def _cmd_upscale(a):
    from drtl.upscale import _cmd_upscale as run

    run(a)


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def _pos_int(text: str) -> int:
    v = _nonneg_int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def _adapt_profile_args(p: argparse.ArgumentParser, seed_help: str) -> None:
    """--params, -S, --seed and --aux-cache: the options of the commands run on the adapt profile."""
    p.add_argument("--params", default=None,
                   help="params file merged over the built-in adapt profile (default: the adapt profile)")
    p.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param, e.g. -S finetune.iterations=500 (repeatable)")
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("--aux-cache", default=None,
                   help="aux cache root (default $DRTL_CACHE_DIR/aux, $XDG_CACHE_HOME/drtl/aux or ~/.cache/drtl/aux)")


def add_adapt_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``drtl adapt`` on an argparse subparsers object (``drtl.orchestrate.adapt.add_adapt_parser``)."""
    p = subparsers.add_parser(
        "adapt", help="adapt an SR model to your camera from K of its LR/HR pairs (DRTL-Pre, one command)",
        description="Import, validate and split your camera's pairs, relate them to the (cached) auxiliary "
                    "distortions, pre-train with relation weights, fine-tune on K shots, evaluate on the rest.")
    p.add_argument("--pairs", required=True, help="your pairs: a paired folder (HR/ + LR/) or a raw layout")
    p.add_argument("--scale", type=int, required=True, help="2, 3 or 4")
    p.add_argument("--shots", type=int, required=True, help="K: pairs used for training; the rest evaluate")
    p.add_argument("--out", required=True, help="output folder (model.pt, summary.md, relation/, data/ ...)")
    _adapt_profile_args(p, seed_help="which K pairs are the shots, and training seeds")
    p.add_argument("--layout", default="auto", choices=list(ADAPT_LAYOUTS),
                   help="layout of --pairs (auto: HR/+LR/ or City100 NNNH/NNNL.PNG)")
    p.add_argument("--names", default=None, help="use only these pairs, e.g. 001-020 or 001,005,010-012")
    p.add_argument("--bank", default=None, metavar="DIR",
                   help="a folder from `drtl adapt-bank` (tasks, bank, uniform model) instead of the aux cache")
    p.set_defaults(func=_cmd_adapt)
    return p


def add_bank_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``drtl adapt-bank --out DIR --scale S``: the camera-independent half of ``drtl adapt``."""
    p = subparsers.add_parser(
        "adapt-bank", help="build the camera-free half of drtl adapt (tasks, bank, uniform model) into a folder",
        description="Synthesize the auxiliary tasks, train the DRN and the uniform pre-trained model with the "
                    "adapt profile, into DIR (version it with `dvc add DIR`); `drtl adapt --bank DIR` reuses it.")
    p.add_argument("--out", required=True, help="the bank folder")
    p.add_argument("--scale", type=int, default=2, help="2, 3 or 4 (default 2)")
    _adapt_profile_args(p, seed_help="seed of the uniform pre-training")
    p.set_defaults(func=_cmd_bank)
    return p


def _quality(text: str) -> int:
    v = _pos_int(text)
    if v > 100:
        raise argparse.ArgumentTypeError(f"expected 1..100, got {v}")
    return v


def add_upscale_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``drtl upscale INPUT... --model M --out DIR [--recursive] [--suffix S] [--ext E]
    [--quality Q] [--bits 8|16] [--tile 256] [--overlap 16] [--device cpu|cuda|auto] [--scale S]
    [--amp/--no-amp] [--threads N]`` on an argparse subparsers object (the command is
    ``drtl.upscale._cmd_upscale``)."""
    p = subparsers.add_parser(
        "upscale",
        help="super-resolve photos (files, folders, globs) with a trained drtl model file",
        description="Super-resolve photos with a drtl model file, read as a viewer shows them (colour profile, "
                    "orientation, 16 bits, transparency); writes DIR/<stem>_x<scale>.<input's format>. "
                    "A rerun skips the files already done. docs/upscale.md has the details.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (their images) or glob patterns")
    p.add_argument("--model", required=True, help="drtl model file (written by training / save_model)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="also the images in the folders' sub-folders, written into the same sub-folders of --out")
    p.add_argument("--suffix", default=UPSCALE_SUFFIX,
                   help=f"added to each output's name; {{scale}} is the model's scale (default {UPSCALE_SUFFIX})")
    p.add_argument("--ext", choices=list(UPSCALE_EXTS), default=None,
                   help="output format (default: the input's own)")
    p.add_argument("--quality", type=_quality, default=UPSCALE_QUALITY,
                   help=f"JPEG / WebP quality 1-100 (default {UPSCALE_QUALITY})")
    p.add_argument("--bits", type=int, choices=[8, 16], default=8,
                   help="16: 16-bit PNG / TIFF output for 16-bit inputs (default 8)")
    p.add_argument("--tile", type=_nonneg_int, default=UPSCALE_TILE,
                   help=f"tile side in LR px, 0 = whole image (default {UPSCALE_TILE})")
    p.add_argument("--overlap", type=_nonneg_int, default=UPSCALE_OVERLAP,
                   help=f"context px around each tile (default {UPSCALE_OVERLAP})")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="default cpu; auto = cuda when available")
    p.add_argument("--scale", type=int, default=None, help="expected scale; must match the model's")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: on for CUDA, off for CPU)")
    p.add_argument("--threads", type=_pos_int, default=None, metavar="N",
                   help="CPU threads for inference (default: every core this process may run on)")
    p.set_defaults(func=_cmd_upscale)
    return p


def build_parser() -> argparse.ArgumentParser:
    from drtl.stages import STAGES

    parser = argparse.ArgumentParser(prog="drtl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_data(sub)
    for spec in STAGES.values():
        _add_stage(sub, spec)

    xp = _with_params(sub.add_parser("experiment", help="the whole plan in one process (resumable, tracked)"))
    xp.set_defaults(func=_cmd_experiment)
    hr = _with_params(sub.add_parser("headroom", help="pre-train per task family, fine-tune, rank (on a validation split)"))
    hr.add_argument("--groups", nargs="+", metavar="GROUP",
                    help="only these pre-trainings: 'uniform' and/or family names (default: uniform + every family)")
    hr.set_defaults(func=_cmd_headroom)
    pl = _with_params(sub.add_parser("plan", help="list the runs of the plan for these params"))
    pl.set_defaults(func=_cmd_plan)
    pa = _with_params(sub.add_parser("params", help="write a profile in full (every key, as DVC's params.yaml needs)",
                                     description="Resolve a profile (drtl.config.DEFAULTS <- --params <- -S) and "
                                                 "write every key: e.g. `drtl params --params params.gpu.yaml --out "
                                                 "params.yaml` before `dvc exp run`."))
    pa.add_argument("--out", default=None, help="file to write (default: standard output)")
    pa.set_defaults(func=_cmd_params)
    tr = _with_params(sub.add_parser("track", help="log the plan's run records to MLflow (one parent run)"))
    tr.add_argument("--reports", default="reports", help="the report's folder (dvc.yaml: reports)")
    tr.add_argument("--orchestrator", default="dvc repro")
    tr.set_defaults(func=_cmd_track)
    dv = sub.add_parser("dvc", help="dvc.yaml from the plan: generate it, or check the committed one")
    dv.add_argument("dvc_cmd", choices=["generate", "check"])
    dv.add_argument("--file", default="dvc.yaml")
    _with_params(dv).set_defaults(func=_cmd_dvc)

    add_adapt_parser(sub)
    add_bank_parser(sub)
    add_upscale_parser(sub)
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
