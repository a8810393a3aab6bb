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

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

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
