#!/usr/bin/env bash
# The table of the README's "Results: int8 students": the zoo benchmark's student
# (recipes/zoo/labels.yaml, labels only, and kd.yaml, KD) over seeds 1, 2, 3 at one thread, each
# trained float and quantisation-aware (--set quantize.ema=0.01). Every figure is of a run's LAST
# checkpoint (no model selection, so the test split picks nothing): the float model, its
# post-training int8 form (xdistill quantize --calib, 8 batches of 64 training images), the QAT
# run fake-quantised, and its int8 file. Prints test accuracy mean +- std over the seeds, the
# test answers int8 changes against the float (PTQ) or fake-quant (QAT) model (mean over seeds),
# then the int8 rows of `xdistill bench infer` at one thread, and writes the runs' report page,
# runs/reports/int8.html (each recipe's float and QAT runs are rows of their own, named after
# their folders). Runs whose folder already holds 3
# seeds are not trained again; the teacher is trained first when runs/fashion-teacher/seed-1 has
# none. TEACHER_CACHE=false runs the teacher at every KD step instead of using (or writing) the
# teacher-output cache next to the data set.
# Usage: recipes/zoo/int8-table.sh [build/xdistill]
set -euo pipefail
bin=${1:-build/xdistill}
rows=(labels kd)
modes=(float qat)
seeds=(1 2 3)
[ -f data/fashion-mnist/dataset.xds ] || "$bin" prepare fashion-mnist --out data/fashion-mnist
if [ ! -f runs/fashion-teacher/seed-1/summary.json ]; then
  nice -n 10 "$bin" train recipes/fashion/teacher.yaml --seed 1 --out runs/fashion-teacher/seed-1 \
    --set train.threads=1 --quiet
fi
for r in "${rows[@]}"; do
  for m in "${modes[@]}"; do
    dir=runs/int8-$r-$m
    if [ -f "$dir/summary.json" ] && grep -q '"seeds": 3' "$dir/summary.json"; then
      continue   # already there
    fi
    set_args=(--set train.threads=1)
    [ "$m" = qat ] && set_args+=(--set quantize.ema=0.01)
    [ "$r" = kd ] && set_args+=(--set "teachers.0.cache=${TEACHER_CACHE:-true}")
    nice -n 10 "$bin" train "recipes/zoo/$r.yaml" --seeds 3 --out "$dir" "${set_args[@]}" --quiet
  done
done

data=data/fashion-mnist/dataset.xds
# eval NAME MODEL DIR: DIR/NAME.json (eval --json) and DIR/NAME.jsonl (one prediction a line)
evaluate() {
  "$bin" eval --model "$2" --data "$data" --json --predictions "$3/$1.jsonl" > "$3/$1.json"
}
accuracy() { sed -E 's/.*"accuracy":([0-9.eE+-]+).*/\1/' "$1"; }
# test answers (the predicted class) that differ between two prediction files
changed() {
  paste -d '\t' <(sed -E 's/.*"prediction":([0-9]+).*/\1/' "$1") \
    <(sed -E 's/.*"prediction":([0-9]+).*/\1/' "$2") | awk -F '\t' '$1 != $2 { n++ } END { print n + 0 }'
}
for r in "${rows[@]}"; do
  for s in "${seeds[@]}"; do
    f=runs/int8-$r-float/seed-$s q=runs/int8-$r-qat/seed-$s
    [ -f "$f/ptq-int8.safetensors" ] ||
      "$bin" quantize "$f/last.safetensors" --calib "$data" --out "$f/ptq-int8.safetensors" >&2
    [ -f "$q/int8.safetensors" ] || "$bin" quantize "$q/last.safetensors" --out "$q/int8.safetensors" >&2
    evaluate float "$f/last.safetensors" "$f"
    evaluate ptq-int8 "$f/ptq-int8.safetensors" "$f"
    evaluate fakequant "$q/last.safetensors" "$q"
    evaluate int8 "$q/int8.safetensors" "$q"
  done
done

# "mean +- std" in points of the values (fractions) on standard input, sample standard deviation
mean_std() {
  awk '{ v[NR] = $1; s += $1 } END { m = s / NR; for (i = 1; i <= NR; i++) q += (v[i] - m) ^ 2
                                      printf "%.2f +- %.2f%%", 100 * m, 100 * sqrt(q / (NR - 1)) }'
}
mean_of() { awk '{ s += $1 } END { printf "%.0f", s / NR }'; }
printf '| student | float | PTQ int8 | QAT (fake-quant) | QAT int8 | answers PTQ changes | answers QAT int8 changes |\n'
printf '|---|---|---|---|---|---|---|\n'
for r in "${rows[@]}"; do
  cells=()
  for pair in float:float float:ptq-int8 qat:fakequant qat:int8; do
    cells+=("$(for s in "${seeds[@]}"; do
                 accuracy "runs/int8-$r-${pair%%:*}/seed-$s/${pair#*:}.json"; done | mean_std)")
  done
  ptq=() qat=()
  for s in "${seeds[@]}"; do
    f=runs/int8-$r-float/seed-$s q=runs/int8-$r-qat/seed-$s
    ptq+=("$(changed "$f/float.jsonl" "$f/ptq-int8.jsonl")")
    qat+=("$(changed "$q/fakequant.jsonl" "$q/int8.jsonl")")
  done
  printf '| %s | %s | %s | %s | %s | %s (%s) | %s (%s) |\n' "$r" "${cells[@]}" \
    "$(printf '%s\n' "${ptq[@]}" | mean_of)" "$(IFS=/; echo "${ptq[*]}")" \
    "$(printf '%s\n' "${qat[@]}" | mean_of)" "$(IFS=/; echo "${qat[*]}")"
done

# the runs' report page: curves, comparison, confusion matrices, mistakes (xdistill report)
mkdir -p runs/reports
dirs=()
for r in "${rows[@]}"; do for m in "${modes[@]}"; do dirs+=("runs/int8-$r-$m"); done; done
"$bin" report "${dirs[@]}" --out runs/reports/int8.html --title "xdistill: the int8 table" >&2

# the int8 rows of the infer suite (float against int8 images/s at one thread)
echo
nice -n 10 "$bin" bench infer --threads 1
