#!/usr/bin/env bash
# make demo: text -> vision distillation end to end on real data. Prepares the emoji set (images
# and their names in 28 languages, fetched with npm pack on first use), trains a text teacher on
# the multilingual texts, then the same small image CNN three ways: with 5% of the image labels,
# with those 5% plus the text teacher reading each image's texts, and with every label. Prints the
# comparison; the students are tested on held-out emoji, from the image alone.
#
# Each training is one stage of the whole run: `train --progress-span` draws one bar (a plain line
# every few seconds when the output is not a terminal) whose ETA covers every stage left. The
# shares are the stages' measured times on two cores, so the ETA is right from the start.
set -euo pipefail
bin=${1:-build/xdistill}
out=${DEMO_OUT:-runs/demo}
data=data/emoji/dataset.xds
start=$(date +%s)

if [ ! -f "$data" ]; then
  echo "demo: preparing the emoji set (first run only: two npm packages are fetched into cache/)"
  "$bin" prepare emoji --out data/emoji
fi
# the runs need the full set (28 languages), not one prepared with --langs
langs=$("$bin" inspect "$data" | sed -n 's/^ *languages = //p' | tr -d '"')
if [ "$(printf '%s' "$langs" | tr -cd , | wc -c)" -lt 27 ]; then
  echo "demo: $data holds the languages '$langs', the demo needs all 28;" \
       "run: $bin prepare emoji --out data/emoji --force" >&2
  exit 1
fi
mkdir -p "$out"

# name, share of the whole run's time (cumulative end), what it is, extra options
stages=(
  "text-teacher 0.02 text teacher: hashed n-grams -> embedding bag -> MLP, all 28 languages"
  "image-5pct 0.35 image student, 5% of the image labels"
  "image-kd 0.67 image student, 5% of the labels + the text teacher on every image's texts"
  "image-full 1.00 image student, every image label"
)
t0=$(date +%s) from=0 k=0
for s in "${stages[@]}"; do
  read -r name to what <<< "$s"
  k=$((k + 1))
  echo "demo: stage $k/${#stages[@]}: $what"
  extra=()
  [ "$name" = image-kd ] && extra=(--set teachers.0.checkpoint="$out/text-teacher/best.safetensors")
  "$bin" train "recipes/emoji/$name.yaml" --out "$out/$name" --progress-span "$from,$to,$t0" \
      "${extra[@]}"
  from=$to
done

acc() { awk -F': ' '/"final_test_acc"/ { sub(/,$/, "", $2); print 100 * $2 }' "$1/summary.json"; }
t=$(acc "$out/text-teacher"); lo=$(acc "$out/image-5pct"); kd=$(acc "$out/image-kd")
full=$(acc "$out/image-full")
printf '\n%-58s %s\n' "run (test: held-out emoji)" "accuracy"
printf '%-58s %6.2f%%\n' "text teacher (texts, every language)" "$t"
printf '%-58s %6.2f%%\n' "image student, 5% labels" "$lo"
printf '%-58s %6.2f%%\n' "image student, 5% labels + text teacher (distilled)" "$kd"
printf '%-58s %6.2f%%\n' "image student, 100% labels" "$full"
awk -v kd="$kd" -v full="$full" -v lo="$lo" 'BEGIN {
  closed = (full > lo) ? 100 * (kd - lo) / (full - lo) : 0
  printf "distilled student: %.1f%% of the 100%%-label accuracy; it closes %.0f%% of the gap\n",
         100 * kd / full, closed }'
echo "demo: $(( $(date +%s) - start )) s; runs in $out"
