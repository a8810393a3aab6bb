#!/usr/bin/env bash
# The emoji rows of the README's compression results: the emoji image student (5% of the image
# labels; recipes/emoji/image-kd.yaml, taught by the text teacher, and image-5pct.yaml, labels
# only) over seeds 1, 2, 3 at one thread: float (the runs of recipes/emoji/table.sh, trained here
# when missing); post-training int8 of the KD float run (xdistill quantize --calib, 512 training
# images); quantisation-aware training (--set quantize.ema=0.01) with and without KD, and its
# int8 file; 50%, 80% and 90% of the weights pruned by magnitude while it learns
# (emoji-prune80-kd.yaml, emoji-prune80-labels.yaml, with prune.sparsity set for 50% and 90%);
# half the channels of the KD float run removed, as it is and fine-tuned for 10 epochs with KD
# (emoji-channels-kd.yaml) or on the labels alone (emoji-channels-labels.yaml). Every figure is of a run's LAST checkpoint (no model
# selection). Prints test accuracy mean +- std over the seeds, the bytes of seed 1's file, and
# writes the runs' report page, runs/reports/compress-emoji.html. Finished runs are not trained
# again; the text teacher must be there (recipes/emoji/table.sh, or make demo's recipe).
# Usage: recipes/compress/emoji-table.sh [build/xdistill]
set -euo pipefail
bin=${1:-build/xdistill}
seeds=(1 2 3)
data=data/emoji/dataset.xds
[ -f "$data" ] || "$bin" prepare emoji --out data/emoji
if [ ! -f runs/emoji-text-teacher/summary.json ]; then
  nice -n 10 "$bin" train recipes/emoji/text-teacher.yaml --seeds 3 --set train.threads=1 --quiet
fi
# train RECIPE DIR [--set ...]: its 3 seeds into DIR unless there
train() {
  local recipe=$1 dir=$2
  shift 2
  [ -f "$dir/summary.json" ] && grep -q '"seeds": 3' "$dir/summary.json" ||
    nice -n 10 "$bin" train "$recipe" --seeds 3 --out "$dir" --set train.threads=1 "$@" --quiet
}
train recipes/emoji/image-5pct.yaml runs/emoji-image-5pct
train recipes/emoji/image-kd.yaml runs/emoji-image-kd
train recipes/emoji/image-5pct.yaml runs/compress-emoji-qat-labels --set quantize.ema=0.01 \
  --set name=emoji-qat-labels
train recipes/emoji/image-kd.yaml runs/compress-emoji-qat-kd --set quantize.ema=0.01 \
  --set name=emoji-qat-kd
for p in 50 80 90; do
  for r in labels kd; do
    train recipes/compress/emoji-prune80-$r.yaml runs/compress-emoji-prune$p-$r \
      --set prune.sparsity=0.$p --set name=emoji-prune$p-$r
  done
done
for s in "${seeds[@]}"; do
  src=runs/emoji-image-kd/seed-$s
  [ -f "$src/ptq-int8.safetensors" ] ||
    "$bin" quantize "$src/last.safetensors" --calib "$data" --out "$src/ptq-int8.safetensors" >&2
  [ -f "$src/channels50.safetensors" ] ||
    "$bin" prune "$src/last.safetensors" --channels 0.5 --out "$src/channels50.safetensors" > /dev/null
  for r in labels kd; do
    dir=runs/compress-emoji-channels50-$r/seed-$s
    [ -f "$dir/summary.json" ] ||
      nice -n 10 "$bin" train recipes/compress/emoji-channels-$r.yaml --seed "$s" --out "$dir" \
        --set "init=$src/channels50.safetensors" --set train.threads=1 --quiet
  done
  for r in labels kd; do
    q=runs/compress-emoji-qat-$r/seed-$s
    [ -f "$q/int8.safetensors" ] || "$bin" quantize "$q/last.safetensors" --out "$q/int8.safetensors" >&2
  done
done

. "$(dirname "$0")/figures.sh"
# accuracy of a checkpoint on the test split (xdistill eval --json)
eval_acc() { "$bin" eval --model "$1" --data "$data" --json | sed -E 's/.*"accuracy":([0-9.eE+-]+).*/\1/'; }
row() { # NAME RUN_FOLDER [FILE in seed-N, default last.safetensors]
  local file=${3:-last.safetensors} acc
  if [ "$file" = last.safetensors ]; then
    acc=$(for s in "${seeds[@]}"; do final_acc "$2/seed-$s"; done | mean_std)
  else
    acc=$(for s in "${seeds[@]}"; do eval_acc "$2/seed-$s/$file"; done | mean_std)
  fi
  printf '| %s | %s | %s |\n' "$1" "$acc" "$(stat -c %s "$2/seed-1/$file")"
}
printf '| emoji image student | test accuracy | bytes |\n|---|---|---|\n'
row "float, labels only" runs/emoji-image-5pct
row "float, KD" runs/emoji-image-kd
row "PTQ int8 of float KD" runs/emoji-image-kd ptq-int8.safetensors
row "QAT, labels only (int8)" runs/compress-emoji-qat-labels int8.safetensors
row "QAT with KD (int8)" runs/compress-emoji-qat-kd int8.safetensors
for p in 50 80 90; do
  row "$p% of the weights pruned while it learns, labels only" runs/compress-emoji-prune$p-labels
  row "$p% of the weights pruned while it learns, KD" runs/compress-emoji-prune$p-kd
done
# the channel-pruned start as it is, before any fine-tuning
printf '| half the channels removed (float KD), not fine-tuned | %s | %s |\n' \
  "$(for s in "${seeds[@]}"; do eval_acc "runs/emoji-image-kd/seed-$s/channels50.safetensors"; done | mean_std)" \
  "$(stat -c %s runs/emoji-image-kd/seed-1/channels50.safetensors)"
row "half the channels removed (float KD), fine-tuned on labels only" runs/compress-emoji-channels50-labels
row "half the channels removed (float KD), fine-tuned with KD" runs/compress-emoji-channels50-kd

mkdir -p runs/reports
"$bin" report runs/emoji-image-5pct runs/emoji-image-kd runs/compress-emoji-qat-labels \
  runs/compress-emoji-qat-kd runs/compress-emoji-prune{50,80,90}-{labels,kd} \
  runs/compress-emoji-channels50-{labels,kd} --out runs/reports/compress-emoji.html \
  --title "xdistill: compressing the emoji image student" >&2
