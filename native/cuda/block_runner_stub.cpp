// Compiled instead of block_runner.cu when the build has no nvcc: asking for the CUDA forward says so.
#include "core/error.h"
#include "core/device/block_runner.h"
#include "core/device/cuda_api.h"

namespace ep::cuda {

std::unique_ptr<BlockRunner> BlockRunner::create(const ModelConfig&, const RopeTables&, int, int64_t, const BlockRunnerOptions&) {
  throw Error(ErrorCode::kUnsupported, "", "CUDA requested, but " + probe().unavailable);
}

}  // namespace ep::cuda
