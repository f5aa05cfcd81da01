// CPU implementations of the univariate Taylor step (math:
// hoderiv/univariate_math.h, shared with the CUDA kernels; checks and
// operands: csrc/ops/prepare_univariate.cpp): parallel over samples,
// vectorised over the units of a row and compiled for several instruction
// sets (simd.h).
//
// Per block of up to kBlock units of one sample, two compiled loops:
//   * the derivative block: s_k = phi^(k)(a) / k! for k = 0..Kd, with the
//     function F fixed at compile time, Kd = 2, 4, 5 or 8, the smallest
//     covering the orders the step needs (K, or K + 1 for the backward):
//     dispatch_taylor_order's sizes plus 5, for the backward of the common
//     K = 4 (order 8 there made it 1.3x slower);
//   * the step: forward_columns / backward_columns of the exact order K.
// Splitting them keeps the instantiations at 4 Kd x 13 functions + 15 orders
// per dtype and instruction set, instead of 15 x 13 (a one-loop version,
// every (K, F) pair inlined, would take several times the compile time of
// the other CPU files for no measurable gain: the step never re-reads phi).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>

#include "cpu/simd.h"
#include "hoderiv/order_dispatch.h"
#include "hoderiv/univariate_math.h"
#include "ops/prepare.h"
#include "ops/registration.h"

namespace hoderiv {
namespace {

// Columns per block (the math's local per-column arrays hold kBlock entries).
constexpr int64_t kBlock = 128;

// The derivative block's order for a step that needs orders 0..needed.
constexpr int derivative_block_order(int needed) {
  static_assert(math::kMaxOrder == 8, "update derivative_block_order");
  return needed <= 2 ? 2 : needed <= 4 ? 4 : needed <= 5 ? 5 : 8;
}

template <typename scalar_t, int Kd>
using TaylorBlock = scalar_t[Kd + 1][kBlock];

template <typename scalar_t>
struct UnivariateRows {
  const scalar_t* jet;   // sample stride jet_stride, slot stride m
  const scalar_t* bias;  // (m) or nullptr
  const scalar_t* grad;  // backward: (N, S, m) contiguous; else nullptr
  scalar_t* out;         // (N, S, m): the jet of phi(a), or the gradient w.r.t. the jet
  int64_t jet_stride, m;
  univariate::Layout layout;
  math::FunctionParams params;
};

template <typename scalar_t>
UnivariateRows<scalar_t> rows_of(const UnivariateCall& call) {
  return {call.jet.const_data_ptr<scalar_t>(),
          call.bias.defined() ? call.bias.const_data_ptr<scalar_t>() : nullptr,
          call.grad.defined() ? call.grad.const_data_ptr<scalar_t>() : nullptr,
          call.out.mutable_data_ptr<scalar_t>(),
          call.jet_sample_stride,
          call.m,
          call.layout(),
          call.parsed.params};
}

// s_k of `width` <= kBlock adjacent units, the function fixed at compile time.
template <typename scalar_t, int Kd, math::Function F>
HODERIV_CPU_CLONES void derivative_block(const scalar_t* a, const scalar_t* bias, int64_t width,
                                         const math::FunctionParams& params, TaylorBlock<scalar_t, Kd>& taylor) {
  univariate::taylor_columns<scalar_t, Kd, kBlock>(a, bias, width, F, params, taylor);
}

template <typename scalar_t, int Kd>
using DerivativeBlock = void (*)(const scalar_t*, const scalar_t*, int64_t, const math::FunctionParams&,
                                 TaylorBlock<scalar_t, Kd>&);

template <typename scalar_t, int Kd>
DerivativeBlock<scalar_t, Kd> derivative_block_for(math::Function function) {
  DerivativeBlock<scalar_t, Kd> chosen = nullptr;
  dispatch_function(function, [&](auto function_tag) {
    chosen = &derivative_block<scalar_t, Kd, decltype(function_tag)::value>;
  });
  return chosen;
}

template <typename scalar_t, int K>
HODERIV_CPU_CLONES void forward_block(const scalar_t* jet, scalar_t* out, int64_t m, int64_t width,
                                      const scalar_t (*taylor)[kBlock], const univariate::Layout& layout) {
  univariate::forward_columns<scalar_t, K, kBlock>(jet, out, m, width, taylor, layout);
}

template <typename scalar_t, int K>
HODERIV_CPU_CLONES void backward_block(const scalar_t* grad, const scalar_t* jet, scalar_t* grad_jet, int64_t m,
                                       int64_t width, const scalar_t (*taylor)[kBlock],
                                       const univariate::Layout& layout) {
  univariate::backward_columns<scalar_t, K, kBlock>(grad, jet, grad_jet, m, width, taylor, layout);
}

// Samples [begin, end) of the step of order K (forward or backward).
template <typename scalar_t, int K, bool Backward>
void run_rows(const UnivariateRows<scalar_t>& rows, int64_t begin, int64_t end,
              DerivativeBlock<scalar_t, derivative_block_order(Backward ? K + 1 : K)> derivatives) {
  constexpr int Kd = derivative_block_order(Backward ? K + 1 : K);
  const int64_t m = rows.m, slots = rows.layout.slots();
  TaylorBlock<scalar_t, Kd> taylor;
  for (int64_t sample = begin; sample < end; ++sample) {
    const scalar_t* jet = rows.jet + sample * rows.jet_stride;
    scalar_t* out = rows.out + sample * slots * m;
    for (int64_t start = 0; start < m; start += kBlock) {
      const int64_t width = std::min(kBlock, m - start);
      derivatives(jet + start, rows.bias != nullptr ? rows.bias + start : nullptr, width, rows.params, taylor);
      if constexpr (Backward) {
        backward_block<scalar_t, K>(rows.grad + sample * slots * m + start, jet + start, out + start, m, width,
                                    taylor, rows.layout);
      } else {
        forward_block<scalar_t, K>(jet + start, out + start, m, width, taylor, rows.layout);
      }
    }
  }
}

// Samples per parallel task, from the shapes alone (results do not depend on it).
int64_t grain_for(int64_t m, int64_t slots) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, m * slots)); }

template <bool Backward>
void run_samples(const UnivariateCall& call) {
  if (call.out.numel() == 0) return;
  constexpr int kHighest = Backward ? math::kMaxOrder - 1 : math::kMaxOrder;
  AT_DISPATCH_FLOATING_TYPES(call.out.scalar_type(), "jet_univariate_cpu", [&] {
    const UnivariateRows<scalar_t> rows = rows_of<scalar_t>(call);
    univariate::dispatch_order<kHighest>(call.order, [&](auto order_tag) {
      constexpr int K = decltype(order_tag)::value;
      constexpr int Kd = derivative_block_order(Backward ? K + 1 : K);
      const DerivativeBlock<scalar_t, Kd> derivatives = derivative_block_for<scalar_t, Kd>(call.parsed.function);
      at::parallel_for(0, call.n, grain_for(call.m, rows.layout.slots()), [&](int64_t begin, int64_t end) {
        run_rows<scalar_t, K, Backward>(rows, begin, end, derivatives);
      });
    });
  });
}

at::Tensor jet_univariate_cpu(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                              c10::string_view function, c10::ArrayRef<double> params, int64_t num_tangents,
                              int64_t order) {
  const UnivariateCall call = prepare_jet_univariate(jet, bias, function, params, num_tangents, order);
  run_samples<false>(call);
  return call.out;
}

at::Tensor jet_univariate_backward_cpu(const at::Tensor& grad, const at::Tensor& jet,
                                       const c10::optional<at::Tensor>& bias, c10::string_view function,
                                       c10::ArrayRef<double> params, int64_t num_tangents, int64_t order) {
  const UnivariateCall call =
      prepare_jet_univariate_backward(grad, jet, bias, function, params, num_tangents, order);
  run_samples<true>(call);
  return call.out;
}

}  // namespace

void register_univariate_cpu(torch::Library& library) {
  library.impl("jet_univariate", &jet_univariate_cpu);
  library.impl("jet_univariate_backward", &jet_univariate_backward_cpu);
}

}  // namespace hoderiv
