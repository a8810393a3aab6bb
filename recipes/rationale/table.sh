#!/usr/bin/env bash
# The data-efficiency table of the README's "Results: distilling step by step": the emoji text
# student with 10%, 25%, 50% and 100% of the training labels, labels alone (label-only.yaml)
# against labels and rationales (step-by-step.yaml), 3 seeds each, then the table (test accuracy
# mean +- std over the seeds, and the decoder's rationale token accuracy on the test emoji) and
# a few rationales the 100% step-by-step student (seed 1) generates for held-out emoji, from
# their texts in other languages, and the runs' report page, runs/reports/rationale.html. Rows
# whose summary already holds 3 seeds are not run again.
# The data set (prepare emoji --rationales) is made when missing; XDISTILL_RATIONALE_DATA names
# another one.
# Usage: recipes/rationale/table.sh [build/xdistill [TRAIN-ARGS...]]
# e.g. recipes/rationale/table.sh build/xdistill --set train.threads=1
set -euo pipefail
bin=${1:-build/xdistill}
shift || true
data=${XDISTILL_RATIONALE_DATA:-data/emoji-rationale/dataset.xds}
[ -f "$data" ] || "$bin" prepare emoji --out "$(dirname "$data")" --rationales >&2
fracs=(10 25 50 100)
methods=(label-only step-by-step)
for f in "${fracs[@]}"; do
  for m in "${methods[@]}"; do
    name=rationale-$m-$f
    if [ -f "runs/$name/summary.json" ] && grep -q '"seeds": 3' "runs/$name/summary.json"; then
      continue   # already there
    fi
    nice -n 10 "$bin" train "recipes/rationale/$m.yaml" --seeds 3 --quiet --set "name=$name" \
      --set "data.path=$data" --set "data.label_fraction=$(awk -v f="$f" 'BEGIN { print f / 100 }')" \
      "$@" >&2
  done
done

# final test accuracy of a row: "MEAN STD" in percent
acc() {
  awk '/"final_test_acc": \{/ { k = 1 }
       k && /"mean"/ { gsub(/,/, "", $2); mean = $2 }
       k && /"std"/ { gsub(/,/, "", $2); sd = $2; k = 0 }
       END { printf "%.2f %.2f", 100 * mean, 100 * sd }' "runs/$1/summary.json"
}
# the last evaluation's rationale_acc of every seed: "MEAN STD" (sample std) in percent
rat_acc() {
  for s in runs/"$1"/seed-*/metrics.jsonl; do tail -n 1 "$s"; done |
    awk 'match($0, /"rationale_acc": *[0-9.eE+-]+/) {
           v = substr($0, RSTART, RLENGTH); sub(/.*: */, "", v); x[n++] = v }
         END { for (i = 0; i < n; i++) m += x[i] / n
               for (i = 0; i < n; i++) d += (x[i] - m) ^ 2
               sd = n > 1 ? 100 * sqrt(d / (n - 1)) : 0
               printf "%.2f %.2f", 100 * m, sd }'
}
printf '| labels | label-only | step-by-step | difference | rationale token accuracy |\n'
printf '|---|---|---|---|---|\n'
for f in "${fracs[@]}"; do
  read -r lm ls <<< "$(acc "rationale-label-only-$f")"
  read -r sm ss <<< "$(acc "rationale-step-by-step-$f")"
  read -r rm rs <<< "$(rat_acc "rationale-step-by-step-$f")"
  awk -v f="$f" -v lm="$lm" -v ls="$ls" -v sm="$sm" -v ss="$ss" -v rm="$rm" -v rs="$rs" \
    'BEGIN { printf "| %d%% | %.2f +- %.2f%% | %.2f +- %.2f%% | %+.2f | %.2f +- %.2f%% |\n",
             f, lm, ls, sm, ss, sm - lm, rm, rs }'
done

# a few held-out emoji: their text in one language each, the label and rationale predicted
run=runs/rationale-step-by-step-100/seed-1
picks=(0 120 240 360 480 600)
langs=(de ja ko fr es ru)
printf '\n| emoji | input | predicted group | generated rationale | reference rationale |\n'
printf '|---|---|---|---|---|\n'
for k in "${!picks[@]}"; do
  row=$("$bin" inspect "$data" --split test --all --json --text "${langs[$k]}" |
        node -e 'const j = JSON.parse(require("fs").readFileSync(0, "utf8"));
                 const r = j.rows[+process.argv[1]];
                 console.log([r.code, r["text." + process.argv[2]], r.rationale].join("\t"))' \
          "${picks[$k]}" "${langs[$k]}")
  IFS=$'\t' read -r code text ref <<< "$row"
  out=$(printf '%s\n' "$text" |
        "$bin" predict "$run/best.safetensors" --rationale "$run/best.rationale.safetensors" --top 1)
  node -e 'const o = JSON.parse(process.argv[1]);
           console.log(`| ${process.argv[2]} | ${process.argv[3]}: ${o.input} | ${o.top[0].label} | ` +
                       `${o.rationale} | ${process.argv[4]} |`)' "$out" "$code" "${langs[$k]}" "$ref"
done

# the runs' report page: curves, comparison, confusion matrices, mistakes (xdistill report)
mkdir -p runs/reports
dirs=()
for f in "${fracs[@]}"; do for m in "${methods[@]}"; do dirs+=("runs/rationale-$m-$f"); done; done
"$bin" report "${dirs[@]}" --out runs/reports/rationale.html \
  --title "xdistill: distilling step by step on emoji" >&2
