// CPU implementations of the elementwise derivative ops. The math is in
// hoderiv/derivative_math.h, shared with the CUDA kernels.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>

#include "hoderiv/derivative_math.h"
#include "hoderiv/order_dispatch.h"
#include "ops.h"
#include "simd.h"

namespace hoderiv {
namespace {

constexpr int64_t kGrainSize = 4096;
// Elements per block: the derivatives of a block are computed into a small
// buffer by a loop with nothing but arithmetic in it (vectorised), then the
// orders asked for are copied out.
constexpr int64_t kBlock = 256;

// y^(k), k = 0..K, of `count` <= kBlock elements into block[k][i]. Inlined
// into each multiversioned caller, so it is compiled for the caller's ISA.
template <typename scalar_t, int K, math::Function F>
HODERIV_HD void derivative_block(const scalar_t* __restrict__ in, int64_t count, const math::FunctionParams& params,
                                 scalar_t (&block)[K + 1][kBlock]) {
  for (int64_t i = 0; i < count; ++i) {
    scalar_t d[K + 1];
    math::derivatives<scalar_t, K>(F, params, in[i], d);
    for (int k = 0; k <= K; ++k) block[k][i] = d[k];
  }
}

// y^(k) for k = 0..order of elements [begin, end) into planes of n elements.
template <typename scalar_t, int K, math::Function F>
HODERIV_CPU_CLONES void derivative_planes(const scalar_t* in, scalar_t* out, int64_t n, int64_t order,
                                          math::FunctionParams params, int64_t begin, int64_t end) {
  scalar_t block[K + 1][kBlock];
  for (int64_t start = begin; start < end; start += kBlock) {
    const int64_t count = std::min(kBlock, end - start);
    derivative_block<scalar_t, K, F>(in + start, count, params, block);
    for (int64_t k = 0; k <= order; ++k) {
      for (int64_t i = 0; i < count; ++i) out[k * n + start + i] = block[k][i];
    }
  }
}

// sum_k weights[k] y^(k + shift) of elements [begin, end), weights in planes of n elements.
template <typename scalar_t, int K, math::Function F>
HODERIV_CPU_CLONES void weighted_derivatives(const scalar_t* in, const scalar_t* weights, scalar_t* out, int64_t n,
                                             int64_t num_weights, int64_t shift, math::FunctionParams params,
                                             int64_t begin, int64_t end) {
  scalar_t block[K + 1][kBlock];
  for (int64_t start = begin; start < end; start += kBlock) {
    const int64_t count = std::min(kBlock, end - start);
    derivative_block<scalar_t, K, F>(in + start, count, params, block);
    for (int64_t i = 0; i < count; ++i) out[start + i] = scalar_t(0);
    for (int64_t k = 0; k < num_weights; ++k) {
      const scalar_t* w = weights + k * n + start;
      const scalar_t* dk = block[k + shift];
      scalar_t* o = out + start;
      for (int64_t i = 0; i < count; ++i) o[i] += w[i] * dk[i];
    }
  }
}

at::Tensor elementwise_derivatives_cpu(const at::Tensor& x, c10::string_view function,
                                       c10::ArrayRef<double> params, int64_t order) {
  check_elementwise_input(x, order, "order");
  const ParsedFunction parsed = parse_function(std::string_view(function.data(), function.size()), params);
  const at::Tensor input = x.contiguous();
  at::Tensor out = at::empty(stacked_shape(x, order), input.options());
  const int64_t n = input.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "elementwise_derivatives_cpu", [&] {
    const scalar_t* in_ptr = input.const_data_ptr<scalar_t>();
    scalar_t* out_ptr = out.mutable_data_ptr<scalar_t>();
    dispatch_taylor_order(static_cast<int>(order), [&](auto order_tag) {
      constexpr int K = decltype(order_tag)::value;
      dispatch_function(parsed.function, [&](auto function_tag) {
        constexpr math::Function function = decltype(function_tag)::value;
        at::parallel_for(0, n, kGrainSize, [&](int64_t begin, int64_t end) {
          derivative_planes<scalar_t, K, function>(in_ptr, out_ptr, n, order, parsed.params, begin, end);
        });
      });
    });
  });
  return out;
}

at::Tensor elementwise_derivatives_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                c10::string_view function,
                                                c10::ArrayRef<double> params, int64_t shift) {
  check_elementwise_input(x, 0, "order");
  const int64_t m = check_backward_grad(grad, x, shift);
  const ParsedFunction parsed = parse_function(std::string_view(function.data(), function.size()), params);
  const at::Tensor input = x.contiguous();
  const at::Tensor weights = grad.contiguous();
  at::Tensor out = at::empty_like(input);
  const int64_t n = input.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "elementwise_derivatives_backward_cpu", [&] {
    const scalar_t* in_ptr = input.const_data_ptr<scalar_t>();
    const scalar_t* w_ptr = weights.const_data_ptr<scalar_t>();
    scalar_t* out_ptr = out.mutable_data_ptr<scalar_t>();
    dispatch_taylor_order(static_cast<int>(m + shift), [&](auto order_tag) {
      constexpr int K = decltype(order_tag)::value;
      dispatch_function(parsed.function, [&](auto function_tag) {
        constexpr math::Function function = decltype(function_tag)::value;
        at::parallel_for(0, n, kGrainSize, [&](int64_t begin, int64_t end) {
          weighted_derivatives<scalar_t, K, function>(in_ptr, w_ptr, out_ptr, n, m + 1, shift, parsed.params, begin,
                                                      end);
        });
      });
    });
  });
  return out;
}

at::Tensor polynomial_derivatives_cpu(const at::Tensor& x, const at::Tensor& coefficients,
                                      int64_t order) {
  check_elementwise_input(x, order, "order");
  check_coefficients(coefficients, x);
  const at::Tensor input = x.contiguous();
  const at::Tensor coef = coefficients.contiguous();
  at::Tensor out = at::empty(stacked_shape(x, order), input.options());
  const int64_t n = input.numel();
  if (n == 0) return out;
  const int64_t num_coefficients = coef.numel();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "polynomial_derivatives_cpu", [&] {
    const scalar_t* in_ptr = input.const_data_ptr<scalar_t>();
    const scalar_t* c_ptr = coef.const_data_ptr<scalar_t>();
    scalar_t* out_ptr = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrainSize, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        for (int64_t k = 0; k <= order; ++k) {
          out_ptr[k * n + i] = math::polynomial_derivative<scalar_t>(
              c_ptr, num_coefficients, static_cast<int>(k), in_ptr[i]);
        }
      }
    });
  });
  return out;
}

at::Tensor polynomial_derivatives_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                               const at::Tensor& coefficients, int64_t shift) {
  check_elementwise_input(x, 0, "order");
  const int64_t m = check_backward_grad(grad, x, shift);
  check_coefficients(coefficients, x);
  const at::Tensor input = x.contiguous();
  const at::Tensor weights = grad.contiguous();
  const at::Tensor coef = coefficients.contiguous();
  at::Tensor out = at::empty_like(input);
  const int64_t n = input.numel();
  if (n == 0) return out;
  const int64_t num_coefficients = coef.numel();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "polynomial_derivatives_backward_cpu", [&] {
    const scalar_t* in_ptr = input.const_data_ptr<scalar_t>();
    const scalar_t* w_ptr = weights.const_data_ptr<scalar_t>();
    const scalar_t* c_ptr = coef.const_data_ptr<scalar_t>();
    scalar_t* out_ptr = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrainSize, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        scalar_t acc = scalar_t(0);
        for (int64_t k = 0; k <= m; ++k) {
          acc += w_ptr[k * n + i] * math::polynomial_derivative<scalar_t>(
                                        c_ptr, num_coefficients, static_cast<int>(k + shift), in_ptr[i]);
        }
        out_ptr[i] = acc;
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace hoderiv

TORCH_LIBRARY_IMPL(hoderiv_ext, CPU, m) {
  m.impl("elementwise_derivatives", &hoderiv::elementwise_derivatives_cpu);
  m.impl("elementwise_derivatives_backward", &hoderiv::elementwise_derivatives_backward_cpu);
  m.impl("polynomial_derivatives", &hoderiv::polynomial_derivatives_cpu);
  m.impl("polynomial_derivatives_backward", &hoderiv::polynomial_derivatives_backward_cpu);
}
