// CPU implementations of the Taylor-mode activation step (math: hoderiv/jet_math.h),
// vectorised over the units of a row and compiled for several instruction sets (simd.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <vector>

#include "hoderiv/jet_math.h"
#include "hoderiv/order_dispatch.h"
#include "ops.h"
#include "simd.h"

namespace hoderiv {
namespace {

jet::SlotLayout layout_of(const at::Tensor& pair_i, const at::Tensor& pair_j, int64_t num_inputs, bool collapsed,
                          int64_t num_second) {
  return jet::SlotLayout{num_inputs, num_second, collapsed, pair_i.const_data_ptr<int64_t>(),
                         pair_j.const_data_ptr<int64_t>()};
}

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
    jet::activation_derivatives<scalar_t, 2>(rows.jet + offset, rows.bias, m, F, rows.params, phi.data());
    jet::forward_columns<scalar_t>(rows.jet + offset, rows.out + offset, m, m, phi.data(), rows.layout);
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
    jet::first_forward_columns<scalar_t>(rows.weight_t, m, rows.out + sample * rows.slots * m, m, m, phi.data(),
                                         rows.layout);
  }
}

// Samples per parallel task: enough work per task for any width.
int64_t grain_for(int64_t columns_per_sample, int64_t slots) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, columns_per_sample * slots));
}

at::Tensor jet_activation_cpu(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                              c10::string_view function, c10::ArrayRef<double> params, const at::Tensor& pair_i,
                              const at::Tensor& pair_j, int64_t num_inputs, bool collapsed) {
  const int64_t num_second = check_jet_layout(jet, "jet", pair_i, pair_j, num_inputs, collapsed);
  check_bias(bias, jet);
  const ParsedFunction parsed = parse_function(std::string_view(function.data(), function.size()), params);
  const at::Tensor input = jet.contiguous();
  const at::Tensor pi = pair_i.contiguous(), pj = pair_j.contiguous();
  at::Tensor out = at::empty_like(input);
  const int64_t n = input.size(0), slots = input.size(1), m = input.size(2);
  if (out.numel() == 0) return out;
  const at::Tensor bias_c = bias.has_value() ? bias->contiguous() : at::Tensor();
  const jet::SlotLayout layout = layout_of(pi, pj, num_inputs, collapsed, num_second);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "jet_activation_cpu", [&] {
    const JetRows<scalar_t> rows{input.const_data_ptr<scalar_t>(),
                                 bias_c.defined() ? bias_c.const_data_ptr<scalar_t>() : nullptr,
                                 nullptr,
                                 nullptr,
                                 out.mutable_data_ptr<scalar_t>(),
                                 slots,
                                 m,
                                 layout,
                                 parsed.params};
    dispatch_function(parsed.function, [&](auto function_tag) {
      at::parallel_for(0, n, grain_for(m, slots), [&](int64_t begin, int64_t end) {
        forward_samples<scalar_t, decltype(function_tag)::value>(rows, begin, end);
      });
    });
  });
  return out;
}

at::Tensor jet_activation_backward_cpu(const at::Tensor& grad, const at::Tensor& jet,
                                       const c10::optional<at::Tensor>& bias, c10::string_view function,
                                       c10::ArrayRef<double> params, const at::Tensor& pair_i,
                                       const at::Tensor& pair_j, int64_t num_inputs, bool collapsed) {
  const int64_t num_second = check_jet_layout(jet, "jet", pair_i, pair_j, num_inputs, collapsed);
  check_jet_grad(grad, jet);
  check_bias(bias, jet);
  const ParsedFunction parsed = parse_function(std::string_view(function.data(), function.size()), params);
  const at::Tensor input = jet.contiguous();
  const at::Tensor grad_out = grad.contiguous();
  const at::Tensor pi = pair_i.contiguous(), pj = pair_j.contiguous();
  at::Tensor grad_in = at::empty_like(input);
  const int64_t n = input.size(0), slots = input.size(1), m = input.size(2);
  if (grad_in.numel() == 0) return grad_in;
  const at::Tensor bias_c = bias.has_value() ? bias->contiguous() : at::Tensor();
  const jet::SlotLayout layout = layout_of(pi, pj, num_inputs, collapsed, num_second);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "jet_activation_backward_cpu", [&] {
    const JetRows<scalar_t> rows{input.const_data_ptr<scalar_t>(),
                                 bias_c.defined() ? bias_c.const_data_ptr<scalar_t>() : nullptr,
                                 nullptr,
                                 grad_out.const_data_ptr<scalar_t>(),
                                 grad_in.mutable_data_ptr<scalar_t>(),
                                 slots,
                                 m,
                                 layout,
                                 parsed.params};
    dispatch_function(parsed.function, [&](auto function_tag) {
      at::parallel_for(0, n, grain_for(m, slots), [&](int64_t begin, int64_t end) {
        backward_samples<scalar_t, decltype(function_tag)::value>(rows, begin, end);
      });
    });
  });
  return grad_in;
}

at::Tensor jet_activation_first_cpu(const at::Tensor& preactivation, const at::Tensor& weight,
                                    c10::string_view function, c10::ArrayRef<double> params,
                                    const at::Tensor& pair_i, const at::Tensor& pair_j, bool collapsed) {
  const std::vector<int64_t> out_shape = check_first_layer(preactivation, weight, pair_i, collapsed);
  at::Tensor out = at::empty(out_shape, preactivation.options());
  const int64_t n = out_shape[0], m = out_shape[2], d = weight.size(1);
  const int64_t num_second = check_jet_layout(out, "the output jet", pair_i, pair_j, d, collapsed);
  if (out.numel() == 0) return out;
  const ParsedFunction parsed = parse_function(std::string_view(function.data(), function.size()), params);
  const at::Tensor pre = preactivation.contiguous();
  const at::Tensor weight_t = weight.t().contiguous();  // (d, m): row i holds T_i for every unit
  const at::Tensor pi = pair_i.contiguous(), pj = pair_j.contiguous();
  const jet::SlotLayout layout = layout_of(pi, pj, d, collapsed, num_second);
  const int64_t slots = out.size(1);
  AT_DISPATCH_FLOATING_TYPES(pre.scalar_type(), "jet_activation_first_cpu", [&] {
    const JetRows<scalar_t> rows{pre.const_data_ptr<scalar_t>(),
                                 nullptr,
                                 weight_t.const_data_ptr<scalar_t>(),
                                 nullptr,
                                 out.mutable_data_ptr<scalar_t>(),
                                 slots,
                                 m,
                                 layout,
                                 parsed.params};
    dispatch_function(parsed.function, [&](auto function_tag) {
      at::parallel_for(0, n, grain_for(m, slots), [&](int64_t begin, int64_t end) {
        first_forward_samples<scalar_t, decltype(function_tag)::value>(rows, begin, end);
      });
    });
  });
  return out;
}

}  // namespace
}  // namespace hoderiv

TORCH_LIBRARY_IMPL(hoderiv_ext, CPU, m) {
  m.impl("jet_activation", &hoderiv::jet_activation_cpu);
  m.impl("jet_activation_backward", &hoderiv::jet_activation_backward_cpu);
  m.impl("jet_activation_first", &hoderiv::jet_activation_first_cpu);
}
