#!/usr/bin/env bash
# Train the shipped learned inpainter (supplementary §3.3) and copy it into the package.
#
#   scripts/train_builtin_inpainter.sh [cpu|cuda|cuda:N] [more 'maskgen inpaint train' flags]
#
# (a) generates the built-in scenes (default config, seed 0) unless $SCENES already holds them,
# (b) runs 'maskgen inpaint train' with the default config on their training split (visible
#     masks only; extra flags, e.g. --steps 30, are passed on), resuming $RUN if it exists,
# (c) copies the model folder to src/maskgen/models/inpainter-builtin/.
# Environment: PYTHON (default: python), SCENES (default: benchmarks/data/scenes),
# RUN (default: runs/inpainter-builtin), WORKERS (scene generation processes, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE="${1:-cpu}"
if [ $# -gt 0 ]; then shift; fi
PYTHON="${PYTHON:-python}"
SCENES="${SCENES:-benchmarks/data/scenes}"
RUN="${RUN:-runs/inpainter-builtin}"
DEST=src/maskgen/models/inpainter-builtin

if [ ! -f "$SCENES/annotations/train_coco.json" ]; then
    "$PYTHON" -m maskgen data scenes --out "$SCENES" --workers "${WORKERS:-2}"
fi
"$PYTHON" -m maskgen inpaint train \
    --data "$SCENES/annotations/train_coco.json" \
    --images "$SCENES/images/train" \
    --out "$RUN" --device "$DEVICE" "$@"
if [ ! -f "$RUN/DONE" ]; then
    echo "train_builtin_inpainter: $RUN is not finished (paused?); rerun this script to continue" >&2
    exit 1
fi
mkdir -p "$DEST"
cp "$RUN/model/config.json" "$RUN/model/model.safetensors" "$DEST/"
echo "copied $RUN/model to $DEST" >&2
