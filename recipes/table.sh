#!/usr/bin/env bash
# Runs rows of a results table over 3 seeds and prints the table (mean +- standard deviation of
# each run's final test accuracy and balanced accuracy, or mIoU and pixel accuracy for segment
# runs) from the runs' summary.json and metrics.jsonl files. A row whose summary already holds 3
# seeds is not run again. Rows run in the order given, so teachers come before their students.
# Usage: recipes/table.sh SET BIN ROW... [-- TRAIN-ARGS...]
#   SET   a folder of recipes/ (fashion, emoji, scenes)     BIN  the xdistill binary
#   ROW   a recipe of recipes/SET without .yaml     TRAIN-ARGS  passed to every `xdistill train`
set -euo pipefail
set_=$1 bin=$2
shift 2
rows=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do rows+=("$1"); shift; done
[ $# -gt 0 ] && shift
for r in "${rows[@]}"; do
  name=$(sed -n 's/^name: //p' "recipes/$set_/$r.yaml")
  if [ -f "runs/$name/summary.json" ] && grep -q '"seeds": 3' "runs/$name/summary.json"; then
    continue   # already there
  fi
  "$bin" train "recipes/$set_/$r.yaml" --seeds 3 --quiet "$@"
done

# segment runs report mIoU and pixel accuracy, classify runs accuracy
first=$(sed -n 's/^name: //p' "recipes/$set_/${rows[0]}.yaml")
if grep -q '"final_test_miou"' "runs/$first/summary.json"; then
  printf '| row | recipe | test mIoU (3 seeds) | pixel accuracy |\n|---|---|---|---|\n'
else
  printf '| row | recipe | test accuracy (3 seeds) | balanced accuracy |\n|---|---|---|---|\n'
fi

# mean +- sample standard deviation of the last test_bacc of each seed's metrics.jsonl (the
# balanced accuracy at the final epoch), "n/a" when the runs did not record it
final_bacc() {
  local f last out=()
  for f in "runs/$1"/seed-*/metrics.jsonl; do
    last=$(grep -o '"test_bacc": *[0-9.eE+-]*' "$f" | tail -n 1 | sed 's/.*: *//')
    [ -n "$last" ] && out+=("$last")
  done
  [ ${#out[@]} -gt 0 ] || { echo n/a; return; }
  printf '%s\n' "${out[@]}" | awk '{ v[NR] = $1; s += $1 }
    END { m = s / NR; for (i = 1; i <= NR; i++) q += (v[i] - m) ^ 2
          printf "%.2f +- %.2f%%", 100 * m, (NR > 1 ? 100 * sqrt(q / (NR - 1)) : 0) }'
}
for r in "${rows[@]}"; do
  name=$(sed -n 's/^name: //p' "recipes/$set_/$r.yaml")
  awk -v r="$r" -v s="$set_" -v bacc="$(final_bacc "$name")" '
    /"final_test_acc": \{/ { k = "a" }
    /"final_test_miou": \{/ { k = "m" }
    /"final_test_pixel_acc": \{/ { k = "p" }
    /"best_val_(acc|miou)": \{/ { k = "" }
    k != "" && /"mean"/ { gsub(/[,]/, "", $2); mean[k] = $2 }
    k != "" && /"std"/ { gsub(/[,]/, "", $2); sd[k] = $2; k = "" }
    END {
      if ("m" in mean)
        printf "| %s | recipes/%s/%s.yaml | %.2f +- %.2f%% | %.2f +- %.2f%% |\n", r, s, r,
               100 * mean["m"], 100 * sd["m"], 100 * mean["p"], 100 * sd["p"]
      else
        printf "| %s | recipes/%s/%s.yaml | %.2f +- %.2f%% | %s |\n", r, s, r, 100 * mean["a"],
               100 * sd["a"], bacc
    }
  ' "runs/$name/summary.json"
done

# the runs' report page: curves, comparison, confusion matrices, mistakes (xdistill report)
dirs=()
for r in "${rows[@]}"; do dirs+=("runs/$(sed -n 's/^name: //p' "recipes/$set_/$r.yaml")"); done
mkdir -p runs/reports
"$bin" report "${dirs[@]}" --out "runs/reports/$set_.html" --title "xdistill: the $set_ table" >&2
