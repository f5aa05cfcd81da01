// CUDA implementations of the elementwise derivative ops. The math is in
// hoderiv/derivative_math.h, shared with the CPU kernels; checks, operands and
// outputs come from prepare_* (csrc/ops/prepare_elementwise.cpp), shared too.
// Every argument is checked there before the device guard is set and any
// kernel is launched on the current stream.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "cuda/launch.cuh"
#include "hoderiv/derivative_math.h"
#include "hoderiv/order_dispatch.h"
#include "ops/prepare.h"
#include "ops/registration.h"

namespace hoderiv {
namespace cuda {
namespace {

// Grid-stride loops over the n elements; each element's work is a shared
// function of derivative_math.h (tested on the host by test_derivative_math).
template <typename scalar_t, int K>
__global__ void elementwise_forward_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out,
                                           int64_t n, int order, math::Function function,
                                           math::FunctionParams params) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    math::derivative_planes_at<scalar_t, K>(function, params, x, out, n, i, order);
  }
}

template <typename scalar_t, int K>
__global__ void elementwise_backward_kernel(const scalar_t* __restrict__ grad,
                                            const scalar_t* __restrict__ x, scalar_t* __restrict__ out,
                                            int64_t n, int m, int shift, math::Function function,
                                            math::FunctionParams params) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    out[i] = math::weighted_derivatives_at<scalar_t, K>(function, params, x, grad, n, i, m, shift);
  }
}

// The polynomial's derivative table, one entry per thread (the CPU fills the
// same table with the same function).
template <typename scalar_t>
__global__ void polynomial_table_kernel(const scalar_t* __restrict__ coefficients, int64_t num_coefficients,
                                        scalar_t* __restrict__ table, int64_t entries) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < entries; e += stride) {
    math::polynomial_table_entry<scalar_t>(coefficients, num_coefficients, table, e);
  }
}

template <typename scalar_t>
__global__ void polynomial_forward_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ table,
                                          int64_t num_coefficients, scalar_t* __restrict__ out, int64_t n,
                                          int order) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    math::polynomial_planes_at<scalar_t>(table, num_coefficients, x, out, n, i, order);
  }
}

template <typename scalar_t>
__global__ void polynomial_backward_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ x,
                                           const scalar_t* __restrict__ table, int64_t num_coefficients,
                                           scalar_t* __restrict__ out, int64_t n, int m, int shift) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    out[i] = math::weighted_polynomial_at<scalar_t>(table, num_coefficients, x, grad, n, i, m, shift);
  }
}

// Fills call.table on the current stream.
template <typename scalar_t>
void fill_polynomial_table(const ElementwiseCall& call, cudaStream_t stream) {
  const int64_t entries = call.table.numel();
  polynomial_table_kernel<scalar_t><<<grid_size_for(entries), kThreadsPerBlock, 0, stream>>>(
      call.coefficients.const_data_ptr<scalar_t>(), call.coefficients.numel(), call.table.mutable_data_ptr<scalar_t>(),
      entries);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor elementwise_derivatives_cuda(const at::Tensor& x, c10::string_view function,
                                        c10::ArrayRef<double> params, int64_t order) {
  const ElementwiseCall call = prepare_elementwise(x, function, params, order);
  if (call.n == 0) return call.out;
  const c10::cuda::CUDAGuard device_guard(call.out.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "elementwise_derivatives_cuda", [&] {
    dispatch_taylor_order(static_cast<int>(call.order), [&](auto order_tag) {
      constexpr int K = decltype(order_tag)::value;
      elementwise_forward_kernel<scalar_t, K><<<grid_size_for(call.n), kThreadsPerBlock, 0, stream>>>(
          call.input.const_data_ptr<scalar_t>(), call.out.mutable_data_ptr<scalar_t>(), call.n,
          static_cast<int>(call.order), call.parsed.function, call.parsed.params);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return call.out;
}

at::Tensor elementwise_derivatives_backward_cuda(const at::Tensor& grad, const at::Tensor& x,
                                                 c10::string_view function,
                                                 c10::ArrayRef<double> params, int64_t shift) {
  const ElementwiseCall call = prepare_elementwise_backward(grad, x, function, params, shift);
  if (call.n == 0) return call.out;
  const c10::cuda::CUDAGuard device_guard(call.out.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "elementwise_derivatives_backward_cuda", [&] {
    dispatch_taylor_order(static_cast<int>(call.order + call.shift), [&](auto order_tag) {
      constexpr int K = decltype(order_tag)::value;
      elementwise_backward_kernel<scalar_t, K><<<grid_size_for(call.n), kThreadsPerBlock, 0, stream>>>(
          call.weights.const_data_ptr<scalar_t>(), call.input.const_data_ptr<scalar_t>(),
          call.out.mutable_data_ptr<scalar_t>(), call.n, static_cast<int>(call.order), static_cast<int>(call.shift),
          call.parsed.function, call.parsed.params);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return call.out;
}

at::Tensor polynomial_derivatives_cuda(const at::Tensor& x, const at::Tensor& coefficients,
                                       int64_t order) {
  const ElementwiseCall call = prepare_polynomial(x, coefficients, order);
  if (call.n == 0) return call.out;
  const c10::cuda::CUDAGuard device_guard(call.out.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "polynomial_derivatives_cuda", [&] {
    fill_polynomial_table<scalar_t>(call, stream);
    polynomial_forward_kernel<scalar_t><<<grid_size_for(call.n), kThreadsPerBlock, 0, stream>>>(
        call.input.const_data_ptr<scalar_t>(), call.table.const_data_ptr<scalar_t>(), call.coefficients.numel(),
        call.out.mutable_data_ptr<scalar_t>(), call.n, static_cast<int>(call.order));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return call.out;
}

at::Tensor polynomial_derivatives_backward_cuda(const at::Tensor& grad, const at::Tensor& x,
                                                const at::Tensor& coefficients, int64_t shift) {
  const ElementwiseCall call = prepare_polynomial_backward(grad, x, coefficients, shift);
  if (call.n == 0) return call.out;
  const c10::cuda::CUDAGuard device_guard(call.out.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "polynomial_derivatives_backward_cuda", [&] {
    fill_polynomial_table<scalar_t>(call, stream);
    polynomial_backward_kernel<scalar_t><<<grid_size_for(call.n), kThreadsPerBlock, 0, stream>>>(
        call.weights.const_data_ptr<scalar_t>(), call.input.const_data_ptr<scalar_t>(),
        call.table.const_data_ptr<scalar_t>(), call.coefficients.numel(), call.out.mutable_data_ptr<scalar_t>(),
        call.n, static_cast<int>(call.order), static_cast<int>(call.shift));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return call.out;
}

}  // namespace
}  // namespace cuda

void register_elementwise_cuda(torch::Library& library) {
  library.impl("elementwise_derivatives", &cuda::elementwise_derivatives_cuda);
  library.impl("elementwise_derivatives_backward", &cuda::elementwise_derivatives_backward_cuda);
  library.impl("polynomial_derivatives", &cuda::polynomial_derivatives_cuda);
  library.impl("polynomial_derivatives_backward", &cuda::polynomial_derivatives_backward_cuda);
}

}  // namespace hoderiv
