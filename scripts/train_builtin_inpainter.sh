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
# RUN (default: runs/inpainter-builtin), WORKERS (scene generation processes, default 2),
# SAMPLERS (batch-sampling processes on cuda, default 8: sampling on the CPU is the bottleneck
# there; the batches, and so the model, do not depend on it).
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
EXTRA=()
case "$DEVICE" in cuda*) EXTRA=(--workers "${SAMPLERS:-8}") ;; esac
"$PYTHON" -m maskgen inpaint train \
    --data "$SCENES/annotations/train_coco.json" \
    --images "$SCENES/images/train" \
    --out "$RUN" --device "$DEVICE" "${EXTRA[@]}" "$@"
if [ ! -f "$RUN/DONE" ]; then
    echo "train_builtin_inpainter: $RUN is not finished (paused?); rerun this script to continue" >&2
    exit 1
fi
mkdir -p "$DEST"
cp "$RUN/model/config.json" "$RUN/model/model.safetensors" "$DEST/"
FLAGS="$*"
cat > "$DEST/README.md" <<README
# inpainter-builtin -- the shipped learned inpainter

Made by \`scripts/train_builtin_inpainter.sh $DEVICE $FLAGS\` on $(date -u +%Y-%m-%d): the
built-in scenes (default config, seed 0) at \`$SCENES\`, then \`maskgen inpaint train\` with the
default config (plus the flags above, if any) on their training split (visible masks only). The
settings are in config.json's "training" block. Check it with
\`python benchmarks/inpaint_quality.py\`.
README
echo "copied $RUN/model to $DEST" >&2
