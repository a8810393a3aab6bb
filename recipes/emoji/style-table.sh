#!/usr/bin/env bash
# Reproduces the style-shift table of the README: image students trained on Google's emoji (5% of
# the labels; + the text teacher; + contrastive; every label) scored on the held-out emoji in
# Google's rendering and in Apple's, Facebook's and Twitter's, which they never see; then the
# text-taught student adapted without labels to Apple's rendering (image-kd-adapt) and one
# trained on three renderings with Google's labels only (image-kd-styles). Every row over 3 seeds,
# each seed's last checkpoint (the final epoch, as the other tables) scored with `xdistill eval`
# on each rendering's test split: accuracy / balanced accuracy, mean +- standard deviation.
# Prepares the data sets it lacks under DATA (default data): emoji, emoji-STYLE,
# emoji-google-apple, emoji-google-facebook-twitter. A row whose last seed has finished is not run again.
# Usage: [DATA=data] recipes/emoji/style-table.sh [build/xdistill [TRAIN-ARGS...]]
set -euo pipefail
bin=${1:-build/xdistill}
shift || true
data=${DATA:-data}
styles=(google apple facebook twitter)
setof() { [ "$1" = google ] && echo emoji || echo "emoji-$1"; }

prep() { # FOLDER PREPARE-ARGS...
  [ -f "$data/$1/dataset.xds" ] || "$bin" prepare emoji --out "$data/$1" "${@:2}" >&2
}
prep emoji
for s in "${styles[@]:1}"; do prep "emoji-$s" --style "$s"; done
prep emoji-google-apple --styles google,apple --labelled-styles google
prep emoji-google-facebook-twitter --styles google,facebook,twitter --labelled-styles google

name() { sed -n 's/^name: //p' "recipes/emoji/$1.yaml"; }
train() { # ROW SET SEEDS [TRAIN-ARGS...]
  local row=$1 set=$2 seeds=$3 n
  shift 3
  n=$(name "$row")
  [ -f "runs/$n/seed-$seeds/summary.json" ] && return # seeds run one after another
  "$bin" train "recipes/emoji/$row.yaml" --seeds "$seeds" --quiet \
    --set "data.path=$data/$set/dataset.xds" "$@"
}
train text-teacher emoji 1 "$@"
rows=(image-5pct image-kd image-contrastive image-full)
for r in "${rows[@]}"; do train "$r" emoji 3 "$@"; done
train image-kd-adapt emoji-google-apple 3 "$@"
train image-kd-styles emoji-google-facebook-twitter 3 "$@"
rows+=(image-kd-adapt image-kd-styles)

# one cell: accuracy / balanced accuracy on a rendering's test split, over the 3 seeds
cell() { # RUN-NAME STYLE
  for k in 1 2 3; do
    "$bin" eval --model "runs/$1/seed-$k/last.safetensors" --data "$data/$(setof "$2")/dataset.xds" \
      --json | sed -n 's/.*"accuracy":\([0-9.]*\),"balanced_accuracy":\([0-9.]*\).*/\1 \2/p'
  done | awk '{ a[NR] = $1; b[NR] = $2 }
    function ms(v,   i, m, s) { for (i = 1; i <= NR; i++) m += v[i]; m /= NR
      for (i = 1; i <= NR; i++) s += (v[i] - m) ^ 2  # sample deviation, as summary.json
      return sprintf("%.1f +- %.1f", 100 * m, NR > 1 ? 100 * sqrt(s / (NR - 1)) : 0) }
    END { printf "%s / %s", ms(a), ms(b) }'
}
printf '| row | trained on (labels) |'
for s in "${styles[@]}"; do printf ' %s |' "$s"; done
printf '\n|---|---|%s\n' "$(printf -- '---|%.0s' "${styles[@]}")"
for r in "${rows[@]}"; do
  case $r in
    image-full) on="google (100%)" ;;
    image-kd-adapt) on="google (5%) + apple (none)" ;;
    image-kd-styles) on="google (5%) + facebook, twitter (none)" ;;
    *) on="google (5%)" ;;
  esac
  printf '| %s | %s |' "$r" "$on"
  for s in "${styles[@]}"; do printf ' %s |' "$(cell "$(name "$r")" "$s")"; done
  printf '\n'
done

dirs=()
for r in "${rows[@]}"; do dirs+=("runs/$(name "$r")"); done
mkdir -p runs/reports
"$bin" report "${dirs[@]}" --out runs/reports/style.html --title "xdistill: emoji style shift" >&2
