#!/usr/bin/env bash
# Run here (a Debian machine with apt and network to the Debian mirror), not on the GPU machine: downloads
# the Debian packages the C++ build needs into .gpu-debs/ (git-ignored, ~17 MB), for a GPU machine that
# cannot fetch anything. scripts/gpu-check.sh unpacks them there when the headers are missing.
#   bash scripts/gpu-debs.sh     then carry ".gpu-debs" in the device run
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu-debs
cd .gpu-debs
apt-get download libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread libgfortran-12-dev libgfortran5 libgcc-12-dev \
  libgtest-dev nlohmann-json3-dev 2>&1 | grep -v "^W: Download is performed unsandboxed" || true
ls -la
