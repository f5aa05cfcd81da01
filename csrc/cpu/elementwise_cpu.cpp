// CPU implementations of the elementwise derivative ops. The math is in
// hoderiv/derivative_math.h, shared with the CUDA kernels.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "hoderiv/derivative_math.h"
#include "hoderiv/order_dispatch.h"
#include "ops.h"

namespace hoderiv {
namespace {

constexpr int64_t kGrainSize = 4096;

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
          for (int64_t i = begin; i < end; ++i) {
            scalar_t d[K + 1];
            math::derivatives<scalar_t, K>(function, parsed.params, in_ptr[i], d);
            for (int64_t k = 0; k <= order; ++k) out_ptr[k * n + i] = d[k];
          }
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
          for (int64_t i = begin; i < end; ++i) {
            scalar_t d[K + 1];
            math::derivatives<scalar_t, K>(function, parsed.params, in_ptr[i], d);
            scalar_t acc = scalar_t(0);
            for (int64_t k = 0; k <= m; ++k) acc += w_ptr[k * n + i] * d[k + shift];
            out_ptr[i] = acc;
          }
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
