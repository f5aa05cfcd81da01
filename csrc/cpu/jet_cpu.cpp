// CPU implementations of the Taylor-mode activation step (math: hoderiv/jet_math.h).
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

namespace hoderiv {
namespace {

jet::SlotLayout layout_of(const at::Tensor& pair_i, const at::Tensor& pair_j, int64_t num_inputs, bool collapsed,
                          int64_t num_second) {
  return jet::SlotLayout{num_inputs, num_second, collapsed, pair_i.const_data_ptr<int64_t>(),
                         pair_j.const_data_ptr<int64_t>()};
}

// phi^(k) of one row of units with the function fixed at compile time.
template <typename scalar_t, int K>
void row_derivatives(const scalar_t* a, const scalar_t* bias, int64_t width, const ParsedFunction& parsed,
                     scalar_t* phi) {
  dispatch_function(parsed.function, [&](auto function_tag) {
    jet::activation_derivatives<scalar_t, K>(a, 1, bias, width, decltype(function_tag)::value, parsed.params, phi);
  });
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
    const scalar_t* in_ptr = input.const_data_ptr<scalar_t>();
    const scalar_t* bias_ptr = bias_c.defined() ? bias_c.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* out_ptr = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, grain_for(m, slots), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> phi(3 * m);
      for (int64_t sample = begin; sample < end; ++sample) {
        const int64_t offset = sample * slots * m;
        row_derivatives<scalar_t, 2>(in_ptr + offset, bias_ptr, m, parsed, phi.data());
        jet::forward_columns<scalar_t>(in_ptr + offset, out_ptr + offset, m, m, phi.data(), layout);
      }
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
    const scalar_t* in_ptr = input.const_data_ptr<scalar_t>();
    const scalar_t* g_ptr = grad_out.const_data_ptr<scalar_t>();
    const scalar_t* bias_ptr = bias_c.defined() ? bias_c.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* gi_ptr = grad_in.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, grain_for(m, slots), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> phi(4 * m);
      for (int64_t sample = begin; sample < end; ++sample) {
        const int64_t offset = sample * slots * m;
        row_derivatives<scalar_t, 3>(in_ptr + offset, bias_ptr, m, parsed, phi.data());
        jet::backward_columns<scalar_t>(g_ptr + offset, in_ptr + offset, gi_ptr + offset, m, m, phi.data(), layout);
      }
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
    const scalar_t* pre_ptr = pre.const_data_ptr<scalar_t>();
    const scalar_t* w_ptr = weight_t.const_data_ptr<scalar_t>();
    scalar_t* out_ptr = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, grain_for(m, slots), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> phi(3 * m);
      for (int64_t sample = begin; sample < end; ++sample) {
        row_derivatives<scalar_t, 2>(pre_ptr + sample * m, nullptr, m, parsed, phi.data());
        jet::first_forward_columns<scalar_t>(w_ptr, m, out_ptr + sample * slots * m, m, m, phi.data(), layout);
      }
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
