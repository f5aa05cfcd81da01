// CUDA implementations of the univariate Taylor step (math:
// hoderiv/univariate_math.h, shared with the CPU kernels; checks and
// operands: csrc/ops/prepare_univariate.cpp). One thread per column
// (sample n, unit j) in a grid-stride loop over int64 indices; consecutive
// threads take consecutive units, so every slot's reads and writes are
// coalesced. Each thread computes phi^(0..K) (backward: 0..K+1) once in
// registers and loops over the tangents and the R directions. The order K
// is a template parameter (8 forward and 7 backward kernels per dtype); the
// function is a runtime switch, uniform across the grid, as in the other
// CUDA kernels. Nothing is copied between host and device.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "cuda/launch.cuh"
#include "hoderiv/univariate_math.h"
#include "ops/prepare.h"
#include "ops/registration.h"

namespace hoderiv {
namespace cuda {
namespace {

template <typename scalar_t, int K>
__global__ void univariate_forward_kernel(const scalar_t* __restrict__ jet, int64_t jet_sample_stride,
                                          const scalar_t* __restrict__ bias, scalar_t* __restrict__ out, int64_t n,
                                          int64_t m, univariate::Layout layout, math::Function function,
                                          math::FunctionParams params) {
  const int64_t columns = n * m;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < columns; c += stride) {
    univariate::forward_column<scalar_t, K>(jet, jet_sample_stride, bias, out, c, m, layout, function, params);
  }
}

template <typename scalar_t, int K>
__global__ void univariate_backward_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ jet,
                                           int64_t jet_sample_stride, const scalar_t* __restrict__ bias,
                                           scalar_t* __restrict__ grad_jet, int64_t n, int64_t m,
                                           univariate::Layout layout, math::Function function,
                                           math::FunctionParams params) {
  const int64_t columns = n * m;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < columns; c += stride) {
    univariate::backward_column<scalar_t, K>(grad, jet, jet_sample_stride, bias, grad_jet, c, m, layout, function,
                                             params);
  }
}

template <typename scalar_t>
const scalar_t* pointer_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<scalar_t>() : nullptr;
}

at::Tensor jet_univariate_cuda(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                               c10::string_view function, c10::ArrayRef<double> params, int64_t num_tangents,
                               int64_t order) {
  const UnivariateCall call = prepare_jet_univariate(jet, bias, function, params, num_tangents, order);
  if (call.out.numel() == 0) return call.out;
  const c10::cuda::CUDAGuard device_guard(call.out.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(call.out.scalar_type(), "jet_univariate_cuda", [&] {
    univariate::dispatch_order<math::kMaxOrder>(call.order, [&](auto order_tag) {
      constexpr int K = decltype(order_tag)::value;
      univariate_forward_kernel<scalar_t, K><<<grid_size_for(call.n * call.m), kThreadsPerBlock, 0, stream>>>(
          call.jet.const_data_ptr<scalar_t>(), call.jet_sample_stride, pointer_or_null<scalar_t>(call.bias),
          call.out.mutable_data_ptr<scalar_t>(), call.n, call.m, call.layout(), call.parsed.function,
          call.parsed.params);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return call.out;
}

at::Tensor jet_univariate_backward_cuda(const at::Tensor& grad, const at::Tensor& jet,
                                        const c10::optional<at::Tensor>& bias, c10::string_view function,
                                        c10::ArrayRef<double> params, int64_t num_tangents, int64_t order) {
  const UnivariateCall call =
      prepare_jet_univariate_backward(grad, jet, bias, function, params, num_tangents, order);
  if (call.out.numel() == 0) return call.out;
  const c10::cuda::CUDAGuard device_guard(call.out.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(call.out.scalar_type(), "jet_univariate_backward_cuda", [&] {
    univariate::dispatch_order<math::kMaxOrder - 1>(call.order, [&](auto order_tag) {
      constexpr int K = decltype(order_tag)::value;
      univariate_backward_kernel<scalar_t, K><<<grid_size_for(call.n * call.m), kThreadsPerBlock, 0, stream>>>(
          call.grad.const_data_ptr<scalar_t>(), call.jet.const_data_ptr<scalar_t>(), call.jet_sample_stride,
          pointer_or_null<scalar_t>(call.bias), call.out.mutable_data_ptr<scalar_t>(), call.n, call.m,
          call.layout(), call.parsed.function, call.parsed.params);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return call.out;
}

}  // namespace
}  // namespace cuda

void register_univariate_cuda(torch::Library& library) {
  library.impl("jet_univariate", &cuda::jet_univariate_cuda);
  library.impl("jet_univariate_backward", &cuda::jet_univariate_backward_cuda);
}

}  // namespace hoderiv
