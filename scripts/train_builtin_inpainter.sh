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
# Steps and training time from the run's last metrics line (its time counts from the run's last
# start, so a resumed run reports only its last leg).
STATS="$("$PYTHON" - "$RUN/metrics.jsonl" <<'PY'
import json, sys
last = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print(f"{last['step']} steps; the last start of the run took {last['time'] / 60:.1f} minutes")
PY
)"
cat > "$DEST/README.md" <<README
# inpainter-builtin -- the shipped learned inpainter

Made by \`scripts/train_builtin_inpainter.sh $DEVICE $FLAGS\` on $(date -u +%Y-%m-%d): the
built-in scenes (default config, seed 0) at \`$SCENES\`, then \`maskgen inpaint train\` with the
default config (plus the flags above, if any) on their training split (visible masks only):
$STATS (wall clock, on a machine that may have been shared; see RESULTS.md
\`inpaint-train-time\` for the idle cost). The settings are in config.json's "training" block.
Check it with \`python benchmarks/inpaint_quality.py\` (RESULTS.md \`inpaint-quality\`).
README
echo "copied $RUN/model to $DEST" >&2
