"""The stage functions end to end on a tiny profile, determinism, params handling and the report."""

import copy
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from drtl.cli import main
from drtl.config import load_params
from drtl.errors import ConfigError, DataError
from drtl.methods import METHOD_NAMES
from drtl.orchestrate.experiment import run_experiment
from drtl.stages.report import collect, report


@pytest.mark.slow
def test_experiment_end_to_end(tiny_run):
    out, p = tiny_run.out, tiny_run.params
    tasks, shots = p["aux"]["tasks"], p["experiment"]["shots"]
    df = pd.read_csv(io.BytesIO(tiny_run.results))
    assert list(df.columns) == ["method", "shots", "seed", "psnr_y", "ssim_y"]
    methods = p["experiment"]["methods"]
    assert sorted(set(df.method)) == sorted(methods) and set(methods) <= set(METHOD_NAMES)
    assert len(df) == len(methods) * len(shots) and set(df.shots) == set(shots) and (df.ssim_y <= 1).all()
    # every learned model has a bicubic global residual: a few steps keep it within 1 dB of bicubic
    # (a broken model, a wrong scale or a misaligned output falls far below; bicubic alone is ~30 dB)
    bic = df[df.method == "bicubic"].set_index("shots").psnr_y
    learned = df[df.method != "bicubic"]
    assert (abs(learned.psnr_y - learned.shots.map(bic)) < 1.0).all(), learned
    assert learned.psnr_y.nunique() > 1  # the methods really differ
    # every artefact of the bank and of each (K, seed)'s relation run exists
    bank = out / "bank"
    for f in ("drn.pt", "drn_eval.json", "bank.json"):
        assert (bank / f).is_file(), f
    assert set(json.loads((bank / "bank.json").read_text())["metrics"]["drn_val_accuracy_family"]) <= {
        "blur", "noise", "jpeg"}
    for k in shots:
        rel, key = out / "relation" / f"drtl_k{k}_s0", f"k{k}_s0"
        for f in ("weights.json", "relation.json", f"graphs/{key}/graph.json", f"graphs/{key}/graph.graphml",
                  f"graphs/{key}/weights.png", f"graphs/{key}/ranking.csv"):
            assert (rel / f).is_file(), f
        w = json.loads((rel / "weights.json").read_text())
        assert set(w) == {key} and sorted(w[key]) == sorted(tasks) and abs(sum(w[key].values()) - 1) < 1e-9
        m = json.loads((rel / "relation.json").read_text())  # what the relation report shows
        assert abs(sum(m["family_weight"][key].values()) - 1) < 1e-3 and -1 <= m["best_cosine"][key] <= 1
    for f in ("aggregate.csv", "results.md", "psnr_vs_shots.png", "metrics.json"):
        assert (out / "reports" / f).is_file()
    # determinism: tests/test_parity.py finds this results.csv byte-identical to those of two other
    # processes (Kubeflow local and dvc repro) with the same seeds


@pytest.mark.slow
def test_a_rerun_does_only_what_changed(tiny_run):
    """Nothing changed: no work. A fine-tuning change: only fine-tuning and evaluation are redone,
    each replaced run named once. The run is put back afterwards (the other tests read it)."""
    lines: list[str] = []
    run_experiment(copy.deepcopy(tiny_run.params), echo=lines.append)
    assert [l for l in lines if l.startswith("[")] == []
    # the same folders spelled another way are the same inputs: still no work
    p = copy.deepcopy(tiny_run.params)
    pool = Path(p["target"]["pool"])
    p["target"]["pool"] = f"{pool.parent}/../{pool.parent.name}/{pool.name}"
    run_experiment(p, echo=lines.append)
    assert [l for l in lines if l.startswith("[")] == []
    p = copy.deepcopy(tiny_run.params)
    p["finetune"]["iterations"] += 1
    lines.clear()
    try:
        run_experiment(p, echo=lines.append)
    finally:
        run_experiment(copy.deepcopy(tiny_run.params), echo=lambda _: None)
    redone = [l.split("] ")[1].split(" ", 1)[1].rsplit(" (", 1)[0] for l in lines if l.startswith("[") and "report" not in l]
    assert redone and all(r.startswith(("finetune", "evaluate")) for r in redone)
    # each finished run whose inputs changed is named as replaced, once, before it is redone
    replaced = [l.split(":")[0].strip() for l in lines if "is replaced" in l]
    assert len(replaced) == len(set(replaced)) and set(replaced) - {"report report"} == set(redone)
    assert not any(r.startswith("evaluate bicubic") for r in redone)
    assert (tiny_run.out / "reports" / "results.csv").read_bytes() == tiny_run.results  # put back, bit for bit


def test_params_overrides_and_errors(tmp_path):
    p = load_params(None, ["finetune.iterations=7", "experiment.shots=[1, 3]"])
    assert p["finetune"]["iterations"] == 7 and p["experiment"]["shots"] == [1, 3]
    with pytest.raises(ConfigError, match="unknown key finetune.iters"):
        load_params(None, ["finetune.iters=7"])
    f = tmp_path / "p.yaml"
    f.write_text("pretrain: {iteratons: 3}\n")
    with pytest.raises(ConfigError, match="pretrain.iteratons"):
        load_params(f)
    f.write_text("experiment: {methods: [bicubic, magic]}\n")
    with pytest.raises(ConfigError, match="magic"):
        load_params(f)
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "absent.yaml")


def test_report_table_and_expansion(tmp_path):
    evals = []
    for m, k, s, p in [("bicubic", None, 0, 30.0), ("scratch", 1, 0, 30.5), ("scratch", 1, 1, 30.7),
                       ("scratch", 5, 0, 31.0), ("scratch", 5, 1, 31.2), ("bicubic", None, 1, 30.0)]:
        e = tmp_path / f"{m}_{k}_{s}.json"
        e.write_text(json.dumps({"method": m, "shots": k, "seed": s, "psnr_y": p, "ssim_y": 0.9}))
        evals.append(e)
    r = report(evals, tmp_path / "rep", expand_shots=[1, 5])
    df = pd.read_csv(tmp_path / "rep" / "results.csv")
    assert len(df) == 8 and r["n_rows"] == 8
    agg = pd.read_csv(tmp_path / "rep" / "aggregate.csv").set_index(["method", "shots"])
    assert agg.loc[("scratch", 1), "psnr_mean"] == pytest.approx(30.6)
    assert agg.loc[("scratch", 1), "psnr_std"] == pytest.approx(0.1414, abs=1e-3)
    assert agg.loc[("bicubic", 5), "psnr_std"] == 0
    md = (tmp_path / "rep" / "results.md").read_text()
    assert "30.600 ± 0.141" in md
    with pytest.raises(DataError, match="not found"):
        collect([tmp_path / "missing.json"])


def test_stage_cli_errors(tmp_path, capsys):
    assert main(["bank", "--parts", "drn", "--synth", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "not a synthesized task folder" in capsys.readouterr().err
    assert main(["relation", "--synth", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "relation needs --shots K" in capsys.readouterr().err
    assert main(["experiment", "-S", "finetune.iters=3"]) == 2
    assert "unknown key finetune.iters" in capsys.readouterr().err


@pytest.mark.slow
def test_test_pairs_are_read_only_by_validate_and_evaluate(tiny_run):
    """The read audit of the session's run: every file opened under the test folder, by stage."""
    opened = tiny_run.opened
    image_readers = {s for s, f in opened if f.endswith(".png")}
    assert "evaluate" in image_readers  # the audit sees the evaluation read the test pairs
    assert image_readers <= {"validate", "evaluate"}, sorted(opened)  # validate: hashes for the overlap check
    # outside a stage only the test manifest is read (the orchestrator's cache key: content hashes)
    assert {f for s, f in opened if s == "-"} <= {"manifest.csv"}


def test_a_stage_process_never_imports_mlflow(make_pairs, tmp_path):
    """Tracking on (the default): a stage writes its record and leaves MLflow to `drtl track`."""
    import subprocess
    import sys

    pairs = make_pairs(n=2)
    code = ("import sys; from drtl.cli import main; "
            f"rc = main(['evaluate', '--data', {str(pairs)!r}, '--scale', '2', '--out', {str(tmp_path / 'ev')!r}, "
            "'-S', 'tracking.enabled=true']); print(rc, 'mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.split()[-2:] == ["0", "False"], out.stdout + out.stderr
    rec = json.loads((tmp_path / "ev" / "run.json").read_text())
    assert rec["stage"] == "evaluate" and set(rec["metrics"]) >= {"psnr_y", "ssim_y"}
    assert "seed" not in rec["metrics"] and rec["identity"] == {"method": "bicubic"}
