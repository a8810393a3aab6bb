#!/usr/bin/env bash
# Reproduces the deep-mutual-learning table of the README: the recipes of recipes/together/ and
# the models they are compared with alone (recipes/fashion/student.yaml,
# recipes/emoji/image-5pct.yaml), each over 3 seeds at one thread (a recipe whose summary already
# holds 3 seeds is not run again), then the table (final test accuracy, mean +- standard
# deviation over the seeds) and the runs' report page, runs/reports/together.html.
# Usage: recipes/together/table.sh [build/xdistill]   (about 20 minutes on one core)
set -euo pipefail
bin=${1:-build/xdistill}
[ -f data/fashion-mnist/dataset.xds ] || "$bin" prepare fashion-mnist --out data/fashion-mnist
[ -f data/emoji/dataset.xds ] || "$bin" prepare emoji --out data/emoji

dirs=()
for r in together/fashion-mlp-mlp together/fashion-cnn-mlp together/fashion-cnn-alone \
         fashion/student together/emoji-image-text together/emoji-text-5pct emoji/image-5pct; do
  name=$(sed -n 's/^name: //p' "recipes/$r.yaml")
  dirs+=("runs/$name")
  if ! { [ -f "runs/$name/summary.json" ] && grep -q '"seeds": 3' "runs/$name/summary.json"; }; then
    "$bin" train "recipes/$r.yaml" --seeds 3 --quiet --set train.threads=1
  fi
done

# score NAME [MODEL]: mean +- std of the final test accuracy in runs/NAME/summary.json (of MODEL,
# in a run of several models)
score() {
  awk -v m="${2:-}" '
    m == "" && /^  "final_test_acc": \{/ { k = 1 }
    m != "" && $0 ~ "^    \"" m "\": \\{" { in_model = 1 }
    in_model && /^      "final_test_acc": \{/ { k = 1 }
    k && /"mean"/ { gsub(/,/, "", $2); mean = $2 }
    k && /"std"/ { gsub(/,/, "", $2); printf "%.2f +- %.2f%%", 100 * mean, 100 * $2; exit }
  ' "runs/$1/summary.json"
}

mlp=$(score fashion-student)
cat <<TABLE
| models (recipe in \`recipes/together/\`) | peer | together | alone |
|---|---|---|---|
| Fashion-MNIST, two MLPs 784-128-10, every label, 10 epochs (\`fashion-mlp-mlp.yaml\`) | MLP a | $(score together-fashion-mlp-mlp a) | $mlp (\`recipes/fashion/student.yaml\`) |
| | MLP b | $(score together-fashion-mlp-mlp b) | $mlp |
| Fashion-MNIST, the CNN of the teacher row + the MLP, every label, 10 epochs (\`fashion-cnn-mlp.yaml\`) | CNN | $(score together-fashion-cnn-mlp cnn) | $(score together-fashion-cnn-alone) (\`fashion-cnn-alone.yaml\`) |
| | MLP | $(score together-fashion-cnn-mlp mlp) | $mlp |
| emoji, image CNN + text model, the same 5% of the labels each, 20 epochs (\`emoji-image-text.yaml\`) | image CNN (images) | $(score together-emoji-image-text image) | $(score emoji-image-5pct) (\`recipes/emoji/image-5pct.yaml\`) |
| | text model (every language) | $(score together-emoji-image-text text) | $(score together-emoji-text-5pct) (\`emoji-text-5pct.yaml\`) |
TABLE

# the runs' report page: curves of every model, comparison, confusion matrices, mistakes
mkdir -p runs/reports
"$bin" report "${dirs[@]}" --out runs/reports/together.html \
  --title "xdistill: models that learn together" >&2
