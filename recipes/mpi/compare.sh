#!/usr/bin/env bash
# One process against 2 ranks of mpirun (1 thread each), seeds 1-3: the Fashion-MNIST teacher CNN
# (recipes/fashion/teacher.yaml), the Fashion-MNIST KD student
# (recipes/zoo/kd.yaml, taught by runs/fashion-teacher/seed-1) and the emoji text -> image KD
# student (recipes/emoji/image-kd.yaml, taught by runs/emoji-text-teacher/seed-1). Prints each
# run's final test accuracy, the mean +- sample standard deviation per row, and whether the two
# rank-2 runs of seed 1 wrote the same bytes.
# Usage: recipes/mpi/compare.sh BIN [TRAIN-ARGS...]   (runs into runs/mpi-compare)
set -euo pipefail
bin=$1
shift
out=runs/mpi-compare
mpi=(mpirun --oversubscribe -np 2)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
acc() { sed -n 's/.*"final_test_acc": *\([0-9.eE+-]*\).*/\1/p' "$1/summary.json"; }
stats() { awk '{ v[NR] = $1; s += $1 } END { m = s / NR; for (i = 1; i <= NR; i++) d += (v[i] - m) ^ 2;
  printf "%.2f +- %.2f%%", 100 * m, (NR > 1 ? 100 * sqrt(d / (NR - 1)) : 0) }'; }
printf '| student | 1 process (3 seeds) | 2 ranks (3 seeds) | per seed (1 process / 2 ranks) |\n|---|---|---|---|\n'
for recipe in recipes/fashion/teacher.yaml recipes/zoo/kd.yaml recipes/emoji/image-kd.yaml; do
  name=$(basename "$recipe" .yaml)
  one=() two=() pairs=""
  for seed in 1 2 3; do
    d1=$out/$name-np1-seed$seed d2=$out/$name-np2-seed$seed
    "$bin" train "$recipe" --seed "$seed" --out "$d1" --quiet --set train.threads=1 "$@" >/dev/null
    "${mpi[@]}" "$bin" train "$recipe" --seed "$seed" --out "$d2" --quiet --set train.threads=1 "$@" >/dev/null
    one+=("$(acc "$d1")") two+=("$(acc "$d2")")
    pairs+=$(printf '%s%.2f / %.2f' "${pairs:+, }" "$(echo "100*${one[-1]}" | bc -l)" "$(echo "100*${two[-1]}" | bc -l)")
  done
  printf '| %s | %s | %s | %s |\n' "$recipe" "$(printf '%s\n' "${one[@]}" | stats)" \
    "$(printf '%s\n' "${two[@]}" | stats)" "$pairs"
done
"${mpi[@]}" "$bin" train recipes/zoo/kd.yaml --seed 1 --out $out/kd-np2-again --quiet --set train.threads=1 "$@" >/dev/null
if cmp -s $out/kd-np2-seed1/last.safetensors $out/kd-np2-again/last.safetensors; then
  echo "2 ranks, seed 1, twice: the same last.safetensors bytes"
else
  echo "2 ranks, seed 1, twice: different bytes"
fi
