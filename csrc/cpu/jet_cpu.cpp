// CPU implementations of the Taylor-mode activation step (math: hoderiv/jet_math.h),
// vectorised over the units of a row and compiled for several instruction sets (simd.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "hoderiv/jet_math.h"
#include "hoderiv/order_dispatch.h"
#include "ops.h"
#include "simd.h"

namespace hoderiv {
namespace {

// One call's operands: samples are rows of `slots * width` elements.
template <typename scalar_t>
struct JetRows {
  const scalar_t* jet;        // input jet (N, S, m), or the first layer's preactivation (N, m)
  const scalar_t* bias;       // (m) or nullptr
  const scalar_t* weight_t;   // first layer: the weight's transpose (d, m); else nullptr
  const scalar_t* grad;       // backward: gradient of the output jet; else nullptr
  scalar_t* out;
  int64_t slots;
  int64_t width;
  jet::SlotLayout layout;
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
    jet::forward_columns<scalar_t>(in + m, m, in + (1 + rows.layout.num_inputs) * m, rows.out + offset, m, m,
                                   phi.data(), rows.layout);
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
// to the preactivation into rows.out, the weight's two sums into `sums` (one
// chunk's (d + s, m) partial sums, owned by this task).
template <typename scalar_t, math::Function F>
HODERIV_CPU_CLONES void first_backward_samples(const JetRows<scalar_t>& rows, const scalar_t* pair_products,
                                               scalar_t* sums, int64_t begin, int64_t end) {
  const int64_t m = rows.width;
  std::vector<scalar_t> phi(4 * m);
  for (int64_t sample = begin; sample < end; ++sample) {
    jet::activation_derivatives<scalar_t, 3>(rows.jet + sample * m, nullptr, m, F, rows.params, phi.data());
    jet::first_backward_columns<scalar_t>(rows.grad + sample * rows.slots * m, rows.weight_t, pair_products,
                                          rows.out + sample * m, sums, m, m, phi.data(), rows.layout);
  }
}

// Samples per parallel task: enough work per task for any width.
int64_t grain_for(int64_t columns_per_sample, int64_t slots) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, columns_per_sample * slots));
}

template <typename scalar_t>
JetRows<scalar_t> rows_of(const JetCall& call) {
  const auto pointer = [](const at::Tensor& t) { return t.defined() ? t.const_data_ptr<scalar_t>() : nullptr; };
  return {pointer(call.input), pointer(call.bias),  pointer(call.weight_t), pointer(call.grad),
          call.out.mutable_data_ptr<scalar_t>(), call.slots, call.m, call.layout, call.parsed.params};
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

std::tuple<at::Tensor, at::Tensor> jet_activation_first_backward_cpu(
    const at::Tensor& grad, const at::Tensor& preactivation, const at::Tensor& weight, c10::string_view function,
    c10::ArrayRef<double> params, const at::Tensor& pair_i, const at::Tensor& pair_j, bool collapsed) {
  // Chunks of samples as the parallel tasks, each with its own partial sums:
  // the result does not depend on the number of threads.
  JetCall call =
      prepare_jet_activation_first_backward(grad, preactivation, weight, function, params, pair_i, pair_j, collapsed);
  allocate_chunk_sums(call, grain_for(call.m, call.slots));
  if (call.n > 0 && call.m > 0) {
    AT_DISPATCH_FLOATING_TYPES(call.input.scalar_type(), "jet_activation_first_backward_cpu", [&] {
      const JetRows<scalar_t> rows = rows_of<scalar_t>(call);
      const scalar_t* pair_products = call.pair_products.const_data_ptr<scalar_t>();
      scalar_t* sums = call.sums.mutable_data_ptr<scalar_t>();
      const int64_t chunk_size = call.sums.size(1) * call.m;
      dispatch_function(call.parsed.function, [&](auto function_tag) {
        constexpr math::Function F = decltype(function_tag)::value;
        at::parallel_for(0, call.sums.size(0), 1, [&](int64_t first_chunk, int64_t last_chunk) {
          for (int64_t chunk = first_chunk; chunk < last_chunk; ++chunk) {
            const int64_t begin = chunk * call.samples_per_chunk;
            const int64_t end = std::min(call.n, begin + call.samples_per_chunk);
            first_backward_samples<scalar_t, F>(rows, pair_products, sums + chunk * chunk_size, begin, end);
          }
        });
      });
    });
  }
  return finish_jet_activation_first_backward(call);
}

at::Tensor jet_activation_cpu(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                              c10::string_view function, c10::ArrayRef<double> params, const at::Tensor& pair_i,
                              const at::Tensor& pair_j, int64_t num_inputs, bool collapsed) {
  return run_samples<Step::kForward>(
      prepare_jet_activation(jet, bias, function, params, pair_i, pair_j, num_inputs, collapsed));
}

at::Tensor jet_activation_backward_cpu(const at::Tensor& grad, const at::Tensor& jet,
                                       const c10::optional<at::Tensor>& bias, c10::string_view function,
                                       c10::ArrayRef<double> params, const at::Tensor& pair_i,
                                       const at::Tensor& pair_j, int64_t num_inputs, bool collapsed) {
  return run_samples<Step::kBackward>(
      prepare_jet_activation_backward(grad, jet, bias, function, params, pair_i, pair_j, num_inputs, collapsed));
}

at::Tensor jet_activation_first_cpu(const at::Tensor& preactivation, const at::Tensor& weight,
                                    c10::string_view function, c10::ArrayRef<double> params,
                                    const at::Tensor& pair_i, const at::Tensor& pair_j, bool collapsed) {
  return run_samples<Step::kFirst>(
      prepare_jet_activation_first(preactivation, weight, function, params, pair_i, pair_j, collapsed));
}

}  // namespace
}  // namespace hoderiv

TORCH_LIBRARY_IMPL(hoderiv_ext, CPU, m) {
  m.impl("jet_activation", &hoderiv::jet_activation_cpu);
  m.impl("jet_activation_backward", &hoderiv::jet_activation_backward_cpu);
  m.impl("jet_activation_first", &hoderiv::jet_activation_first_cpu);
  m.impl("jet_activation_first_backward", &hoderiv::jet_activation_first_backward_cpu);
}
