#!/usr/bin/env bash
# Reproduces the Fashion-MNIST results table of the README: every row over 3 seeds, then prints
# the table (mean +- standard deviation of the final test accuracy) from the runs' summary.json.
# Usage: recipes/fashion/table.sh [build/xdistill]     (about 15 minutes on 2 cores)
set -euo pipefail
bin=${1:-build/xdistill}
[ -f data/fashion-mnist/dataset.xds ] || "$bin" prepare fashion-mnist --out data/fashion-mnist

rows=(teacher student student-kd student-feature student-hint lowlabel-ce lowlabel-kd)
for r in "${rows[@]}"; do
  name=$(sed -n 's/^name: //p' "recipes/fashion/$r.yaml")
  if [ -f "runs/$name/summary.json" ] && grep -q '"seeds": 3' "runs/$name/summary.json"; then
    continue   # already there
  fi
  "$bin" train "recipes/fashion/$r.yaml" --seeds 3 --quiet
done

printf '| row | recipe | test accuracy (3 seeds) |\n|---|---|---|\n'
for r in "${rows[@]}"; do
  name=$(sed -n 's/^name: //p' "recipes/fashion/$r.yaml")
  awk -v r="$r" '
    /"final_test_acc": \{/ { f = 1 }
    f && /"mean"/ { gsub(/[,]/, "", $2); m = $2 }
    f && /"std"/ { gsub(/[,]/, "", $2); s = $2; f = 0 }
    END { printf "| %s | recipes/fashion/%s.yaml | %.2f +- %.2f%% |\n", r, r, 100 * m, 100 * s }
  ' "runs/$name/summary.json"
done
