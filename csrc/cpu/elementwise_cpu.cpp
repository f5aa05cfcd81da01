// CPU implementations of the elementwise derivative ops. The math is in
// hoderiv/derivative_math.h, shared with the CUDA kernels; checks, operands and
// outputs come from prepare_* (csrc/ops/prepare_elementwise.cpp), shared too.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>

#include "cpu/simd.h"
#include "hoderiv/derivative_math.h"
#include "hoderiv/order_dispatch.h"
#include "ops/prepare.h"
#include "ops/registration.h"

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

// The polynomial's derivative table (math::polynomial_table_entry per entry),
// the same table the CUDA kernels build.
template <typename scalar_t>
void fill_polynomial_table(const ElementwiseCall& call) {
  const scalar_t* coefficients = call.coefficients.const_data_ptr<scalar_t>();
  scalar_t* table = call.table.mutable_data_ptr<scalar_t>();
  const int64_t num = call.coefficients.numel();
  for (int64_t entry = 0; entry < call.table.numel(); ++entry) {
    math::polynomial_table_entry<scalar_t>(coefficients, num, table, entry);
  }
}

// p^(k) for k = 0..order of elements [begin, end) into planes of n elements.
template <typename scalar_t>
HODERIV_CPU_CLONES void polynomial_planes(const scalar_t* table, int64_t num, const scalar_t* in, scalar_t* out,
                                          int64_t n, int64_t order, int64_t begin, int64_t end) {
  scalar_t value[kBlock];
  for (int64_t start = begin; start < end; start += kBlock) {
    const int64_t count = std::min(kBlock, end - start);
    for (int64_t k = 0; k <= order; ++k) {
      math::polynomial_horner<scalar_t>(table, num, k, in + start, count, value);
      for (int64_t i = 0; i < count; ++i) out[k * n + start + i] = value[i];
    }
  }
}

// sum_k weights[k] p^(k + shift) of elements [begin, end), weights in planes of n elements.
template <typename scalar_t>
HODERIV_CPU_CLONES void weighted_polynomial(const scalar_t* table, int64_t num, const scalar_t* in,
                                            const scalar_t* weights, scalar_t* out, int64_t n, int64_t num_weights,
                                            int64_t shift, int64_t begin, int64_t end) {
  scalar_t value[kBlock];
  for (int64_t start = begin; start < end; start += kBlock) {
    const int64_t count = std::min(kBlock, end - start);
    scalar_t* o = out + start;
    for (int64_t i = 0; i < count; ++i) o[i] = scalar_t(0);
    for (int64_t k = 0; k < num_weights; ++k) {
      math::polynomial_horner<scalar_t>(table, num, k + shift, in + start, count, value);
      const scalar_t* w = weights + k * n + start;
      for (int64_t i = 0; i < count; ++i) o[i] += w[i] * value[i];
    }
  }
}

at::Tensor elementwise_derivatives_cpu(const at::Tensor& x, c10::string_view function,
                                       c10::ArrayRef<double> params, int64_t order) {
  const ElementwiseCall call = prepare_elementwise(x, function, params, order);
  if (call.n == 0) return call.out;
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "elementwise_derivatives_cpu", [&] {
    const scalar_t* in_ptr = call.input.const_data_ptr<scalar_t>();
    scalar_t* out_ptr = call.out.mutable_data_ptr<scalar_t>();
    dispatch_taylor_order(static_cast<int>(call.order), [&](auto order_tag) {
      constexpr int K = decltype(order_tag)::value;
      dispatch_function(call.parsed.function, [&](auto function_tag) {
        constexpr math::Function function = decltype(function_tag)::value;
        at::parallel_for(0, call.n, kGrainSize, [&](int64_t begin, int64_t end) {
          derivative_planes<scalar_t, K, function>(in_ptr, out_ptr, call.n, call.order, call.parsed.params, begin,
                                                   end);
        });
      });
    });
  });
  return call.out;
}

at::Tensor elementwise_derivatives_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                c10::string_view function,
                                                c10::ArrayRef<double> params, int64_t shift) {
  const ElementwiseCall call = prepare_elementwise_backward(grad, x, function, params, shift);
  if (call.n == 0) return call.out;
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "elementwise_derivatives_backward_cpu", [&] {
    const scalar_t* in_ptr = call.input.const_data_ptr<scalar_t>();
    const scalar_t* w_ptr = call.weights.const_data_ptr<scalar_t>();
    scalar_t* out_ptr = call.out.mutable_data_ptr<scalar_t>();
    dispatch_taylor_order(static_cast<int>(call.order + call.shift), [&](auto order_tag) {
      constexpr int K = decltype(order_tag)::value;
      dispatch_function(call.parsed.function, [&](auto function_tag) {
        constexpr math::Function function = decltype(function_tag)::value;
        at::parallel_for(0, call.n, kGrainSize, [&](int64_t begin, int64_t end) {
          weighted_derivatives<scalar_t, K, function>(in_ptr, w_ptr, out_ptr, call.n, call.order + 1, call.shift,
                                                      call.parsed.params, begin, end);
        });
      });
    });
  });
  return call.out;
}

at::Tensor polynomial_derivatives_cpu(const at::Tensor& x, const at::Tensor& coefficients,
                                      int64_t order) {
  const ElementwiseCall call = prepare_polynomial(x, coefficients, order);
  if (call.n == 0) return call.out;
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "polynomial_derivatives_cpu", [&] {
    fill_polynomial_table<scalar_t>(call);
    const int64_t num = call.coefficients.numel();
    const scalar_t* table = call.table.const_data_ptr<scalar_t>();
    const scalar_t* in_ptr = call.input.const_data_ptr<scalar_t>();
    scalar_t* out_ptr = call.out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, call.n, kGrainSize, [&](int64_t begin, int64_t end) {
      polynomial_planes<scalar_t>(table, num, in_ptr, out_ptr, call.n, call.order, begin, end);
    });
  });
  return call.out;
}

at::Tensor polynomial_derivatives_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                               const at::Tensor& coefficients, int64_t shift) {
  const ElementwiseCall call = prepare_polynomial_backward(grad, x, coefficients, shift);
  if (call.n == 0) return call.out;
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "polynomial_derivatives_backward_cpu", [&] {
    fill_polynomial_table<scalar_t>(call);
    const int64_t num = call.coefficients.numel();
    const scalar_t* table = call.table.const_data_ptr<scalar_t>();
    const scalar_t* in_ptr = call.input.const_data_ptr<scalar_t>();
    const scalar_t* w_ptr = call.weights.const_data_ptr<scalar_t>();
    scalar_t* out_ptr = call.out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, call.n, kGrainSize, [&](int64_t begin, int64_t end) {
      weighted_polynomial<scalar_t>(table, num, in_ptr, w_ptr, out_ptr, call.n, call.order + 1, call.shift, begin,
                                    end);
    });
  });
  return call.out;
}

}  // namespace

void register_elementwise_cpu(torch::Library& library) {
  library.impl("elementwise_derivatives", &elementwise_derivatives_cpu);
  library.impl("elementwise_derivatives_backward", &elementwise_derivatives_backward_cpu);
  library.impl("polynomial_derivatives", &polynomial_derivatives_cpu);
  library.impl("polynomial_derivatives_backward", &polynomial_derivatives_backward_cpu);
}

}  // namespace hoderiv
