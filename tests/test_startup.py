"""Cheap start-up: what a `drtl` process imports, asserted on behaviour, not time.

- building the parser (``drtl --help``) imports no heavy library;
- ``drtl evaluate --method bicubic`` never imports MLflow, great-expectations or matplotlib, and
  with ``threads: 0`` not torch either (``threads > 0`` imports torch to set its thread count);
- the parser's copies of the adapt / upscale defaults agree with the modules that own them;
- the lazy package re-exports keep every public name importable, and provenance's single git call
  agrees with the two it replaces.

Timings: benchmarks/bench_startup.py, docs/benchmarks.md ("Stage start-up").
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NEVER_AT_START = ("torch", "pandas", "mlflow", "great_expectations", "matplotlib", "scipy", "skimage")
NEVER_IN_EVALUATE = ("mlflow", "great_expectations", "matplotlib", "skimage", "networkx", "boto3", "pandas")
NEVER_IN_FINETUNE = ("pandas", "mlflow", "great_expectations", "matplotlib", "skimage", "networkx", "boto3")


def _modules_after(code: str, cwd: Path) -> set[str]:
    """Top-level packages in sys.modules after running ``code`` in a fresh interpreter."""
    probe = code + "\nimport sys, json\nprint('MODULES=' + json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    r = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("MODULES=")][-1]
    return set(json.loads(line.removeprefix("MODULES=")))


def test_building_the_parser_imports_nothing_heavy(tmp_path):
    mods = _modules_after("import drtl.cli\np = drtl.cli.build_parser()\n"
                          "p.parse_args(['upscale', 'x.png', '--model', 'm.pt', '--out', 'o'])\n"
                          "p.parse_args(['adapt', '--pairs', 'p', '--scale', '2', '--shots', '1', '--out', 'o'])",
                          tmp_path)
    assert not mods & set(NEVER_AT_START), sorted(mods & set(NEVER_AT_START))


def test_drtl_help_imports_nothing_heavy(tmp_path):
    code = ("import contextlib, io\nfrom drtl.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as buf:\n"
            "    try:\n        main(['--help'])\n    except SystemExit as e:\n        assert e.code == 0\n"
            "assert 'upscale' in buf.getvalue() and 'adapt' in buf.getvalue()")
    mods = _modules_after(code, tmp_path)
    assert not mods & set(NEVER_AT_START), sorted(mods & set(NEVER_AT_START))


def test_evaluate_bicubic_process_imports(make_pairs, tmp_path):
    """Unavoidable here: numpy, PIL (decoding) and scipy (scipy.sparse: the MATLAB bicubic matrix).
    Never pandas, the tracker, the validator or plotting."""
    root = make_pairs(n=2, hr=32)
    out = tmp_path / "ev" / "eval.json"
    code = ("from drtl.cli import main\n"
            f"assert main(['evaluate', '--method', 'bicubic', '--data', {str(root)!r}, '--scale', '2', "
            f"'--out', {str(out)!r}, '-S', 'threads=0']) == 0")
    mods = _modules_after(code, tmp_path)
    assert not mods & set(NEVER_IN_EVALUATE), sorted(mods & set(NEVER_IN_EVALUATE))
    assert "torch" not in mods  # bicubic needs no model; threads=0 sets no torch threads
    assert json.loads(out.read_text())["method"] == "bicubic"
    assert (out.parent / "eval.run.json").is_file()  # the run record, provenance included


def test_finetune_process_imports(make_pairs, tmp_path):
    """A training stage needs torch and the paired folder; it reads the manifest's hashes with the
    csv module, so it never imports pandas (0.3-0.5 s), nor the tracker, the validator or networkx."""
    root = make_pairs(n=2, hr=32)
    out = tmp_path / "ft"
    code = ("from drtl.cli import main\n"
            f"assert main(['finetune', '--method', 'scratch', '--seed', '0', '--pool', {str(root)!r}, "
            f"'--out', {str(out)!r}, '-S', 'target.scale=2', '-S', 'finetune.iterations=1', "
            "'-S', 'finetune.batch=1', '-S', 'finetune.lr_patch=8', '-S', 'device=cpu', '-S', 'threads=0']) == 0")
    mods = _modules_after(code, tmp_path)
    assert not mods & set(NEVER_IN_FINETUNE), sorted(mods & set(NEVER_IN_FINETUNE))
    from drtl.data.folder import read_manifest
    from drtl.modelio import load_model

    _, meta = load_model(out / "model.pt")
    man = read_manifest(root)
    assert meta["recipe"]["data_sha256"] == dict(zip(man["name"], man["lr_sha256"]))  # the pairs' content


def test_manifest_column_errors(make_pairs, tmp_path):
    from drtl.data.folder import manifest_column, read_manifest
    from drtl.errors import DataError

    root = make_pairs(n=2, hr=32)
    assert manifest_column(root, "hr_sha256") == dict(zip(read_manifest(root)["name"], read_manifest(root)["hr_sha256"]))
    with pytest.raises(DataError, match="no column 'nope'"):
        manifest_column(root, "nope")
    with pytest.raises(DataError, match="no manifest"):
        manifest_column(tmp_path, "lr_sha256")


def test_parser_defaults_match_their_modules():
    import drtl.cli as cli
    from drtl.data.importers import IMPORTERS
    from drtl.orchestrate.adapt_data import LAYOUTS
    from drtl.upscale import DEFAULT_OVERLAP, DEFAULT_TILE

    assert cli.ADAPT_LAYOUTS == LAYOUTS
    assert cli.IMPORT_KINDS == (*IMPORTERS, "hr")
    assert (cli.UPSCALE_TILE, cli.UPSCALE_OVERLAP) == (DEFAULT_TILE, DEFAULT_OVERLAP)


def test_parser_entry_points_work():
    import argparse

    from drtl.cli import add_adapt_parser, add_upscale_parser

    parser = argparse.ArgumentParser(prog="drtl")
    sub = parser.add_subparsers(dest="cmd", required=True)
    add_adapt_parser(sub)
    add_upscale_parser(sub)
    a = parser.parse_args(["upscale", "x.png", "--model", "m.pt", "--out", "o", "--no-amp"])
    assert (a.tile, a.overlap, a.amp, a.device) == (256, 16, False, "cpu") and callable(a.func)
    a = parser.parse_args(["adapt", "--pairs", "p", "--scale", "2", "--shots", "1", "--out", "o", "--layout", "city100"])
    assert a.layout == "city100" and a.seed == 0 and callable(a.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["upscale", "x.png", "--model", "m", "--out", "o", "--tile", "-1"])


PACKAGES = sorted(".".join(p.relative_to(REPO).parent.parts) for p in (REPO / "drtl").rglob("__init__.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_importable(package):
    mod = importlib.import_module(package)
    for name in getattr(mod, "__all__", ()):
        assert getattr(mod, name) is not None, f"{package}.{name}"


def test_degradations_reexports_are_lazy_and_unchanged():
    probe = ("import sys, drtl.degradations.resize\n"
             "assert 'drtl.degradations.camera' not in sys.modules and 'scipy.ndimage' not in sys.modules\n"
             "import drtl.degradations.ops, drtl.degradations.tasks, drtl.degradations.camera\n"
             "import drtl.degradations as d\n"
             "from drtl.degradations import jpeg, resize, make_pair, CameraParams\n"
             "assert callable(jpeg) and callable(resize) and d.jpeg is jpeg and d.resize is resize\n"
             "assert d.make_pair is make_pair and 'make_pair' in dir(d)")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_provenance_one_git_call_agrees(tmp_path):
    from drtl.records import git_commit, git_dirty, git_state, provenance

    assert git_state(REPO) == (git_commit(REPO), git_dirty(REPO))
    assert git_state(tmp_path) == ("unknown", None)  # not a repository
    p = provenance({"a": 1}, cwd=tmp_path)
    assert p["git_commit"] == "unknown" and p["git_dirty"] is None
