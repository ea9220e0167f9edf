"""The `drtl` command: one subcommand per stage, plus data tools.

Errors from the library (``drtl.errors.DRTLError``) print one line, ``drtl: error: ...``, and exit
with status 2; conversion warnings print one line each, ``drtl: warning: ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

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

    rep = evaluate(a.method, a.data, a.scale, a.out)
    print(f"{a.method} on {a.data} (x{a.scale}, {rep['n_images']} images): "
          f"PSNR-Y {rep['psnr_y']:.3f} dB, SSIM-Y {rep['ssim_y']:.4f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drtl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_data(sub)
    ev = sub.add_parser("evaluate", help="PSNR/SSIM (Y, crop = scale) of a method on a paired folder")
    ev.add_argument("--method", default="bicubic")
    ev.add_argument("--data", required=True, help="paired folder to evaluate on")
    ev.add_argument("--scale", type=int, required=True)
    ev.add_argument("--out", default=None, help="JSON report path")
    ev.set_defaults(func=_cmd_evaluate)
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
