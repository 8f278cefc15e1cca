#!/usr/bin/env bash
# CUDA smoke check: every trainer runs a few steps with --device cuda (mixed precision there),
# is stopped half-way and resumed by rerunning the same command, and the predictors run on CUDA.
# Not part of `make test` (CI has no GPU). Usage: bash scripts/cuda_smoke.sh [WORK_DIR]
# (DEVICE=cpu PYTHON=.venv/bin/python checks the same commands on a CPU machine.)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/cuda_smoke}
rm -rf "$W" && mkdir -p "$W"
M=(${PYTHON:-python3} -m maskgen)
DEV=${DEVICE:-cuda}
step() { echo "== $*"; "$@" > "$W/last.log" 2>&1 || { tail -n 20 "$W/last.log"; exit 1; }; }
twice() {  # a run stopped at --stop-after, then the same command without it resumes and ends
    step "$@" --stop-after 2
    step "$@"
}

step "${M[@]}" data scenes --out "$W/scenes" --num-images-train 24 --num-images-val 4 \
    --num-images-test 4 --image-size 96 --min-shape-size 16 --max-shape-size 48
A=(--stage1-steps 6 --stage2-steps 6 --stage3-steps 6 --batch-size 32 --stage1-pool 400
   --stage2-pool 400 --val-samples 100 --widths 8,8 --fc-dim 32 --checkpoint-every 2)
twice "${M[@]}" amodal train --data "$W/scenes/annotations/train_coco.json" \
    --val "$W/scenes/annotations/val_coco.json" --out "$W/amodal" --device "$DEV" "${A[@]}"
step "${M[@]}" amodal complete --model "$W/amodal" --masks "$W/scenes/annotations/test_coco.json" \
    --images "$W/scenes/images/test" --out "$W/complete.json" --samples 4 --device "$DEV"

step "${M[@]}" data segmentation-set --out "$W/seg" --variant texture --n-train 64 \
    --n-test 16 --n-backgrounds 64
twice "${M[@]}" segment train --images "$W/seg/train/images" --backgrounds "$W/seg/backgrounds" \
    --out "$W/teacher" --preset tiny --steps 6 --checkpoint-every 2 --device "$DEV"
twice "${M[@]}" segment distill --teacher "$W/teacher" --out "$W/student" --steps 6 \
    --checkpoint-every 2 --device "$DEV"
step "${M[@]}" segment predict --model "$W/student" --images "$W/seg/test/images" \
    --out "$W/pred" --device "$DEV"

twice "${M[@]}" inpaint train --data "$W/scenes/annotations/train_coco.json" \
    --images "$W/scenes/images/train" --out "$W/inp" --preset tiny --steps 6 \
    --checkpoint-every 2 --device "$DEV"

twice "${M[@]}" synth train --data "$W/scenes/annotations/train_coco.json" \
    --images "$W/scenes/images/train" --out "$W/synth" --preset tiny --steps 6 \
    --checkpoint-every 2 --device "$DEV"
read -r IMG ANN < <(${PYTHON:-python3} -c "import json, sys; a = json.load(open(sys.argv[1]))[
    'annotations'][0]; print(a['image_id'], a['id'])" "$W/scenes/annotations/test_coco.json")
step "${M[@]}" amodal edit --model "$W/amodal" --masks "$W/scenes/annotations/test_coco.json" \
    --images "$W/scenes/images/test" --image "$IMG" --erase "$ANN" --inpainter "$W/inp" \
    --out "$W/edit" --device "$DEV"

step "${M[@]}" data cluster --kind synthetic --out "$W/cluster"
twice "${M[@]}" cluster train --image "$W/cluster/image.png" --instance-size 32 --out "$W/cl" \
    --preset tiny --steps 6 --checkpoint-every 2 --device "$DEV"
step "${M[@]}" cluster sample --model "$W/cl" --out "$W/cl-samples" --num 4
echo "cuda smoke: all passed"
