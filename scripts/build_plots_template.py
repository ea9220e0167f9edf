"""Build .dvc/plots/offline.html: DVC's plot page template with vega, vega-lite and vega-embed
inlined (their minified npm dist files, verbatim), so `dvc plots show` pages work offline.

    cd /tmp && npm pack vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0
    python scripts/build_plots_template.py /tmp/vega-5.33.1.tgz /tmp/vega-lite-5.23.0.tgz /tmp/vega-embed-6.29.0.tgz

The template has no ``{scripts}`` placeholder, so DVC does not add its CDN <script> tags. It
writes .dvc/plots/vendor/VERSIONS (package, version, sha256 of each inlined file); the licences
(BSD-3-Clause) are in .dvc/plots/vendor/LICENSE-<package>.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / ".dvc" / "plots" / "offline.html"
VENDOR = REPO / ".dvc" / "plots" / "vendor"
DIST = {"vega": "package/build/vega.min.js", "vega-lite": "package/build/vega-lite.min.js",
        "vega-embed": "package/build/vega-embed.min.js"}

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot (offline)</title>
{scripts}
    <style>
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def main(tarballs: list[str]) -> None:
    scripts, versions = [], {}
    for tgz in tarballs:
        with tarfile.open(tgz) as tar:
            meta = json.load(tar.extractfile("package/package.json"))
            name = meta["name"]
            js = tar.extractfile(DIST[name]).read().decode("utf8")
        if "</script" in js or "{plot_divs}" in js or "{refresh_tag}" in js:
            raise SystemExit(f"{tgz}: the dist file cannot be inlined verbatim")
        versions[name] = {"version": meta["version"], "license": meta["license"], "file": DIST[name],
                          "sha256": hashlib.sha256(js.encode("utf8")).hexdigest()}
        scripts.append(f"    <!-- {name}@{meta['version']} ({meta['license']}, .dvc/plots/vendor/LICENSE-{name}) -->\n"
                       f"    <script type=\"text/javascript\">{js}</script>")
    order = ["vega", "vega-lite", "vega-embed"]
    scripts.sort(key=lambda s: order.index(s.split("<!-- ")[1].split("@")[0]))
    OUT.write_text(PAGE.format(scripts="\n".join(scripts)), encoding="utf8")
    VENDOR.mkdir(parents=True, exist_ok=True)
    (VENDOR / "VERSIONS").write_text(json.dumps(versions, indent=2, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1:])
