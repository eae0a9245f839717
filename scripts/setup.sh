#!/usr/bin/env bash
# The one set-up step on a fresh Debian/Ubuntu machine, used by the README's main command and by .ci/run:
# system packages (installed when this user may: root or password-less sudo; otherwise the exact command is
# printed and the script stops), then npm ci (which builds the addon) and the TypeScript build.
#   bash scripts/setup.sh          # what `npm run main` needs
#   bash scripts/setup.sh --test   # + what the tests need (GoogleTest, chromium, clang for the fuzzers, the
#                                  #   test-only node-llama-cpp peer)
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_PACKAGES=(cmake g++ make libopenblas-dev libgfortran-12-dev nlohmann-json3-dev libgomp1)
TEST_PACKAGES=(libgtest-dev chromium clang-14 libclang-rt-14-dev)
packages=("${RUN_PACKAGES[@]}")
[ "${1:-}" = "--test" ] && packages+=("${TEST_PACKAGES[@]}")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "setup: these Debian/Ubuntu packages are needed and this system has no apt-get: ${missing[*]}" >&2
    echo "setup: install their equivalents (CMake >= 3.20, a C++17 compiler, OpenBLAS, gfortran, nlohmann-json, libgomp), then run npm ci" >&2
    exit 1
  fi
  if [ "$(id -u)" = 0 ]; then SUDO=(); elif sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: run  sudo apt-get install -y ${missing[*]}  and then this script again" >&2
    exit 1
  fi
  echo "== system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== npm ci (builds the addon through the install script)"
npm ci --no-audit --no-fund
echo "== TypeScript"
npm run build:ts --silent
if [ "${1:-}" = "--test" ]; then
  echo "== test peer (node-llama-cpp, test-only)"
  (cd test/peer && npm ci --no-audit --no-fund)
fi
