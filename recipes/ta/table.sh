#!/usr/bin/env bash
# Reproduces the teacher-assistant table of the README: the pipeline recipes/ta/chain.yaml over
# 3 seeds at one thread (steps already done are skipped), then mean +- standard deviation of
# each step's final test accuracy from runs/ta-chain/summary.json, and the runs' report page,
# runs/reports/ta.html.
# Usage: recipes/ta/table.sh [build/xdistill]
set -euo pipefail
bin=${1:-build/xdistill}
[ -f data/fashion-mnist/dataset.xds ] || "$bin" prepare fashion-mnist --out data/fashion-mnist
"$bin" run recipes/ta/chain.yaml --seeds 3 --set train.threads=1 --quiet

printf '| step | recipe | test accuracy (3 seeds) |\n|---|---|---|\n'
awk '
  /^      "name": / { gsub(/[",]/, "", $2); name = $2 }
  /^      "final_test_acc": \{/ { k = 1 }
  k && /"mean"/ { gsub(/,/, "", $2); mean = $2 }
  k && /"std"/ { gsub(/,/, "", $2); sd = $2; k = 0 }
  /^      "recipe": / {
    gsub(/[",]/, "", $2)
    printf "| %s | %s | %.2f +- %.2f%% |\n", name, $2, 100 * mean, 100 * sd
  }
' runs/ta-chain/summary.json

# the runs' report page: every step's curves, comparison, confusion matrices, mistakes
mkdir -p runs/reports
"$bin" report runs/ta-chain --out runs/reports/ta.html --title "xdistill: the teacher-assistant table" >&2
