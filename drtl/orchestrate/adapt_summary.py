"""``OUT/summary.json`` and ``OUT/summary.md`` of ``drtl adapt``."""

from __future__ import annotations

import json
from pathlib import Path


def write_summary(s: dict, out: Path) -> None:
    from drtl.io import write_text

    write_text(out / "summary.json", json.dumps(s, indent=1, default=str) + "\n")
    write_text(out / "summary.md", summary_markdown(s, out))


def summary_markdown(s: dict, out: Path) -> str:
    a, r, ev, t = s["aux_cache"], s["relation"], s["eval"], s["timings_s"]
    key = f"k{s['shots']}_s{s['seed']}"
    rel = f"relation/{r['run']}"
    lines = [f"# drtl adapt: {Path(s['pairs']).name} (x{s['scale']}, K={s['shots']})", ""]
    lines += ["## Data", "",
              f"- source: `{s['pairs']}` ({s['layout']}), {s['n_pairs']} pairs at x{s['scale']}",
              f"- K = {s['shots']} shots (seed {s['seed']}): {', '.join(s['shot_names'])}",
              f"- evaluation: {len(s['rest_names'])} remaining pairs" if s["rest_names"] else
              "- evaluation: none (every pair is a shot)", ""]
    lines += ["## The distortions this camera resembles", "",
              f"Relation weights `softmax(cos / tau)`, tau = {r['tau']}"
              + ("" if r["weighting"] else " (weighting off: uniform weights; ranked by similarity)")
              + f"; full table `{rel}/graphs/{key}/ranking.csv`, plot `{rel}/graphs/{key}/weights.png`.", "",
              "| rank | auxiliary distortion | family | similarity | weight |", "|---:|---|---|---:|---:|"]
    lines += [f"| {i} | `{x['task']}` | {x['family']} | {x['similarity']:.3f} | {x['weight']:.3f} |"
              for i, x in enumerate(r["top"], 1)]
    lines += ["", "## Quality on the remaining pairs", ""]
    if ev:
        lines += ["PSNR / SSIM on Y (BT.601), border crop = scale.", "",
                  "| method | PSNR-Y (dB) | SSIM-Y |", "|---|---:|---:|",
                  f"| adapted model ({s['method']}) | {ev['model']['psnr_y']:.3f} | {ev['model']['ssim_y']:.4f} |",
                  f"| bicubic | {ev['bicubic']['psnr_y']:.3f} | {ev['bicubic']['ssim_y']:.4f} |",
                  f"| gain | {ev['gain_psnr_y']:+.3f} | {ev['gain_ssim_y']:+.4f} |"]
    else:
        lines += ["No pair was left out of the K shots, so nothing was evaluated (PSNR unknown); "
                  "give more pairs than --shots to measure the gain over bicubic."]
    lines += ["", "## Timings", "",
              f"Aux cache `{a['path']}`: " + ("reused (no synthesis, no DRN training)." if a["hit"] else
                                              "built by this run (synthesis + DRN training)."), "",
              "| step | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in t.items()]
    lines += ["", f"({s['threads']} torch threads.)", "", "## Use the model", "", "```bash",
              f"drtl upscale IMG_OR_FOLDER --model {out / 'model.pt'} --out DIR", "```", ""]
    return "\n".join(lines)

