"""reports/metrics.json follows DVC's comparison conventions; the offline plot template."""

import hashlib
import json
import re
from pathlib import Path

from drtl.stages.report import report

REPO = Path(__file__).resolve().parents[1]


def test_metrics_json_nested_per_method_and_k(tmp_path):
    evals = []
    for m, k, s, p, q in [("bicubic", None, 0, 30.0, 0.90), ("drtl_pre", 5, 0, 31.0, 0.91), ("drtl_pre", 5, 1, 31.4, 0.93),
                          ("drtl_pre", 5, 2, 31.2, 0.92)]:
        e = tmp_path / f"{m}_{k}_{s}.json"
        e.write_text(json.dumps({"method": m, "shots": k, "seed": s, "psnr_y": p, "ssim_y": q}))
        evals.append(e)
    r = report(evals, tmp_path / "reports", [1, 5])
    m = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert m == r["dvc_metrics"]
    assert set(m) == {"bicubic", "drtl_pre"} and set(m["bicubic"]) == {"k1", "k5"} and set(m["drtl_pre"]) == {"k5"}
    d = m["drtl_pre"]["k5"]
    assert d["psnr_y"] == {"mean": 31.2, "std": 0.2, "n": 3}
    assert d["ssim_y"]["mean"] == 0.92 and abs(d["ssim_y"]["std"] - 0.01) < 1e-9 and d["ssim_y"]["n"] == 3
    assert m["bicubic"]["k1"]["psnr_y"] == {"mean": 30.0, "std": 0.0, "n": 1}
    assert r["metrics"]["drtl_pre_k5_psnr_y"] == 31.2  # flat headline numbers for scalar loggers


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
