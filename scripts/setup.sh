#!/usr/bin/env bash
# Installs what xdistill needs on Debian 12, and nothing when it is already there.
# Idempotent: `make test`, `make demo` and CI call it every time; a second run only checks.
# Not root: prints the one command to run and fails, rather than half-installing.
# `scripts/setup.sh fuzz` also installs clang and its libFuzzer runtime, for `make fuzz`.
set -euo pipefail

packages=(
  build-essential pkg-config
  libopenblas-openmp-dev     # OpenBLAS built with OpenMP: shares our threads, no oversubscription
  libpng-dev libjpeg62-turbo-dev zlib1g-dev
  libutf8proc-dev libjansson-dev libyaml-dev
  libcmocka-dev
  dataset-fashion-mnist      # real data for `xdistill prepare fashion-mnist`
  chromium                   # the tests render `xdistill report`'s page headless
  protobuf-c-compiler libprotobuf-c-dev  # ONNX export: protoc-c and its runtime
  python3-onnx               # onnx.proto for the export, onnx.checker for its test
  libopenmpi-dev openmpi-bin # data-parallel training under mpirun (make MPI=0 builds without)
)
if [ "${1:-}" = fuzz ]; then
  packages+=(clang libclang-rt-14-dev)  # clang 14 and its libFuzzer + sanitizer runtimes
fi
if [ "${XDISTILL_SETUP_NODE:-1}" = 1 ]; then
  packages+=(npm)            # `npm pack` fetches the emoji data set's packages
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    # npm may come from elsewhere (nodejs); the command is what matters
    if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -ne 0 ]; then
  echo "setup: installing missing packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: not root. Run this once, then retry:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  echo "setup: done"
fi

# ONNX Runtime for Node.js, which the export test runs the exported models with: its Linux x64
# CPU library is inside the package; its install script would fetch GPU extras, so it is skipped.
# Without it (no npm, offline) the test says so and checks the files with onnx.checker only.
ort=${XDISTILL_CACHE:-cache}/onnxruntime
if [ "${XDISTILL_SETUP_NODE:-1}" = 1 ] && [ ! -d "$ort/node_modules/onnxruntime-node" ] &&
   command -v npm >/dev/null 2>&1; then
  echo "setup: installing onnxruntime-node 1.30.0 into $ort"
  mkdir -p "$ort"
  npm install --prefix "$ort" --ignore-scripts --no-audit --no-fund --loglevel=error \
    onnxruntime-node@1.30.0 >/dev/null || echo "setup: onnxruntime-node not installed" >&2
fi
