#!/bin/bash
# DRTL-Pre's continuation with all its weight on ONE task of a relation cell, then fine-tuning and
# evaluation: how far a single hand-picked task (for example a composed task, `fitted+jpeg_q30`)
# takes the uniform model, next to the relation's own mixture. A diagnostic for validation splits.
#
#   research/one_task_continuation.sh ROOT TASK K [SEED] [PARAMS] [-S overrides of the experiment...]
#
# ROOT: an outputs root of `drtl experiment` whose relation cell relation/drtl_k<K>_s<SEED> holds
# TASK (run with relation.composed: true for composed tasks), and its pretrain/uniform_s<SEED>,
# finetune/pretrain_k<K>_s<SEED> and eval/pretrain_k<K>_s<SEED> runs (their pool and test folders
# are reused). PARAMS (default configs/city100_x2.yaml) and the overrides must be the experiment's.
# Writes ROOT/one_task/<TASK>_k<K>_s<SEED>/ and prints the evaluation's PSNR-Y.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$1; TASK=$2; K=$3; SEED=${4:-0}; PARAMS=${5:-configs/city100_x2.yaml}; shift $(( $# < 5 ? $# : 5 ))
O="$ROOT/one_task/${TASK}_k${K}_s${SEED}"; KEY="k${K}_s${SEED}"; BIN=.venv/bin
P=(--params "$PARAMS" "$@")
mkdir -p "$O"; rm -rf "$O/rel"; cp -r "$ROOT/relation/drtl_$KEY" "$O/rel"
$BIN/python - "$O/rel/weights.json" "$TASK" "$KEY" <<'PY'
import json, sys
path, task, key = sys.argv[1:]
w = json.load(open(path))
if task not in w[key]:
    sys.exit(f"{task!r} is not a task of this cell; its tasks: {', '.join(w[key])}")
w[key] = {n: float(n == task) for n in w[key]}
json.dump(w, open(path, "w"))
PY
input_of() { $BIN/python -c "import json,sys; print([i['path'] for i in json.load(open(sys.argv[1]))['inputs'] if i.get('context') == sys.argv[2]][0])" "$1" "$2"; }
POOL=$(input_of "$ROOT/finetune/pretrain_$KEY/run.json" target_pool)
TEST=$(input_of "$ROOT/eval/pretrain_$KEY/run.json" target_test)
$BIN/drtl pretrain "${P[@]}" --method drtl --shots "$K" --seed "$SEED" --synth "$ROOT/synth" --relation "$O/rel" \
  --init "$ROOT/pretrain/uniform_s$SEED/model.pt" --out "$O/pre" > "$O/log" 2>&1
$BIN/drtl finetune "${P[@]}" -S "target.pool=$POOL" --method drtl_pre --shots "$K" --seed "$SEED" \
  --init "$O/pre/model.pt" --out "$O/ft" >> "$O/log" 2>&1
$BIN/drtl evaluate "${P[@]}" --method drtl_pre --data "$TEST" --model "$O/ft/model.pt" --shots "$K" --seed "$SEED" \
  --out "$O/ev" >> "$O/log" 2>&1
$BIN/python -c "import json,sys; print(sys.argv[2], 'K=' + sys.argv[3], 'seed', sys.argv[4], 'PSNR-Y %.3f' % json.load(open(sys.argv[1]))['psnr_y'])" \
  "$O/ev/eval.json" "$TASK" "$K" "$SEED"
