#!/usr/bin/env bash
# The comparison table of the README's "Results: the standard distillation methods on one
# benchmark": every row of recipes/zoo (labels only on batches of labelled images, labels only on
# the batches the methods see, KD, then each method next to CE) over 3
# seeds at one thread each, then the table (final test accuracy mean +- std; training seconds
# per epoch from the runs' metrics.jsonl, and what each row adds over labels only) and the report
# page runs/reports/zoo.html. Rows whose summary already holds 3 seeds are not run again; the
# teacher is trained first when runs/fashion-teacher/seed-1 has none.
# Usage: recipes/zoo/table.sh [build/xdistill]
set -euo pipefail
bin=${1:-build/xdistill}
rows=(labels labels-mixed kd dkd rkd sp pkt cc nst fsp vid crd ab ofd at)
[ -f data/fashion-mnist/dataset.xds ] || "$bin" prepare fashion-mnist --out data/fashion-mnist
if [ ! -f runs/fashion-teacher/seed-1/summary.json ]; then
  nice -n 10 "$bin" train recipes/fashion/teacher.yaml --seed 1 --out runs/fashion-teacher/seed-1 \
    --set train.threads=1 --quiet
fi
for r in "${rows[@]}"; do
  if [ -f "runs/zoo-$r/summary.json" ] && grep -q '"seeds": 3' "runs/zoo-$r/summary.json"; then
    continue   # already there
  fi
  nice -n 10 "$bin" train "recipes/zoo/$r.yaml" --seeds 3 --set train.threads=1 --quiet
done

# mean training seconds per epoch over every epoch of the 3 seeds
epoch_seconds() {
  cat runs/zoo-"$1"/seed-*/metrics.jsonl |
    awk 'match($0, /"seconds": *[0-9.eE+-]+/) {
           v = substr($0, RSTART, RLENGTH); sub(/.*: */, "", v); s += v; n++ }
         END { printf "%.2f", s / n }'
}
base=$(epoch_seconds labels)
printf '| row | test accuracy (3 seeds) | s/epoch | added s/epoch |\n|---|---|---|---|\n'
for r in "${rows[@]}"; do
  secs=$(epoch_seconds "$r")
  awk -v r="$r" -v secs="$secs" -v base="$base" '
    /"final_test_acc": \{/ { k = 1 }
    /"best_val_acc": \{/ { k = 0 }
    k && /"mean"/ { gsub(/,/, "", $2); mean = $2 }
    k && /"std"/ { gsub(/,/, "", $2); sd = $2; k = 0 }
    END { printf "| %s | %.2f +- %.2f%% | %.2f | %+.2f |\n", r, 100 * mean, 100 * sd, secs,
                 secs - base }
  ' "runs/zoo-$r/summary.json"
done

dirs=()
for r in "${rows[@]}"; do dirs+=("runs/zoo-$r"); done
mkdir -p runs/reports
"$bin" report "${dirs[@]}" --out runs/reports/zoo.html \
  --title "xdistill: the standard distillation methods on one benchmark" >&2
