"""reports/metrics.json: the headline per K for `dvc metrics`; the offline plot template."""

import hashlib
import json
import re
from pathlib import Path

import pytest

from drtl.stages.report import report

REPO = Path(__file__).resolve().parents[1]


def test_metrics_json_is_the_headline_per_k(tmp_path):
    """A few numbers per K: the best relation-weighted row, its twin, bicubic and the differences;
    the full table stays in aggregate.csv."""
    evals = []
    for m, k, s, p in [("bicubic", None, 0, 30.0), ("bicubic", None, 1, 30.0), ("drtl_pre", 5, 0, 31.0),
                       ("drtl_pre", 5, 1, 31.4), ("pretrain", 5, 0, 30.8), ("pretrain", 5, 1, 31.0),
                       ("drtl_meta", 5, 0, 31.5), ("drtl_meta", 5, 1, 31.5), ("maml", 5, 0, 31.4), ("maml", 5, 1, 31.2),
                       ("drtl_pre", 1, 0, 30.5), ("scratch", 1, 0, 29.9)]:
        e = tmp_path / f"{m}_{k}_{s}.json"
        e.write_text(json.dumps({"method": m, "shots": k, "seed": s, "psnr_y": p, "ssim_y": 0.9}))
        evals.append(e)
    r = report(evals, tmp_path / "reports", [1, 5])
    m = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert m == r["headline"] and set(m) == {"k1", "k5"}
    # K=5: drtl_meta (31.5) beats drtl_pre (31.2); its twin is maml (31.3)
    assert m["k5"] == pytest.approx({"drtl_row": "drtl_meta", "drtl": 31.5, "n_seeds": 2, "twin_row": "maml",
                                     "twin": 31.3, "drtl_minus_twin": 0.2, "bicubic": 30.0, "drtl_minus_bicubic": 1.5})
    # K=1: drtl_pre without its twin: no difference is made up
    assert m["k1"] == pytest.approx({"drtl_row": "drtl_pre", "drtl": 30.5, "n_seeds": 1, "bicubic": 30.0,
                                     "drtl_minus_bicubic": 0.5})
    assert r["metrics"]["drtl_pre_k5_psnr_y"] == 31.2 and r["metrics"]["scratch_k1_psnr_y"] == 29.9  # every row, flat
    agg = (tmp_path / "reports" / "aggregate.csv").read_text()
    assert "scratch,1," in agg and "maml,5," in agg  # the full table
    # with its equal-budget twin uni_cont in the table, DRTL-Pre is compared with it, not with pretrain
    e = tmp_path / "uni_cont_5_0.json"
    e.write_text(json.dumps({"method": "uni_cont", "shots": 5, "seed": 0, "psnr_y": 31.9, "ssim_y": 0.9}))
    evals = [x for x in evals if "drtl_meta" not in x.name] + [e]
    m = report(evals, tmp_path / "reports2", [1, 5])["headline"]
    assert m["k5"]["drtl_row"] == "drtl_pre" and m["k5"]["twin_row"] == "uni_cont"
    assert m["k5"]["drtl_minus_twin"] == pytest.approx(31.2 - 31.9)


def test_twins_come_from_the_registry():
    from drtl.methods import COMPARISONS, DRTL_METHODS, METHODS, SOURCES, TWINS

    assert set(TWINS) == set(DRTL_METHODS) == {"drtl_pre", "drtl_meta", "drn_fitted"}
    assert all((a, b) in COMPARISONS for a, twins in TWINS.items() for b in twins)
    # every DRTL row and its first twin start from the same model and train as long (equal budget)
    for a, twins in TWINS.items():
        sa, sb = SOURCES[METHODS[a].init], SOURCES[METHODS[twins[0]].init]
        assert (sa.init, sa.init_param, sa.stage) == (sb.init, sb.init_param, sb.stage), (a, twins[0])
    # the relation-free rows are compared with each DRTL-Pre row
    assert {("drtl_pre", "fitted_only"), ("drn_fitted", "fitted_only"), ("drtl_meta", "fitted_only")} <= set(COMPARISONS)


def test_offline_plot_template():
    from dvc_render.html import HTML
    from dvc_render.vega import VegaRenderer

    page = (REPO / ".dvc" / "plots" / "offline.html").read_text(encoding="utf8")
    versions = json.loads((REPO / ".dvc" / "plots" / "vendor" / "VERSIONS").read_text())
    inlined = re.findall(r'<script type="text/javascript">(.*?)</script>', page, flags=re.S)
    assert len(inlined) == 3
    assert sorted(hashlib.sha256(js.encode("utf8")).hexdigest() for js in inlined) == \
        sorted(v["sha256"] for v in versions.values())
    for name in versions:
        assert (REPO / ".dvc" / "plots" / "vendor" / f"LICENSE-{name}").is_file()
    html = HTML(page).with_scripts(VegaRenderer.SCRIPTS).with_element("<div id='p'></div>").embed()
    assert "cdn.jsdelivr" not in html and "<script src" not in html and "<div id='p'>" in html


def test_a_k_whose_seeds_share_their_shots_is_flagged(tmp_path):
    """K = the pool's size: every seed fine-tunes on the same pairs; the report says so (results.md,
    metrics.json's shot_sets) instead of presenting the seeds as draws of the shots."""
    evals = []
    pool = [f"{i:03d}" for i in range(1, 11)]
    for k, s, pairs in [(5, 0, pool[:5]), (5, 1, pool[5:]), (10, 0, pool), (10, 1, pool[::-1])]:
        for m, p in [("drtl_pre", 31.0 + s / 10), ("pretrain", 30.8)]:
            e = tmp_path / f"{m}_{k}_{s}.json"
            e.write_text(json.dumps({"method": m, "shots": k, "seed": s, "psnr_y": p, "ssim_y": 0.9,
                                     "train_pairs": sorted(pairs)}))
            evals.append(e)
    m = report(evals, tmp_path / "reports", [5, 10])["headline"]
    assert m["k5"]["shot_sets"] == 2 and m["k10"]["shot_sets"] == 1
    md = (tmp_path / "reports" / "results.md").read_text()
    assert "K=10: one shot set" in md and "K=5: one shot set" not in md
