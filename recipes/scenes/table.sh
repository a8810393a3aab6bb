#!/usr/bin/env bash
# Reproduces the fashion-scenes results table of the README: the 1%-mask student, the distilled
# student and the 100%-mask student, each over 3 seeds at one thread, then prints mean +- standard
# deviation of the final test mIoU and pixel accuracy from the runs' summary.json.
# Usage: recipes/scenes/table.sh [build/xdistill]
set -euo pipefail
bin=${1:-build/xdistill}
[ -f data/fashion-mnist/dataset.xds ] || "$bin" prepare fashion-mnist --out data/fashion-mnist
[ -f data/fashion-scenes/dataset.xds ] ||
  "$bin" prepare fashion-scenes --out data/fashion-scenes --train 3000 --test 500
# the teacher of recipes/fashion (its seed 1 is the one the distilled row reads)
[ -f runs/fashion-teacher/seed-1/best.safetensors ] ||
  "$bin" train recipes/fashion/teacher.yaml --seed 1 --out runs/fashion-teacher/seed-1 --quiet

exec recipes/table.sh scenes "$bin" mask1 distill mask100 -- --set train.threads=1
