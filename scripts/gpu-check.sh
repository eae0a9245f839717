#!/usr/bin/env bash
# One prepared command for a machine with a GPU (nvcc + CMake, no Node needed):
#   bash scripts/gpu-check.sh
# builds the C++ core with CUDA, runs the GPU suite (kernels vs their CPU twins; a missing GPU fails here
# instead of skipping) and the CPU suite. Needs libopenblas-dev, libgfortran-12-dev, libgtest-dev,
# nlohmann-json3-dev (installed with apt when missing and root).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! dpkg -s libopenblas-dev libgtest-dev nlohmann-json3-dev libgfortran-12-dev >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && apt-get install -y -qq libopenblas-dev libgfortran-12-dev libgtest-dev nlohmann-json3-dev >/dev/null
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="80-virtual;90"
cmake --build build-gpu -j"$(nproc)"
ENTROPRUNE_REQUIRE_GPU=1 ctest --test-dir build-gpu -L gpu --output-on-failure
ctest --test-dir build-gpu -L cpu --output-on-failure
./build-gpu/bench_covariance 2048 8192 3
# Stage timings on a LLaMA-2-7B-shaped BF16 model (random weights): 13.5 GB written once, then load, forward,
# analyze (block-major streaming, weights converted per block), apply + save. Small calibration (4 × 512)
# because the forward pass is still the CPU's.
SYN=${ENTROPRUNE_SYNTH_DIR:-/tmp}/entroprune-llama2-7b.gguf
[ -f "$SYN" ] || ./build-gpu/entroprune_synth llama2-7b "$SYN" --dtype bf16
./build-gpu/entroprune_timing "$SYN" --samples 4 --seq-len 512 --batch 1 --stream
