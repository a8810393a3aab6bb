#!/usr/bin/env bash
# The table of the README's "Results: pruned students": the zoo benchmark's student (recipes/zoo,
# 10% of the labels) over seeds 1, 2, 3 at one thread, float (labels only, and KD from the
# Fashion-MNIST CNN: the runs of recipes/zoo/int8-table.sh, trained here when missing), pruned by
# magnitude to 50, 80 and 90% of its weights during training (recipes/compress/prune80-*.yaml
# with --set prune.sparsity), and channel-pruned: half of the filters of each conv2d of the KD
# float student removed by L1 norm (`xdistill prune --channels 0.5`), scored as it is and after
# 10 epochs of fine-tuning from it (channels-kd.yaml and channels-labels.yaml, `init:`). Every
# figure is of a run's LAST checkpoint (no model selection). Prints test accuracy mean +- std
# over the seeds, the share of zero weights, the parameters and the bytes of seed 1's file, and
# writes the runs' report page, runs/reports/compress.html. Finished runs are not trained again.
# Usage: recipes/compress/table.sh [build/xdistill]
set -euo pipefail
bin=${1:-build/xdistill}
seeds=(1 2 3)
sparsities=(50 80 90)
data=data/fashion-mnist/dataset.xds
[ -f "$data" ] || "$bin" prepare fashion-mnist --out data/fashion-mnist
if [ ! -f runs/fashion-teacher/seed-1/summary.json ]; then
  nice -n 10 "$bin" train recipes/fashion/teacher.yaml --seed 1 --out runs/fashion-teacher/seed-1 \
    --set train.threads=1 --quiet
fi
done_seeds() { [ -f "$1/summary.json" ] && grep -q '"seeds": 3' "$1/summary.json"; }
# train RECIPE DIR [--set ...]: its 3 seeds into DIR unless there
train() {
  local recipe=$1 dir=$2
  shift 2
  done_seeds "$dir" ||
    nice -n 10 "$bin" train "$recipe" --seeds 3 --out "$dir" --set train.threads=1 "$@" --quiet
}
train recipes/zoo/labels.yaml runs/int8-labels-float
train recipes/zoo/kd.yaml runs/int8-kd-float
for p in "${sparsities[@]}"; do
  for r in labels kd; do
    train "recipes/compress/prune80-$r.yaml" "runs/compress-prune$p-$r" --set "name=prune$p-$r" \
      --set "prune.sparsity=0.$p"
  done
done
for s in "${seeds[@]}"; do
  src=runs/int8-kd-float/seed-$s
  [ -f "$src/channels50.safetensors" ] ||
    "$bin" prune "$src/last.safetensors" --channels 0.5 --out "$src/channels50.safetensors" > /dev/null
  [ -f "$src/channels50.json" ] ||
    "$bin" eval --model "$src/channels50.safetensors" --data "$data" --json > "$src/channels50.json"
  for r in labels kd; do
    dir=runs/compress-channels50-$r/seed-$s
    [ -f "$dir/summary.json" ] ||
      nice -n 10 "$bin" train "recipes/compress/channels-$r.yaml" --seed "$s" --out "$dir" \
        --set "init=$src/channels50.safetensors" --set train.threads=1 --quiet
  done
done

# "mean +- std" in points of the values (fractions) on standard input, sample standard deviation
mean_std() {
  awk '{ v[NR] = $1; s += $1 } END { m = s / NR; for (i = 1; i <= NR; i++) q += (v[i] - m) ^ 2
                                      printf "%.2f +- %.2f%%", 100 * m, 100 * sqrt(q / (NR - 1)) }'
}
final_acc() { sed -nE 's/.*"final_test_acc": ([0-9.eE+-]+).*/\1/p' "$1/summary.json"; }
# the sparsity of the last epoch in DIR/metrics.jsonl, as a percentage (0 without pruning)
sparsity() {
  tail -n 1 "$1/metrics.jsonl" | awk '{ s = 0; if (match($0, /"sparsity": *[0-9.eE+-]+/)) {
    v = substr($0, RSTART, RLENGTH); sub(/.*: */, "", v); s = v } printf "%.1f%%", 100 * s }'
}
# the parameters of a checkpoint: the sum of its tensors' element counts (xdistill inspect)
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
printf '| student | test accuracy | zero weights | parameters | bytes |\n|---|---|---|---|---|\n'
row "float, labels only" runs/int8-labels-float
row "float, KD" runs/int8-kd-float
for p in "${sparsities[@]}"; do
  row "$p% of the weights pruned, labels only" "runs/compress-prune$p-labels"
  row "$p% of the weights pruned, KD" "runs/compress-prune$p-kd"
done
acc=$(for s in "${seeds[@]}"; do
        sed -E 's/.*"accuracy":([0-9.eE+-]+).*/\1/' "runs/int8-kd-float/seed-$s/channels50.json"; done |
      mean_std)
f=runs/int8-kd-float/seed-1/channels50.safetensors
printf '| half the channels removed (KD float), not fine-tuned | %s | 0.0%% | %s | %s |\n' "$acc" \
  "$(params "$f")" "$(bytes "$f")"
row "half the channels removed, fine-tuned on labels" runs/compress-channels50-labels
row "half the channels removed, fine-tuned with KD" runs/compress-channels50-kd

# the runs' report page: curves, comparison, confusion matrices, mistakes (xdistill report)
mkdir -p runs/reports
dirs=(runs/int8-labels-float runs/int8-kd-float)
for p in "${sparsities[@]}"; do dirs+=("runs/compress-prune$p-labels" "runs/compress-prune$p-kd"); done
dirs+=(runs/compress-channels50-labels runs/compress-channels50-kd)
"$bin" report "${dirs[@]}" --out runs/reports/compress.html --title "xdistill: the pruning table" >&2
