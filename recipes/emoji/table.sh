#!/usr/bin/env bash
# Reproduces the emoji (cross-modal) table of the README: every row over 3 seeds, then the table.
# The teachers run first: the students read runs/emoji-text-teacher/seed-1,
# runs/emoji-text-subgroup-teacher/seed-1 and runs/emoji-image-full/seed-1 (the image teacher of
# the Korean text student). Usage: recipes/emoji/table.sh [build/xdistill [TRAIN-ARGS...]]
set -euo pipefail
bin=${1:-build/xdistill}
shift || true
[ -f data/emoji/dataset.xds ] || "$bin" prepare emoji --out data/emoji
exec recipes/table.sh emoji "$bin" text-teacher text-subgroup-teacher image-full image-5pct \
    image-kd image-contrastive image-subgroup-kd text-ko-full text-ko-from-image -- "$@"
