#!/usr/bin/env bash
# The table of the README's "Results: pruned students": the zoo benchmark's student (recipes/zoo,
# 10% of the labels) over seeds 1, 2, 3 at one thread. Float: labels only and KD from the
# Fashion-MNIST CNN (the runs of recipes/zoo/int8-table.sh, trained here when missing). Each seed's
# KD float student is then pruned, starting from its last checkpoint (`init:`): by magnitude to
# 50, 80 and 90% of its weights over 6 epochs and fine-tuned 4 more (prune-trained-*.yaml), and
# by removing half of the filters of each conv2d (`xdistill prune --channels 0.5`), scored as it is
# and after 10 epochs of fine-tuning (channels-*.yaml); each fine-tuned three ways: on labels
# alone, with KD, and with KD's control (KD's batches, CE on their labelled images, nothing from
# the teacher). Every figure is of a run's LAST checkpoint (no model selection). Prints test
# accuracy mean +- std over the seeds, the share of zero weights, the parameters and the bytes of
# seed 1's file, and writes the runs' report page, runs/reports/compress.html. Finished runs are
# not trained again.
# Usage: recipes/compress/table.sh [build/xdistill]
set -euo pipefail
bin=${1:-build/xdistill}
seeds=(1 2 3)
sparsities=(50 80 90)
ways=(labels mixed kd)
data=data/fashion-mnist/dataset.xds
[ -f "$data" ] || "$bin" prepare fashion-mnist --out data/fashion-mnist
if [ ! -f runs/fashion-teacher/seed-1/summary.json ]; then
  nice -n 10 "$bin" train recipes/fashion/teacher.yaml --seed 1 --out runs/fashion-teacher/seed-1 \
    --set train.threads=1 --quiet
fi
for r in labels kd; do
  dir=runs/int8-$r-float
  [ -f "$dir/summary.json" ] && grep -q '"seeds": 3' "$dir/summary.json" ||
    nice -n 10 "$bin" train "recipes/zoo/$r.yaml" --seeds 3 --out "$dir" --set train.threads=1 --quiet
done
# tune RECIPE DIR START [--set ...]: one seed's fine-tuning from START into DIR unless there
tune() {
  local recipe=$1 dir=$2 start=$3
  shift 3
  [ -f "$dir/summary.json" ] ||
    nice -n 10 "$bin" train "$recipe" --seed "$s" --out "$dir" --set "init=$start" \
      --set train.threads=1 "$@" --quiet
}
for s in "${seeds[@]}"; do
  src=runs/int8-kd-float/seed-$s
  for p in "${sparsities[@]}"; do
    for r in "${ways[@]}"; do
      tune "recipes/compress/prune-trained-$r.yaml" "runs/compress-prune$p-$r/seed-$s" \
        "$src/last.safetensors" --set "prune.sparsity=0.$p" --set "name=prune$p-$r"
    done
  done
  [ -f "$src/channels50.safetensors" ] ||
    "$bin" prune "$src/last.safetensors" --channels 0.5 --out "$src/channels50.safetensors" > /dev/null
  if [ ! -s "$src/channels50.json" ]; then   # through a temporary file: never a half-written one
    "$bin" eval --model "$src/channels50.safetensors" --data "$data" --json > "$src/channels50.json.tmp"
    mv "$src/channels50.json.tmp" "$src/channels50.json"
  fi
  for r in "${ways[@]}"; do
    tune "recipes/compress/channels-$r.yaml" "runs/compress-channels50-$r/seed-$s" \
      "$src/channels50.safetensors"
  done
done

. "$(dirname "$0")/figures.sh"
# the sparsity of the last epoch in DIR/metrics.jsonl, as a percentage (0 without pruning)
sparsity() {
  tail -n 1 "$1/metrics.jsonl" | awk '{ s = 0; if (match($0, /"sparsity": *[0-9.eE+-]+/)) {
    v = substr($0, RSTART, RLENGTH); sub(/.*: */, "", v); s = v } printf "%.1f%%", 100 * s }'
}
# the parameters of a checkpoint: the element counts of its tensors but the pruning masks
params() {
  "$bin" inspect "$1" | awk '/^  [^ ].*: F32 \(/ { s = $0; sub(/.*F32 \(/, "", s); sub(/\).*/, "", s)
    if ($1 ~ /\.mask:$/) next; n = 1; k = split(s, d, ", "); for (i = 1; i <= k; i++) n *= d[i]; t += n }
    END { print t }'
}
bytes() { stat -c %s "$1"; }
row() { # NAME RUN_FOLDER (seed-N below it)
  local acc
  acc=$(for s in "${seeds[@]}"; do final_acc "$2/seed-$s"; done | mean_std)
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$acc" "$(sparsity "$2/seed-1")" \
    "$(params "$2/seed-1/last.safetensors")" "$(bytes "$2/seed-1/last.safetensors")"
}
name_of() { case $1 in labels) echo "labels only" ;; mixed) echo "KD's control" ;; kd) echo KD ;; esac; }
printf '| student | test accuracy | zero weights | parameters | bytes |\n|---|---|---|---|---|\n'
row "float, labels only" runs/int8-labels-float
row "float, KD (the start of every row below)" runs/int8-kd-float
for p in "${sparsities[@]}"; do
  for r in "${ways[@]}"; do
    row "$p% of the weights pruned, $(name_of "$r")" "runs/compress-prune$p-$r"
  done
done
acc=$(for s in "${seeds[@]}"; do
        sed -E 's/.*"accuracy":([0-9.eE+-]+).*/\1/' "runs/int8-kd-float/seed-$s/channels50.json"; done |
      mean_std)
f=runs/int8-kd-float/seed-1/channels50.safetensors
printf '| half the channels removed, not fine-tuned | %s | 0.0%% | %s | %s |\n' "$acc" \
  "$(params "$f")" "$(bytes "$f")"
for r in "${ways[@]}"; do
  row "half the channels removed, $(name_of "$r")" "runs/compress-channels50-$r"
done

# the runs' report page: curves, comparison, confusion matrices, mistakes (xdistill report)
mkdir -p runs/reports
dirs=(runs/int8-labels-float runs/int8-kd-float)
for p in "${sparsities[@]}"; do for r in "${ways[@]}"; do dirs+=("runs/compress-prune$p-$r"); done; done
for r in "${ways[@]}"; do dirs+=("runs/compress-channels50-$r"); done
"$bin" report "${dirs[@]}" --out runs/reports/compress.html --title "xdistill: the pruning table" >&2
