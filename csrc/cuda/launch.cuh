// Launch geometry shared by the CUDA kernels of hoderiv_ext: grid-stride
// loops over int64 indices, a grid capped at a few waves of the device.
#pragma once

#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <cstdint>

namespace hoderiv {
namespace cuda {

constexpr int kThreadsPerBlock = 256;

inline unsigned int grid_size_for(int64_t num_items) {
  const int64_t blocks_needed = (num_items + kThreadsPerBlock - 1) / kThreadsPerBlock;
  const int64_t sm_count = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  // 32 resident blocks of 256 threads per SM saturate memory on current GPUs;
  // the grid-stride loop covers the rest.
  const int64_t cap = std::max<int64_t>(sm_count * 32, 1);
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min(blocks_needed, cap)));
}

}  // namespace cuda
}  // namespace hoderiv
