#!/usr/bin/env bash
# Reproduces the teacher-ensemble table of the README: every row over 3 seeds, then the table
# (recipes/table.sh) and the runs' report page, runs/reports/ensemble.html. The teachers come
# first when they are missing: the Fashion-MNIST CNN of seeds 1, 2, 3
# (runs/fashion-teacher/seed-N), the emoji text teacher and the 100%-label image CNN of seed 1.
# Usage: recipes/ensemble/table.sh [build/xdistill [TRAIN-ARGS...]]
# e.g. recipes/ensemble/table.sh build/xdistill --set train.threads=1
set -euo pipefail
bin=${1:-build/xdistill}
shift || true
[ -f data/fashion-mnist/dataset.xds ] || "$bin" prepare fashion-mnist --out data/fashion-mnist
[ -f data/emoji/dataset.xds ] || "$bin" prepare emoji --out data/emoji
teacher() { # RECIPE RUN-NAME SEED
  [ -f "runs/$2/seed-$3/best.safetensors" ] ||
    "$bin" train "$1" --seed "$3" --out "runs/$2/seed-$3" --quiet "${@:4}"
}
for k in 1 2 3; do teacher recipes/fashion/teacher.yaml fashion-teacher "$k" "$@"; done
teacher recipes/emoji/text-teacher.yaml emoji-text-teacher 1 "$@"
teacher recipes/emoji/image-full.yaml emoji-image-full 1 "$@"
exec recipes/table.sh ensemble "$bin" fashion-teacher1 fashion-teacher2 fashion-teacher3 \
    fashion-mean fashion-entropy emoji-text emoji-image emoji-mean emoji-entropy -- "$@"
