#!/usr/bin/env bash
# Reproduces the self-distillation table of the README: the three recipes of recipes/byot over 3
# seeds at one thread (a recipe whose summary already holds 3 seeds is not run again), the forward
# time per image at each exit (`xdistill bench exits` on the first BYOT seed's checkpoint, one
# thread), then per exit the mean +- standard deviation of the final test accuracy with and
# without self-distillation, and the runs' report page.
# Usage: recipes/byot/table.sh [build/xdistill]
set -euo pipefail
bin=${1:-build/xdistill}
[ -f data/fashion-mnist/dataset.xds ] || "$bin" prepare fashion-mnist --out data/fashion-mnist
for r in exits-ce byot byot-kd9; do
  name=$(sed -n 's/^name: //p' "recipes/byot/$r.yaml")
  if [ -f "runs/$name/summary.json" ] && grep -q '"seeds": 3' "runs/$name/summary.json"; then
    continue   # already there
  fi
  "$bin" train "recipes/byot/$r.yaml" --seeds 3 --set train.threads=1 --quiet
done
mkdir -p runs/reports
"$bin" bench exits --threads 1 --seconds 1 --json --model runs/byot/seed-1/best.safetensors \
  > runs/reports/byot-bench.jsonl

# "EXIT MEAN STD" of each exit's final test accuracy, from a --seeds summary.json
exits() {
  awk '
    /^  "exits": \{/ { on = 1; next }
    on && /^  [}]/ { on = 0 }
    on && /^    "[^"]+": \{/ { x = $1; gsub(/[":]/, "", x) }
    on && /"final_test_acc": \{/ { k = 1 }
    on && k && /"mean"/ { gsub(/,/, "", $2); m = $2 }
    on && k && /"std"/ { gsub(/,/, "", $2); print x, m, $2; k = 0 }
  ' "$1"
}
# "EXIT BATCH CPU-US WALL-US" per image at one thread, from the bench's JSON lines
times() {
  sed -n 's/.*"exit":"\([^"]*\)".*"batch":\([0-9]*\),"us_per_image":\([0-9.]*\).*"cpu_us_per_image":\([0-9.]*\).*/\1 \2 \4 \3/p' \
    runs/reports/byot-bench.jsonl | sed 's/^ /(whole) /'
}
exits runs/byot-exits-ce/summary.json > runs/reports/byot-ce.txt
exits runs/byot/summary.json > runs/reports/byot-sd.txt
exits runs/byot-kd9/summary.json > runs/reports/byot-kd9.txt
times > runs/reports/byot-times.txt
printf '| exit | CE at every exit | BYOT | difference | BYOT, KD x9 | difference | CPU time per image, batch 1 / 64 |\n'
printf '|---|---|---|---|---|---|---|\n'
awk '
  FILENAME ~ /times/ { t[$1 " " $2] = $3; next }
  FILENAME ~ /-ce/ { m[0, $1] = $2; s[0, $1] = $3; order[++n] = $1; next }
  FILENAME ~ /-sd/ { m[1, $1] = $2; s[1, $1] = $3; next }
  { m[2, $1] = $2; s[2, $1] = $3 }
  END {
    for (i = 1; i <= n; i++) {
      x = order[i]
      printf "| %s | %.2f +- %.2f%% |", x, 100 * m[0, x], 100 * s[0, x]
      for (k = 1; k <= 2; k++)
        printf " %.2f +- %.2f%% | %+.2f |", 100 * m[k, x], 100 * s[k, x], 100 * (m[k, x] - m[0, x])
      printf " %.0f / %.0f us |\n", t[x " 1"], t[x " 64"]
    }
    printf "| whole model (every exit) | | | | | | %.0f / %.0f us |\n", t["(whole) 1"], t["(whole) 64"]
  }
' runs/reports/byot-times.txt runs/reports/byot-ce.txt runs/reports/byot-sd.txt \
  runs/reports/byot-kd9.txt

"$bin" report runs/byot-exits-ce runs/byot runs/byot-kd9 --out runs/reports/byot.html \
  --title "xdistill: self-distillation with early exits" >&2
