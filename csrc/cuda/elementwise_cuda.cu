// CUDA implementations of the elementwise derivative ops. The math is in
// hoderiv/derivative_math.h, shared with the CPU kernels; argument checks are
// in ops.cpp, shared too.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
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

template <typename scalar_t, int K>
__global__ void elementwise_forward_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out,
                                           int64_t n, int order, math::Function function,
                                           math::FunctionParams params) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    scalar_t d[K + 1];
    math::derivatives<scalar_t, K>(function, params, x[i], d);
    HODERIV_UNROLL
    for (int k = 0; k <= K; ++k) {
      if (k <= order) out[k * n + i] = d[k];
    }
  }
}

template <typename scalar_t, int K>
__global__ void elementwise_backward_kernel(const scalar_t* __restrict__ grad,
                                            const scalar_t* __restrict__ x, scalar_t* __restrict__ out,
                                            int64_t n, int m, int shift, math::Function function,
                                            math::FunctionParams params) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    scalar_t d[K + 1];
    math::derivatives<scalar_t, K>(function, params, x[i], d);
    scalar_t acc = scalar_t(0);
    HODERIV_UNROLL
    for (int k = 0; k <= K; ++k) {
      if (k <= m && k + shift <= K) acc += grad[k * n + i] * d[k + shift];
    }
    out[i] = acc;
  }
}

template <typename scalar_t>
__global__ void polynomial_forward_kernel(const scalar_t* __restrict__ x,
                                          const scalar_t* __restrict__ coefficients,
                                          int64_t num_coefficients, scalar_t* __restrict__ out,
                                          int64_t n, int order) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const scalar_t xi = x[i];
    for (int k = 0; k <= order; ++k) {
      out[k * n + i] = math::polynomial_derivative<scalar_t>(coefficients, num_coefficients, k, xi);
    }
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
    const scalar_t xi = x[i];
    scalar_t acc = scalar_t(0);
    for (int k = 0; k <= m; ++k) {
      acc += grad[k * n + i] *
             math::polynomial_derivative<scalar_t>(coefficients, num_coefficients, k + shift, xi);
    }
    out[i] = acc;
  }
}

at::Tensor elementwise_derivatives_cuda(const at::Tensor& x, c10::string_view function,
                                        c10::ArrayRef<double> params, int64_t order) {
  check_elementwise_input(x, order, "order");
  const ParsedFunction parsed = parse_function(std::string_view(function.data(), function.size()), params);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const at::Tensor input = x.contiguous();
  at::Tensor out = at::empty(stacked_shape(x, order), input.options());
  const int64_t n = input.numel();
  if (n == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "elementwise_derivatives_cuda", [&] {
    dispatch_taylor_order(static_cast<int>(order), [&](auto order_tag) {
      constexpr int K = decltype(order_tag)::value;
      elementwise_forward_kernel<scalar_t, K><<<grid_size_for(n), kThreadsPerBlock, 0, stream>>>(
          input.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n,
          static_cast<int>(order), parsed.function, parsed.params);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

at::Tensor elementwise_derivatives_backward_cuda(const at::Tensor& grad, const at::Tensor& x,
                                                 c10::string_view function,
                                                 c10::ArrayRef<double> params, int64_t shift) {
  check_elementwise_input(x, 0, "order");
  const int64_t m = check_backward_grad(grad, x, shift);
  const ParsedFunction parsed = parse_function(std::string_view(function.data(), function.size()), params);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const at::Tensor input = x.contiguous();
  const at::Tensor weights = grad.contiguous();
  at::Tensor out = at::empty_like(input);
  const int64_t n = input.numel();
  if (n == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "elementwise_derivatives_backward_cuda", [&] {
    dispatch_taylor_order(static_cast<int>(m + shift), [&](auto order_tag) {
      constexpr int K = decltype(order_tag)::value;
      elementwise_backward_kernel<scalar_t, K><<<grid_size_for(n), kThreadsPerBlock, 0, stream>>>(
          weights.const_data_ptr<scalar_t>(), input.const_data_ptr<scalar_t>(),
          out.mutable_data_ptr<scalar_t>(), n, static_cast<int>(m), static_cast<int>(shift),
          parsed.function, parsed.params);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

at::Tensor polynomial_derivatives_cuda(const at::Tensor& x, const at::Tensor& coefficients,
                                       int64_t order) {
  check_elementwise_input(x, order, "order");
  check_coefficients(coefficients, x);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const at::Tensor input = x.contiguous();
  const at::Tensor coef = coefficients.contiguous();
  at::Tensor out = at::empty(stacked_shape(x, order), input.options());
  const int64_t n = input.numel();
  if (n == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "polynomial_derivatives_cuda", [&] {
    polynomial_forward_kernel<scalar_t><<<grid_size_for(n), kThreadsPerBlock, 0, stream>>>(
        input.const_data_ptr<scalar_t>(), coef.const_data_ptr<scalar_t>(), coef.numel(),
        out.mutable_data_ptr<scalar_t>(), n, static_cast<int>(order));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor polynomial_derivatives_backward_cuda(const at::Tensor& grad, const at::Tensor& x,
                                                const at::Tensor& coefficients, int64_t shift) {
  check_elementwise_input(x, 0, "order");
  const int64_t m = check_backward_grad(grad, x, shift);
  check_coefficients(coefficients, x);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const at::Tensor input = x.contiguous();
  const at::Tensor weights = grad.contiguous();
  const at::Tensor coef = coefficients.contiguous();
  at::Tensor out = at::empty_like(input);
  const int64_t n = input.numel();
  if (n == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "polynomial_derivatives_backward_cuda", [&] {
    polynomial_backward_kernel<scalar_t><<<grid_size_for(n), kThreadsPerBlock, 0, stream>>>(
        weights.const_data_ptr<scalar_t>(), input.const_data_ptr<scalar_t>(),
        coef.const_data_ptr<scalar_t>(), coef.numel(), out.mutable_data_ptr<scalar_t>(), n,
        static_cast<int>(m), static_cast<int>(shift));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
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
