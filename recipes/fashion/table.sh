#!/usr/bin/env bash
# Reproduces the Fashion-MNIST results table of the README: every row over 3 seeds, then the table.
# Usage: recipes/fashion/table.sh [build/xdistill [TRAIN-ARGS...]]   (about 10 minutes on 2 cores)
# e.g. recipes/fashion/table.sh build/xdistill --set train.threads=1
set -euo pipefail
bin=${1:-build/xdistill}
shift || true
[ -f data/fashion-mnist/dataset.xds ] || "$bin" prepare fashion-mnist --out data/fashion-mnist
exec recipes/table.sh fashion "$bin" teacher student student-kd student-feature student-hint \
    lowlabel-ce lowlabel-kd -- "$@"
