#!/usr/bin/env bash
# Wall and CPU time of the default preset's full application-1 pipeline on the built-in texture
# set: adversarial training, data distillation, prediction and evaluation, one torch thread.
# Usage: bash benchmarks/segment_train_time.sh [WORK_DIR]   (data: maskgen data segmentation-set
#        --out benchmarks/data/segment/texture --variant texture, as benchmarks/segment_bench.py makes it)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/segtime}
data=benchmarks/data/segment/texture
export OMP_NUM_THREADS=1
rm -rf "$work" && mkdir -p "$work"
/usr/bin/time -f "train wall=%e user=%U sys=%S" maskgen segment train --images $data/train/images \
    --backgrounds $data/backgrounds --out "$work/teacher" --threads 1
/usr/bin/time -f "distill wall=%e user=%U sys=%S" maskgen segment distill --teacher "$work/teacher" \
    --out "$work/student" --threads 1
maskgen segment predict --model "$work/student" --images $data/test/images --out "$work/pred"
maskgen segment evaluate --pred "$work/pred" --gt $data/test/masks
