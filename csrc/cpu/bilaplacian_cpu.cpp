// CPU implementations of the bi-Laplacian's extra-slot step (math:
// hoderiv/bilaplacian_math.h, shared with the CUDA kernels; checks and
// operands: csrc/ops/prepare_bilaplacian.cpp): parallel over samples,
// vectorised over the units of a row and compiled for several instruction
// sets (simd.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "cpu/simd.h"
#include "hoderiv/bilaplacian_math.h"
#include "hoderiv/order_dispatch.h"
#include "ops/prepare.h"
#include "ops/registration.h"

namespace hoderiv {
namespace {

template <typename scalar_t>
struct ExtraRows {
  const scalar_t* jet;    // main jet, sample stride jet_stride, slot stride m
  const scalar_t* bias;   // (m) or nullptr
  const scalar_t* extra;  // extra jet, sample stride extra_stride, slot stride m
  const scalar_t* grad;   // backward: (N, p + 1, m) contiguous; else nullptr
  scalar_t* out;          // forward: extra jet of phi(a); backward: gradient w.r.t. extra (N, p + 1, m)
  scalar_t* grad_jet;     // backward: (N, S, m); else nullptr
  int64_t jet_stride, extra_stride, m;
  bilaplacian::ExtraLayout layout;  // points into the call's host dims list
  math::FunctionParams params;
};

template <typename scalar_t>
ExtraRows<scalar_t> rows_of(const BilaplacianExtraCall& call) {
  const auto pointer = [](const at::Tensor& t) { return t.defined() ? t.const_data_ptr<scalar_t>() : nullptr; };
  return {pointer(call.jet),
          pointer(call.bias),
          pointer(call.extra),
          pointer(call.grad),
          call.out.mutable_data_ptr<scalar_t>(),
          call.grad_jet.defined() ? call.grad_jet.mutable_data_ptr<scalar_t>() : nullptr,
          call.jet_sample_stride,
          call.extra_sample_stride,
          call.m,
          call.layout(),
          call.parsed.params};
}

// Columns per block (the math's local per-column sums hold kPhiBlock entries).
constexpr int64_t kPhiBlock = 128;

// phi^(k)(a + bias), k = 0..K, for `width` <= kPhiBlock adjacent units into
// phi[k * width + c], through a fixed-size local array (as the elementwise
// kernels do): jet::activation_derivatives' runtime-strided stores are fine
// up to K = 4, but for K = 5 gcc 12 leaves that loop scalar inside
// target_clones functions (measured 9x slower than this form).
template <typename scalar_t, int K, math::Function F>
HODERIV_HD void row_derivatives(const scalar_t* __restrict__ a, const scalar_t* __restrict__ bias, int64_t width,
                                const math::FunctionParams& params, scalar_t* __restrict__ phi) {
  scalar_t block[K + 1][kPhiBlock];
  if (bias != nullptr) {
    for (int64_t i = 0; i < width; ++i) {
      scalar_t d[K + 1];
      math::derivatives<scalar_t, K>(F, params, a[i] + bias[i], d);
      for (int k = 0; k <= K; ++k) block[k][i] = d[k];
    }
  } else {
    for (int64_t i = 0; i < width; ++i) {
      scalar_t d[K + 1];
      math::derivatives<scalar_t, K>(F, params, a[i], d);
      for (int k = 0; k <= K; ++k) block[k][i] = d[k];
    }
  }
  for (int k = 0; k <= K; ++k) {
    for (int64_t i = 0; i < width; ++i) phi[k * width + i] = block[k][i];
  }
}

// The loops over samples [begin, end), with the function F fixed at compile
// time so phi^(k) folds to straight-line, vectorisable code.
template <typename scalar_t, math::Function F>
HODERIV_CPU_CLONES void extra_forward_samples(const ExtraRows<scalar_t>& rows, int64_t begin, int64_t end) {
  const int64_t m = rows.m, extra_slots = rows.layout.extra_slots();
  scalar_t phi[5 * kPhiBlock];
  for (int64_t sample = begin; sample < end; ++sample) {
    const scalar_t* jet = rows.jet + sample * rows.jet_stride;
    const scalar_t* extra = rows.extra + sample * rows.extra_stride;
    scalar_t* out = rows.out + sample * extra_slots * m;
    for (int64_t start = 0; start < m; start += kPhiBlock) {  // blocks of columns: the math's local sums
      const int64_t width = std::min(kPhiBlock, m - start);
      row_derivatives<scalar_t, 4, F>(jet + start, rows.bias != nullptr ? rows.bias + start : nullptr, width,
                                      rows.params, phi);
      bilaplacian::forward_columns<scalar_t, kPhiBlock>(jet + start, extra + start, out + start, m, width, phi,
                                                        rows.layout);
    }
  }
}

template <typename scalar_t, math::Function F>
HODERIV_CPU_CLONES void extra_backward_samples(const ExtraRows<scalar_t>& rows, int64_t begin, int64_t end) {
  const int64_t m = rows.m, extra_slots = rows.layout.extra_slots(), jet_slots = rows.layout.jet_slots();
  scalar_t phi[6 * kPhiBlock];
  for (int64_t sample = begin; sample < end; ++sample) {
    const scalar_t* jet = rows.jet + sample * rows.jet_stride;
    const scalar_t* extra = rows.extra + sample * rows.extra_stride;
    const scalar_t* grad = rows.grad + sample * extra_slots * m;
    scalar_t* grad_jet = rows.grad_jet + sample * jet_slots * m;
    scalar_t* grad_extra = rows.out + sample * extra_slots * m;
    for (int64_t start = 0; start < m; start += kPhiBlock) {
      const int64_t width = std::min(kPhiBlock, m - start);
      row_derivatives<scalar_t, 5, F>(jet + start, rows.bias != nullptr ? rows.bias + start : nullptr, width,
                                      rows.params, phi);
      bilaplacian::backward_columns<scalar_t, kPhiBlock>(grad + start, jet + start, extra + start, grad_jet + start,
                                                         grad_extra + start, m, width, phi, rows.layout);
    }
  }
}

// Samples per parallel task, from the shapes alone.
int64_t grain_for(int64_t m, int64_t slots) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, m * slots)); }

template <bool Backward>
void run_samples(const BilaplacianExtraCall& call) {
  if (call.out.numel() == 0) return;
  const int64_t slots = call.layout().jet_slots() + call.layout().extra_slots();
  AT_DISPATCH_FLOATING_TYPES(call.out.scalar_type(), "jet_bilaplacian_extra_cpu", [&] {
    const ExtraRows<scalar_t> rows = rows_of<scalar_t>(call);
    dispatch_function(call.parsed.function, [&](auto function_tag) {
      constexpr math::Function F = decltype(function_tag)::value;
      at::parallel_for(0, call.n, grain_for(call.m, slots), [&](int64_t begin, int64_t end) {
        if constexpr (Backward) {
          extra_backward_samples<scalar_t, F>(rows, begin, end);
        } else {
          extra_forward_samples<scalar_t, F>(rows, begin, end);
        }
      });
    });
  });
}

at::Tensor jet_bilaplacian_extra_cpu(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                                     const at::Tensor& extra, c10::string_view function,
                                     c10::ArrayRef<double> params, int64_t num_tangents, c10::IntArrayRef dims) {
  const BilaplacianExtraCall call =
      prepare_jet_bilaplacian_extra(jet, bias, extra, function, params, num_tangents, dims);
  run_samples<false>(call);
  return call.out;
}

std::tuple<at::Tensor, at::Tensor> jet_bilaplacian_extra_backward_cpu(
    const at::Tensor& grad, const at::Tensor& jet, const c10::optional<at::Tensor>& bias, const at::Tensor& extra,
    c10::string_view function, c10::ArrayRef<double> params, int64_t num_tangents, c10::IntArrayRef dims) {
  const BilaplacianExtraCall call =
      prepare_jet_bilaplacian_extra_backward(grad, jet, bias, extra, function, params, num_tangents, dims);
  run_samples<true>(call);
  return {call.grad_jet, call.out};
}

}  // namespace

void register_bilaplacian_cpu(torch::Library& library) {
  library.impl("jet_bilaplacian_extra", &jet_bilaplacian_extra_cpu);
  library.impl("jet_bilaplacian_extra_backward", &jet_bilaplacian_extra_backward_cpu);
}

}  // namespace hoderiv
