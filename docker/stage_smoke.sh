#!/bin/sh
# One stage chain on the built-in sample, in the folder DIR (relative paths only, so that the files
# written in the image and on the host can be compared byte for byte): docker/build.sh runs it in
# the built image and on the host, then docker/compare_runs.py compares the two folders.
#   sh docker/stage_smoke.sh DIR [DRTL]        (DRTL: the drtl command, default `drtl`)
set -eu
DIR=$1
DRTL=${2:-drtl}
mkdir -p "$DIR"
cd "$DIR"
export DRTL_PROGRESS=0
S="-S threads=1 -S tracking.enabled=false -S target.pool=sample/pool -S target.test=sample/test"
$DRTL data sample sample --scale 2 --seed 0
$DRTL validate $S --out runs/validate
$DRTL evaluate $S --method bicubic --out runs/eval_bicubic
$DRTL finetune $S -S finetune.iterations=20 -S finetune.eval_every=5 --method scratch --shots 1 --seed 0 \
    --out runs/finetune_scratch_k1_s0
$DRTL evaluate $S --method scratch --shots 1 --seed 0 --model runs/finetune_scratch_k1_s0/model.pt \
    --out runs/eval_scratch_k1_s0
