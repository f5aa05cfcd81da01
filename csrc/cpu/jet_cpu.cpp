// CPU implementations of the Taylor-mode activation step (math: hoderiv/jet_math.h;
// checks and operands: csrc/ops/prepare_jet.cpp), vectorised over the units of a
// row and compiled for several instruction sets (simd.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "cpu/simd.h"
#include "hoderiv/jet_math.h"
#include "hoderiv/order_dispatch.h"
#include "ops/prepare.h"
#include "ops/registration.h"

namespace hoderiv {
namespace {

// One call's operands: samples are rows of `slots * width` elements.
template <typename scalar_t>
struct JetRows {
  const scalar_t* jet;       // input jet (N, S, m), or the first layer's preactivation (N, m)
  const scalar_t* bias;      // (m) or nullptr
  const scalar_t* weight_t;  // first layer: the weight's transpose (t, m); else nullptr
  const scalar_t* grad;      // backward: gradient of the output jet; else nullptr
  const scalar_t* residual;  // forward step: a jet (N, S, m) added to the output; else nullptr
  scalar_t* out;
  int64_t slots;
  int64_t width;
  jet::SlotLayout layout;  // points into the call's host index lists
  math::FunctionParams params;
};

// The loops over samples [begin, end), with the function F fixed at compile
// time so phi^(k) folds to straight-line, vectorisable code. Each is compiled
// for several instruction sets (simd.h).
template <typename scalar_t, math::Function F>
HODERIV_CPU_CLONES void forward_samples(const JetRows<scalar_t>& rows, int64_t begin, int64_t end) {
  const int64_t m = rows.width;
  std::vector<scalar_t> phi(3 * m);
  for (int64_t sample = begin; sample < end; ++sample) {
    const int64_t offset = sample * rows.slots * m;
    const scalar_t* in = rows.jet + offset;
    jet::activation_derivatives<scalar_t, 2>(in, rows.bias, m, F, rows.params, phi.data());
    jet::forward_columns<scalar_t>(in + m, m, in + rows.layout.pair_slot() * m, rows.out + offset, m, m, phi.data(),
                                   rows.layout);
    if (rows.residual != nullptr) {  // the sample's output row is still in cache
      jet::add_residual_columns<scalar_t>(rows.residual + offset, rows.out + offset, 1, 0, rows.slots * m);
    }
  }
}

template <typename scalar_t, math::Function F>
HODERIV_CPU_CLONES void backward_samples(const JetRows<scalar_t>& rows, int64_t begin, int64_t end) {
  const int64_t m = rows.width;
  std::vector<scalar_t> phi(4 * m);
  for (int64_t sample = begin; sample < end; ++sample) {
    const int64_t offset = sample * rows.slots * m;
    jet::activation_derivatives<scalar_t, 3>(rows.jet + offset, rows.bias, m, F, rows.params, phi.data());
    jet::backward_columns<scalar_t>(rows.grad + offset, rows.jet + offset, rows.out + offset, m, m, phi.data(),
                                    rows.layout);
  }
}

template <typename scalar_t, math::Function F>
HODERIV_CPU_CLONES void first_forward_samples(const JetRows<scalar_t>& rows, int64_t begin, int64_t end) {
  const int64_t m = rows.width;
  std::vector<scalar_t> phi(3 * m);
  for (int64_t sample = begin; sample < end; ++sample) {
    jet::activation_derivatives<scalar_t, 2>(rows.jet + sample * m, nullptr, m, F, rows.params, phi.data());
    jet::forward_columns<scalar_t>(rows.weight_t, m, nullptr, rows.out + sample * rows.slots * m, m, m, phi.data(),
                                   rows.layout);
  }
}

// First layer's backward over the samples [begin, end): gradient with respect
// to the preactivation into rows.out, the weight's sums into `sums` (one
// chunk's partial sums, owned and zeroed by this task). collapsed_square: (m).
template <typename scalar_t, math::Function F>
HODERIV_CPU_CLONES void first_backward_samples(const JetRows<scalar_t>& rows, const scalar_t* collapsed_square,
                                               scalar_t* sums, int64_t begin, int64_t end) {
  const int64_t m = rows.width;
  std::fill(sums, sums + jet::first_sum_rows(rows.layout) * m, scalar_t(0));
  std::vector<scalar_t> phi(4 * m);
  for (int64_t sample = begin; sample < end; ++sample) {
    jet::activation_derivatives<scalar_t, 3>(rows.jet + sample * m, nullptr, m, F, rows.params, phi.data());
    jet::first_backward_columns<scalar_t>(rows.grad + sample * rows.slots * m, rows.weight_t, collapsed_square,
                                          rows.out + sample * m, sums, m, m, phi.data(), rows.layout);
  }
}

// Samples per parallel task: enough work per task for any width. It depends
// on the shapes only, never on the number of threads, so the first layer's
// chunked sums (one chunk per task) add up the same on every machine.
int64_t grain_for(int64_t columns_per_sample, int64_t slots) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, columns_per_sample * slots));
}

template <typename scalar_t>
JetRows<scalar_t> rows_of(const JetCall& call) {
  const auto pointer = [](const at::Tensor& t) { return t.defined() ? t.const_data_ptr<scalar_t>() : nullptr; };
  return {pointer(call.input),
          pointer(call.bias),
          pointer(call.weight_t),
          pointer(call.grad),
          pointer(call.residual),
          call.out.mutable_data_ptr<scalar_t>(),
          call.slots,
          call.m,
          call.indices.layout(),
          call.parsed.params};
}

enum class Step { kForward, kBackward, kFirst };

// Runs one step's loop over the samples of a prepared call, in parallel.
// (prepare_* has checked the dtype: the dispatch name never shows.)
template <Step S>
at::Tensor run_samples(const JetCall& call) {
  if (call.out.numel() == 0) return call.out;
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "jet_activation_cpu", [&] {
    const JetRows<scalar_t> rows = rows_of<scalar_t>(call);
    dispatch_function(call.parsed.function, [&](auto function_tag) {
      constexpr math::Function F = decltype(function_tag)::value;
      at::parallel_for(0, call.n, grain_for(call.m, call.slots), [&](int64_t begin, int64_t end) {
        if constexpr (S == Step::kForward) {
          forward_samples<scalar_t, F>(rows, begin, end);
        } else if constexpr (S == Step::kBackward) {
          backward_samples<scalar_t, F>(rows, begin, end);
        } else {
          first_forward_samples<scalar_t, F>(rows, begin, end);
        }
      });
    });
  });
  return call.out;
}

// gW (m, t) from the chunk sums: the chunks added up row by row in chunk
// order (jet::sum_chunks_columns, a streaming loop over units), then one
// jet::first_weight_grad_entry per entry from the totals. Every total and
// entry is computed whole by one task: the result does not depend on the
// number of threads.
template <typename scalar_t>
void first_weight_grad(const JetCall& call) {
  const jet::SlotLayout layout = call.indices.layout();
  const int64_t t = layout.num_tangents, m = call.m;
  const int64_t rows = jet::first_sum_rows(layout);
  const scalar_t* sums = call.sums.const_data_ptr<scalar_t>();
  const scalar_t* weight_t = call.weight_t.const_data_ptr<scalar_t>();
  scalar_t* grad_weight = call.grad_weight.mutable_data_ptr<scalar_t>();
  std::vector<scalar_t> totals(rows * m);
  at::parallel_for(0, rows, 1, [&](int64_t first_row, int64_t last_row) {
    for (int64_t row = first_row; row < last_row; ++row) {
      jet::sum_chunks_columns<scalar_t>(sums + row * m, call.chunks, rows * m, m, totals.data() + row * m);
    }
  });
  // Entry e = k * m + unit.
  at::parallel_for(0, t * m, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      const int64_t k = e / m, unit = e - k * m;
      grad_weight[unit * t + k] =
          jet::first_weight_grad_entry<scalar_t>(totals.data(), 1, rows * m, weight_t, m, k, unit, layout);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> jet_activation_first_backward_cpu(
    const at::Tensor& grad, const at::Tensor& preactivation, const at::Tensor& weight, c10::string_view function,
    c10::ArrayRef<double> params, c10::IntArrayRef pair_i, c10::IntArrayRef pair_j, c10::IntArrayRef collapsed) {
  JetCall call =
      prepare_jet_activation_first_backward(grad, preactivation, weight, function, params, pair_i, pair_j, collapsed);
  if (call.m == 0) return {call.out, call.grad_weight};
  // The chunk size from the shapes alone (grain_for), each chunk a parallel
  // task with its own partial sums: the result does not depend on the number
  // of threads.
  allocate_chunk_sums(call, grain_for(call.m, call.slots));
  AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "jet_activation_first_backward_cpu", [&] {
    if (call.n > 0) {
      const JetRows<scalar_t> rows = rows_of<scalar_t>(call);
      std::vector<scalar_t> collapsed_square(call.m);
      jet::collapsed_square_sum<scalar_t>(rows.weight_t, call.m, call.m, rows.layout, collapsed_square.data());
      scalar_t* sums = call.sums.mutable_data_ptr<scalar_t>();
      const int64_t chunk_stride = call.sums.size(1) * call.m;
      dispatch_function(call.parsed.function, [&](auto function_tag) {
        constexpr math::Function F = decltype(function_tag)::value;
        at::parallel_for(0, call.chunks, 1, [&](int64_t first_chunk, int64_t last_chunk) {
          for (int64_t chunk = first_chunk; chunk < last_chunk; ++chunk) {
            const int64_t begin = chunk * call.samples_per_chunk;
            const int64_t end = std::min(call.n, begin + call.samples_per_chunk);
            first_backward_samples<scalar_t, F>(rows, collapsed_square.data(), sums + chunk * chunk_stride, begin,
                                                end);
          }
        });
      });
    }
    first_weight_grad<scalar_t>(call);
  });
  return {call.out, call.grad_weight};
}

at::Tensor jet_activation_cpu(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                              c10::string_view function, c10::ArrayRef<double> params, int64_t num_tangents,
                              c10::IntArrayRef pair_i, c10::IntArrayRef pair_j, c10::IntArrayRef collapsed,
                              const c10::optional<at::Tensor>& residual) {
  return run_samples<Step::kForward>(
      prepare_jet_activation(jet, bias, function, params, num_tangents, pair_i, pair_j, collapsed, residual));
}

at::Tensor jet_activation_backward_cpu(const at::Tensor& grad, const at::Tensor& jet,
                                       const c10::optional<at::Tensor>& bias, c10::string_view function,
                                       c10::ArrayRef<double> params, int64_t num_tangents, c10::IntArrayRef pair_i,
                                       c10::IntArrayRef pair_j, c10::IntArrayRef collapsed) {
  return run_samples<Step::kBackward>(
      prepare_jet_activation_backward(grad, jet, bias, function, params, num_tangents, pair_i, pair_j, collapsed));
}

at::Tensor jet_activation_first_cpu(const at::Tensor& preactivation, const at::Tensor& weight,
                                    c10::string_view function, c10::ArrayRef<double> params,
                                    c10::IntArrayRef pair_i, c10::IntArrayRef pair_j, c10::IntArrayRef collapsed) {
  return run_samples<Step::kFirst>(
      prepare_jet_activation_first(preactivation, weight, function, params, pair_i, pair_j, collapsed));
}

}  // namespace

void register_jet_cpu(torch::Library& library) {
  library.impl("jet_activation", &jet_activation_cpu);
  library.impl("jet_activation_backward", &jet_activation_backward_cpu);
  library.impl("jet_activation_first", &jet_activation_first_cpu);
  library.impl("jet_activation_first_backward", &jet_activation_first_backward_cpu);
}

}  // namespace hoderiv
