#!/usr/bin/env bash
# The GPU check: the GPU profile's (params.gpu.yaml) code paths on CUDA, in under 8 minutes.
#   1. device and dtype checks, steps/s of pre-training, meta-training and fine-tuning for
#      edsr_baseline (float32 and bf16 autocast) against a plain PyTorch loop in the same run,
#      upscaling MP/s, peak memory: benchmarks/bench_gpu.py -> OUT/gpu_check.json;
#   2. the GPU profile itself, end to end, with tiny budgets on the built-in sample (device: auto,
#      i.e. CUDA): tests/test_gpu_profile.py's smoke run, here on the GPU.
# Usage: scripts/gpu_check.sh [OUT]   (default outputs/gpu_check)
#        scripts/gpu_check.sh --cpu-smoke [OUT]   (the same code paths on the CPU, tiny sizes: seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=()
if [ "${1:-}" = "--cpu-smoke" ]; then SMOKE=(--cpu-smoke); shift; fi
OUT=${1:-outputs/gpu_check}
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || { echo "gpu_check: error: $PY is missing; run make setup (or set PY=python)" >&2; exit 2; }
mkdir -p "$OUT"
t0=$(date +%s)
"$PY" -c "import platform, torch; print('gpu_check:', platform.node(), 'torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
timeout 330 "$PY" benchmarks/bench_gpu.py "${SMOKE[@]}" --json "$OUT/gpu_check.json" | tee "$OUT/gpu_check.txt"
if [ ${#SMOKE[@]} -eq 0 ]; then
  # the whole plan of the GPU profile on CUDA, tiny budgets (the CPU smoke test of the suite, on the GPU)
  timeout 120 "$PY" -m pytest -q -p no:cacheprovider -m slow \
    "tests/test_gpu_profile.py::test_gpu_profile_runs_with_tiny_budgets" 2>&1 | tail -3 | tee -a "$OUT/gpu_check.txt"
fi
echo "gpu_check: $(( $(date +%s) - t0 )) s; $OUT/gpu_check.json"
