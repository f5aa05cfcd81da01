// CUDA implementations of the elementwise derivative ops. The math is in
// hoderiv/derivative_math.h, shared with the CPU kernels; checks, operands and
// outputs come from prepare_* in ops.cpp, shared too.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "hoderiv/derivative_math.h"
#include "hoderiv/order_dispatch.h"
#include "launch.cuh"
#include "ops.h"

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

template <typename scalar_t>
__global__ void polynomial_forward_kernel(const scalar_t* __restrict__ x,
                                          const scalar_t* __restrict__ coefficients,
                                          int64_t num_coefficients, scalar_t* __restrict__ out,
                                          int64_t n, int order) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    math::polynomial_planes_at<scalar_t>(coefficients, num_coefficients, x, out, n, i, order);
  }
}

template <typename scalar_t>
__global__ void polynomial_backward_kernel(const scalar_t* __restrict__ grad,
                                           const scalar_t* __restrict__ x,
                                           const scalar_t* __restrict__ coefficients,
                                           int64_t num_coefficients, scalar_t* __restrict__ out,
                                           int64_t n, int m, int shift) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    out[i] = math::weighted_polynomial_at<scalar_t>(coefficients, num_coefficients, x, grad, n, i, m, shift);
  }
}

at::Tensor elementwise_derivatives_cuda(const at::Tensor& x, c10::string_view function,
                                        c10::ArrayRef<double> params, int64_t order) {
  const c10::cuda::CUDAGuard device_guard(x.device());
  const ElementwiseCall call = prepare_elementwise(x, function, params, order);
  if (call.n == 0) return call.out;
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
  const c10::cuda::CUDAGuard device_guard(x.device());
  const ElementwiseCall call = prepare_elementwise_backward(grad, x, function, params, shift);
  if (call.n == 0) return call.out;
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
  const c10::cuda::CUDAGuard device_guard(x.device());
  const ElementwiseCall call = prepare_polynomial(x, coefficients, order);
  if (call.n == 0) return call.out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "polynomial_derivatives_cuda", [&] {
    polynomial_forward_kernel<scalar_t><<<grid_size_for(call.n), kThreadsPerBlock, 0, stream>>>(
        call.input.const_data_ptr<scalar_t>(), call.coefficients.const_data_ptr<scalar_t>(),
        call.coefficients.numel(), call.out.mutable_data_ptr<scalar_t>(), call.n, static_cast<int>(call.order));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return call.out;
}

at::Tensor polynomial_derivatives_backward_cuda(const at::Tensor& grad, const at::Tensor& x,
                                                const at::Tensor& coefficients, int64_t shift) {
  const c10::cuda::CUDAGuard device_guard(x.device());
  const ElementwiseCall call = prepare_polynomial_backward(grad, x, coefficients, shift);
  if (call.n == 0) return call.out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "polynomial_derivatives_backward_cuda", [&] {
    polynomial_backward_kernel<scalar_t><<<grid_size_for(call.n), kThreadsPerBlock, 0, stream>>>(
        call.weights.const_data_ptr<scalar_t>(), call.input.const_data_ptr<scalar_t>(),
        call.coefficients.const_data_ptr<scalar_t>(), call.coefficients.numel(),
        call.out.mutable_data_ptr<scalar_t>(), call.n, static_cast<int>(call.order), static_cast<int>(call.shift));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return call.out;
}

}  // namespace
}  // namespace cuda
}  // namespace hoderiv

TORCH_LIBRARY_IMPL(hoderiv_ext, CUDA, m) {
  m.impl("elementwise_derivatives", &hoderiv::cuda::elementwise_derivatives_cuda);
  m.impl("elementwise_derivatives_backward", &hoderiv::cuda::elementwise_derivatives_backward_cuda);
  m.impl("polynomial_derivatives", &hoderiv::cuda::polynomial_derivatives_cuda);
  m.impl("polynomial_derivatives_backward", &hoderiv::cuda::polynomial_derivatives_backward_cuda);
}
