#!/usr/bin/env bash
# make demo: a short end-to-end run on real data. Prepares Fashion-MNIST, trains the CNN teacher
# briefly, then a small MLP student that sees only 600 labels (60 per class) -- once alone, once
# with the teacher's soft targets on all 60000 images -- and prints the comparison.
set -euo pipefail
bin=${1:-build/xdistill}
out=${DEMO_OUT:-runs/demo}
data=data/fashion-mnist/dataset.xds

[ -f "$data" ] || "$bin" prepare fashion-mnist --out data/fashion-mnist
mkdir -p "$out"

echo "== teacher: CNN on all 60000 labels, 2 epochs"
"$bin" train recipes/fashion/teacher.yaml --out "$out/teacher" --set train.epochs=2 --quiet
echo "== student: MLP on 600 labels only, 10 epochs"
"$bin" train recipes/fashion/lowlabel-ce.yaml --out "$out/lowlabel-ce" --quiet
echo "== student: MLP on 600 labels + the teacher's soft targets on all images, 3 epochs"
"$bin" train recipes/fashion/lowlabel-kd.yaml --out "$out/lowlabel-kd" --set train.epochs=3 \
    --set teachers.0.checkpoint="$out/teacher/best.safetensors" --quiet

acc() { awk -F': ' '/"final_test_acc"/ { sub(/,$/, "", $2); printf "%.2f%%", 100 * $2 }' "$1/summary.json"; }
printf '\n%-44s %s\n' "run" "test accuracy"
printf '%-44s %s\n' "teacher CNN (all labels, 2 epochs)" "$(acc "$out/teacher")"
printf '%-44s %s\n' "student MLP, 600 labels" "$(acc "$out/lowlabel-ce")"
printf '%-44s %s\n' "student MLP, 600 labels + teacher (KD)" "$(acc "$out/lowlabel-kd")"
