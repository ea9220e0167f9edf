"""Paired comparisons with bootstrap intervals (drtl.stats) and their place in the report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from drtl.stats import IMAGE_COLUMNS, bootstrap_ci, comparisons, markdown, paired


def _images(rows):
    return pd.DataFrame(rows, columns=IMAGE_COLUMNS)


def _table():
    rows = []
    for seed in (0, 1):
        for i in range(5):
            rows.append(("bicubic", 0, seed, f"im{i}", 30.0 + i))
            for k in (1, 5):
                rows.append(("pretrain", k, seed, f"im{i}", 30.0 + i + 0.1 * k))
                # drtl_pre: +0.2 dB over pretrain on every image at K=1, +-0.05 alternating at K=5
                rows.append(("drtl_pre", k, seed, f"im{i}", 30.0 + i + 0.1 * k + (0.2 if k == 1 else 0.05 * (-1) ** i)))
    return _images(rows)


def test_paired_differences_match_seed_and_image():
    t = _table()
    d = paired(t, "drtl_pre", "pretrain", 1)
    assert len(d) == 10 and np.allclose(d, 0.2)
    d5 = paired(t, "drtl_pre", "bicubic", 5)  # a K-independent row pairs with every K
    assert len(d5) == 10 and np.isclose(d5.mean(), 0.5 + 0.05 * (3 - 2) / 5)
    assert len(paired(t, "drtl_pre", "pretrain", 10)) == 0  # no such K


def test_a_per_k_row_with_one_k_so_far_is_not_taken_for_a_k_independent_one():
    t = _table()
    partial = t[~((t.method == "drtl_pre") & (t.shots == 5))]  # a resumed run: drtl_pre has only K=1 yet
    assert len(paired(partial, "drtl_pre", "pretrain", 5)) == 0  # not its K=1 models against K=5
    c = comparisons(partial, pairs=[("drtl_pre", "pretrain")])
    assert list(c.shots) == [1]


def test_comparisons_golden_and_interval():
    c = comparisons(_table(), pairs=[("drtl_pre", "pretrain"), ("pretrain", "bicubic"), ("bicubic", "bicubic")])
    one = c[(c.a == "drtl_pre") & (c.shots == 1)].iloc[0]
    assert one.mean_diff == pytest.approx(0.2) and one.ci_low == pytest.approx(0.2) and one.a_wins == 1.0
    five = c[(c.a == "drtl_pre") & (c.shots == 5)].iloc[0]
    assert five.mean_diff == pytest.approx(0.01) and five.ci_low < 0 < five.ci_high and five.a_wins == 0.6
    assert list(c[c.a == "bicubic"].shots) == [0]  # two K-independent rows: one comparison
    text = markdown(c)
    assert "| drtl_pre - pretrain | 1 | +0.200 * |" in text and "| bicubic - bicubic | all |" in text


def test_bootstrap_ci_is_seeded_and_covers_the_mean():
    d = np.random.default_rng(3).normal(0.1, 0.3, size=40)
    lo, hi = bootstrap_ci(d)
    assert (lo, hi) == bootstrap_ci(d) and lo < d.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * d.std(ddof=1) / np.sqrt(40), rel=0.25)


def test_report_writes_comparisons(tmp_path):
    from drtl.stages.report import report

    evals = []
    for m, k, base in (("bicubic", None, 30.0), ("pretrain", 1, 30.1), ("drtl_pre", 1, 30.3)):
        p = tmp_path / f"{m}.json"
        per = [{"name": f"im{i}", "psnr_y": base + 0.01 * i} for i in range(4)]
        p.write_text(json.dumps({"method": m, "shots": k, "seed": 0, "psnr_y": base, "ssim_y": 0.8, "per_image": per}))
        evals.append(p)
    report(evals, tmp_path / "rep", [1])
    comp = pd.read_csv(tmp_path / "rep" / "comparisons.csv")
    row = comp[(comp.a == "drtl_pre") & (comp.b == "pretrain")].iloc[0]
    assert row.mean_diff == pytest.approx(0.2) and row.n_pairs == 4
    assert "drtl_pre - pretrain" in (tmp_path / "rep" / "results.md").read_text()


def test_default_comparisons_put_each_drtl_row_against_scratch_all():
    """"One real pair + DRTL beats scratch_all" is read for both DRTL rows: scratch_all is
    K-independent, so each row's K=1 run pairs with it image by image."""
    rows = [("scratch_all", 0, s, f"im{i}", 30.0 + i) for s in (0, 1) for i in range(3)]
    rows += [(m, 1, s, f"im{i}", 30.0 + i + d) for m, d in (("drtl_pre", 0.1), ("drtl_meta", -0.1))
             for s in (0, 1) for i in range(3)]
    c = comparisons(_images(rows))
    got = {(r.a, r.b): r.mean_diff for r in c.itertuples()}
    assert got == pytest.approx({("drtl_pre", "scratch_all"): 0.1, ("drtl_meta", "scratch_all"): -0.1})


def test_the_interval_resamples_seeds_and_images_both():
    """Seed 0 gains +0.3 dB on every image, seed 1 +0.1: a pair bootstrap would call the mean
    +0.2 +- 0.05; resampling seeds too puts the interval at the seed means' range, [+0.1, +0.3]."""
    rows = []
    for seed, gain in ((0, 0.3), (1, 0.1)):
        for i in range(10):
            rows.append(("pretrain", 1, seed, f"im{i}", 30.0 + i))
            rows.append(("drtl_pre", 1, seed, f"im{i}", 30.0 + i + gain))
    c = comparisons(_images(rows), pairs=[("drtl_pre", "pretrain")]).iloc[0]
    assert c.mean_diff == pytest.approx(0.2) and c.n_seeds == 2 and c.n_pairs == 20
    assert c.ci_low == pytest.approx(0.1) and c.ci_high == pytest.approx(0.3)
    assert c.seed_means == "+0.300 +0.100"
    flat = paired(_images(rows), "drtl_pre", "pretrain", 1)
    lo, hi = bootstrap_ci(flat)  # the same differences read as 20 independent pairs: far too narrow
    assert hi - lo < 0.1
    assert "| +0.300 +0.100 |" in markdown(pd.DataFrame([c]))


def test_images_vary_within_one_seed():
    """One seed: the interval comes from the images alone (a 1 x N grid equals the 1-D bootstrap)."""
    d = np.random.default_rng(5).normal(0.05, 0.2, size=12)
    assert bootstrap_ci(d[None, :]) == bootstrap_ci(d)
