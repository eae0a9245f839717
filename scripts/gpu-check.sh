#!/usr/bin/env bash
# One prepared command for the GPU machine (nvcc + CMake, no Node, no network):
#   ENTROPRUNE_TEST_DATA=gpu-data bash scripts/gpu-check.sh
# 1. builds the C++ core with CUDA (Release, sm_90 + PTX for sm_80+);
# 2. runs the GPU suite with a missing GPU as a failure: kernels vs their CPU twins, GEMMs in f32/bf16/f16
#    through entroprune's own kernels and cuBLAS (when libcublas loads), the block forward vs the CPU on a
#    heterogeneous model, sliding-window attention, logits on stories260K and TinyStories-656K, and the
#    streamed calibration on the GPU vs the CPU (statistics the planner reads), the fused GPU capture vs the
#    CPU capture of the same forward, hidden states held on the GPU vs host round trips, the loss per position
#    (perplexity) and zero-shot span scores on the GPU vs the CPU, the measured sensitivities (block-major on
#    the runner, KL and loss kernels) vs the CPU driver, the plan loss of the measured refinement and the
#    layer-input capture of least-squares compensation (blocks on the GPU) vs the CPU;
# 3. stage timings on a LLaMA-2-7B-shaped BF16 model (random weights, 13.5 GB
#    written once): forward tokens/s and TFLOP/s of the GPU blocks, analyze, the loss of every window
#    (perplexity's work), plan stand-in, apply + save,
#    peak GPU memory and RSS, for each count in ENTROPRUNE_GPU_SAMPLES × 2048 calibration tokens (default
#    "32 128": a short run first, so a run cut off by the time limit still leaves figures, then the issue's
#    128 × 2048).
# Set-up on the machine that calls the device (see README "GPU"): `bash scripts/gpu-debs.sh` (Debian
# packages the build needs, unpacked here when missing) and the two real models copied into gpu-data/;
# carry [".gpu-debs", "gpu-data"]. ENTROPRUNE_GPU_CPU_SUITE=1 also runs the CPU suite (CI runs it anyway).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-/tmp}
log() { echo "== $(date +%T) $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true

DEPS=()
if [ ! -f /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ] || [ ! -d /usr/include/gtest ] || [ ! -d /usr/include/nlohmann ]; then
  [ -d .gpu-debs ] || { echo "missing OpenBLAS/GoogleTest/nlohmann-json and no .gpu-debs/: run scripts/gpu-debs.sh where apt works and carry .gpu-debs"; exit 1; }
  log "unpacking .gpu-debs into /tmp/ep-deps"
  for f in .gpu-debs/*.deb; do dpkg -x "$f" /tmp/ep-deps; done
  DEPS=(-DENTROPRUNE_DEPS_PREFIX=/tmp/ep-deps)
fi

log "configure + build"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="80-virtual;90" "${DEPS[@]}" > "$OUT_DIR/gpu-configure.log"
grep -E "entroprune:|OpenBLAS|GTest" "$OUT_DIR/gpu-configure.log" || true
cmake --build build-gpu -j"$(nproc)" > "$OUT_DIR/gpu-build.log" 2>&1 || { tail -50 "$OUT_DIR/gpu-build.log"; exit 1; }

log "GPU suite"
set +e
ENTROPRUNE_REQUIRE_GPU=1 ./build-gpu/entroprune_gpu_tests > "$OUT_DIR/gpu-tests.log" 2>&1
GPU_RC=$?
set -e
grep -E "^\[ *(OK|FAILED|SKIPPED|PASSED) *\]|^probe:|Failure|Expected|Which is|actual|rms|cuda:|same greedy" "$OUT_DIR/gpu-tests.log" | head -150 || true
if [ "${ENTROPRUNE_GPU_CPU_SUITE:-0}" = 1 ]; then
  log "CPU suite"
  ctest --test-dir build-gpu -L cpu --output-on-failure -j4 | tail -5
fi

SYN=${ENTROPRUNE_SYNTH_DIR:-/tmp}/entroprune-llama2-7b.gguf
log "synthesize LLaMA-2-7B-shaped BF16"
[ -f "$SYN" ] || ./build-gpu/entroprune_synth llama2-7b "$SYN" --dtype bf16
for SAMPLES in ${ENTROPRUNE_GPU_SAMPLES:-32 128}; do
  log "timing: ${SAMPLES} x 2048 on cuda:0"
  ./build-gpu/entroprune_timing "$SYN" --device cuda --samples "$SAMPLES" --seq-len 2048 --batch 4 | tee "$OUT_DIR/gpu-timing-$SAMPLES.json"
done
log "done (GPU suite exit code $GPU_RC)"
exit "$GPU_RC"
