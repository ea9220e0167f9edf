"""Compare two folders written by docker/stage_smoke.sh (one in the image, one on the host).

Every file must be byte-identical, except the run records (``run.json``: start time, host, duration)
and the training curves' timings (``history.json`` without ``elapsed_s`` / ``wall_s``), whose other
values must be equal. Prints one line per compared file, the evaluation numbers side by side, and a
last line ``identical: yes`` or ``identical: no (N files differ)``; exits 1 when they differ.

    python docker/compare_runs.py HOST_DIR IMAGE_DIR
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

TIMINGS = {"elapsed_s", "wall_s"}  # wall-clock fields of history.json: differ between any two runs


def _untimed(obj):
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if k not in TIMINGS}
    if isinstance(obj, list):
        return [_untimed(v) for v in obj]
    return obj


def compare(a: Path, b: Path) -> tuple[list[str], list[str]]:
    """(report lines, names of the files that differ) for the folders ``a`` and ``b``."""
    names_a = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()}
    names_b = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()}
    lines, bad = [], sorted(names_a ^ names_b)
    lines += [f"only in {a if n in names_a else b}: {n}" for n in bad]
    bytes_same = 0
    for name in sorted(names_a & names_b):
        fa, fb = a / name, b / name
        if fa.name == "run.json":
            continue
        if fa.name == "history.json":
            same = _untimed(json.loads(fa.read_text())) == _untimed(json.loads(fb.read_text()))
            lines.append(f"{name}: {'same losses' if same else 'DIFFERENT losses'} (timings not compared)")
        else:
            same = fa.read_bytes() == fb.read_bytes()
            bytes_same += same
            if name.endswith((".pt", ".json")) or not same:
                sha = hashlib.sha256(fa.read_bytes()).hexdigest()[:16]
                lines.append(f"{name}: {'identical bytes' if same else 'DIFFERENT bytes'} (sha256 {sha}...)")
        if fa.name == "eval.json":
            ea, eb = json.loads(fa.read_text()), json.loads(fb.read_text())
            lines.append("  " + ", ".join(f"{k} {ea[k]!r} / {eb[k]!r}" for k in ("psnr_y", "ssim_y", "psnr_rgb")))
        if not same:
            bad.append(name)
    lines.append(f"{bytes_same} files byte-identical; run.json records not compared (times, host)")
    return lines, bad


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or not all(Path(p).is_dir() for p in argv):
        print("usage: python docker/compare_runs.py HOST_DIR IMAGE_DIR (two folders written by docker/stage_smoke.sh)",
              file=sys.stderr)
        return 2
    lines, bad = compare(Path(argv[0]), Path(argv[1]))
    print("\n".join(lines))
    print(f"identical: {'yes' if not bad else f'no ({len(bad)} files differ: {bad[:5]})'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
