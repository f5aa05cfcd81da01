// The autograd kernel (dispatch key Autograd) of network_jet: the whole sweep
// recorded as ONE autograd node (a torch::autograd::Function), instead of the
// dozen or so nodes its inner ops would record one by one. Eager small-batch
// calls spend most of their time recording and walking autograd nodes, so one
// node with a C++ backward is what makes a training step cheap.
//
//   * no tensor argument needs a gradient (or grad mode is off): the op runs
//     below autograd (the CompositeExplicitAutograd kernel, network_jet.cpp);
//   * else forward runs the sweep below autograd and saves its inputs (x, the
//     weights, the biases given) and, per step, what the reverse pass reads
//     (network_jet.h, Saved);
//   * backward, grad mode off (a training step): the reverse pass in C++,
//     step by step from the last, each op below autograd, with the formulas
//     autograd applies to the inner ops (so the gradients are those of the
//     op-by-op graph):
//       kActivation       g <- jet_activation_backward(g, jet_in, bias, ...),
//                         grad_bias += g[:, 0].sum(0)
//       kJetLinear        grad_W += g^T jet_in (both as (N S, .)), g <- g W,
//                         grad_b += g[:, 0].sum(0) for the bias added before it
//       kFirstActivation  (g_value, g_tangents) <- jet_activation_first_backward(g, a, tangents, ...),
//                         g_shared = g_tangents^T
//       kPrefixLinear     grad_W += g_value^T value_in + g_shared^T shared_in (g_shared^T when the shared
//                         tangents were the identity), grad_b += g_value.sum(0),
//                         g_value <- g_value W, g_shared <- g_shared W
//     starting from g = grad_jet with grad_value added to slot 0 (and grad_value.sum(0) to the last
//     pending bias), ending with grad_x = g_value;
//   * backward, grad mode on (create_graph: the gradient must be
//     differentiable again): the sweep is run once more from the saved inputs
//     WITH autograd (every inner op's own autograd kernel) and differentiated
//     by torch::autograd::grad with create_graph, so higher derivatives go
//     through the inner ops' formulas exactly as before; never a constant.
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <string>
#include <tuple>
#include <vector>

#include "ops/handles.h"
#include "ops/network_jet.h"
#include "ops/registration.h"

namespace hoderiv {
namespace network_jet {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The forward's non-tensor arguments after the tensors: bias_slots, steps, params, param_counts, num_tangents,
// pair_i, pair_j, collapsed (backward returns an undefined gradient for each).
constexpr size_t kNonTensorArguments = 8;

bool needs_grad(const at::Tensor& tensor) { return tensor.defined() && tensor.requires_grad(); }

void accumulate(at::Tensor& total, const at::Tensor& term) { total = total.defined() ? total + term : term; }

// Per Linear its bias as an optional: bias_slots[k] indexes `given` (the biases that exist), -1 for none.
Biases biases_of(at::TensorList given, c10::IntArrayRef bias_slots) {
  Biases biases;
  biases.reserve(bias_slots.size());
  for (const int64_t slot : bias_slots) {
    biases.push_back(slot >= 0 ? c10::optional<at::Tensor>(given[slot]) : c10::nullopt);
  }
  return biases;
}

// The saved non-tensor arguments.
struct Config {
  std::string steps;
  std::vector<double> params;
  std::vector<int64_t> param_counts, bias_slots, pair_i, pair_j, collapsed;
  int64_t num_tangents = 0, num_weights = 0, num_biases = 0;
};

Config saved_config(AutogradContext* ctx) {
  Config config;
  config.steps = ctx->saved_data.at("steps").toStringRef();
  config.params = ctx->saved_data.at("params").toDoubleVector();
  config.param_counts = ctx->saved_data.at("param_counts").toIntVector();
  config.bias_slots = ctx->saved_data.at("bias_slots").toIntVector();
  config.pair_i = ctx->saved_data.at("pair_i").toIntVector();
  config.pair_j = ctx->saved_data.at("pair_j").toIntVector();
  config.collapsed = ctx->saved_data.at("collapsed").toIntVector();
  config.num_tangents = ctx->saved_data.at("num_tangents").toInt();
  config.num_weights = static_cast<int64_t>(config.bias_slots.size());
  config.num_biases = ctx->saved_data.at("num_biases").toInt();
  return config;
}

// The gradients of the tensor inputs (x, weights, given biases), grad mode off: the reverse pass of the module
// comment. needs[i]: whether tensor input i needs its gradient.
variable_list reverse_pass(const Config& config, const Program& program, at::TensorList weights,
                           const Biases& biases,
                           at::TensorList saved, const at::Tensor& grad_jet, const at::Tensor& grad_value,
                           const std::vector<bool>& needs) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const size_t num_weights = weights.size();
  std::vector<at::Tensor> weight_grads(num_weights), bias_grads(num_weights);
  const auto weight_needs = [&](int64_t linear) { return needs[1 + linear]; };
  const auto bias_needs = [&](int64_t linear) {
    return linear >= 0 && needs[1 + num_weights + config.bias_slots[linear]];
  };
  at::Tensor g = grad_jet.clone();
  g.select(1, 0).add_(grad_value);
  if (bias_needs(program.final_bias)) accumulate(bias_grads[program.final_bias], grad_value.sum(0));
  const c10::ArrayRef<double> params(config.params);
  at::Tensor g_value, g_shared;
  size_t next = saved.size();
  for (size_t index = program.steps.size(); index-- > 0;) {
    const StepRecord& step = program.steps[index];
    const c10::string_view function(step.function.data(), step.function.size());
    switch (step.kind) {
      case StepKind::kActivation: {
        const at::Tensor& jet_in = saved[--next];
        const c10::optional<at::Tensor> bias = step.bias >= 0 ? biases[step.bias] : c10::nullopt;
        g = handles::jet_backward_op().call(g, jet_in, bias, function, params.slice(step.param_offset, step.param_count),
                                            config.num_tangents, config.pair_i, config.pair_j, config.collapsed);
        if (bias_needs(step.bias)) accumulate(bias_grads[step.bias], g.select(1, 0).sum(0));
        break;
      }
      case StepKind::kJetLinear: {
        const at::Tensor& jet_in = saved[--next];
        const at::Tensor& weight = weights[step.linear];
        const int64_t out = weight.size(0), in = weight.size(1);
        const at::Tensor g2 = g.reshape({-1, out});
        if (weight_needs(step.linear)) accumulate(weight_grads[step.linear], g2.t().mm(jet_in.reshape({-1, in})));
        g = g2.mm(weight).view({jet_in.size(0), jet_in.size(1), in});
        if (bias_needs(step.bias)) accumulate(bias_grads[step.bias], g.select(1, 0).sum(0));
        break;
      }
      case StepKind::kFirstActivation: {
        const at::Tensor& tangents = saved[--next];
        const at::Tensor& preactivation = saved[--next];
        at::Tensor g_tangents;
        std::tie(g_value, g_tangents) = handles::first_backward_op().call(
            g, preactivation, tangents, function, params.slice(step.param_offset, step.param_count), config.pair_i,
            config.pair_j, config.collapsed);
        g_shared = g_tangents.t();
        break;
      }
      case StepKind::kPrefixLinear: {
        const at::Tensor& shared_in = saved[--next];
        const at::Tensor& value_in = saved[--next];
        const at::Tensor& weight = weights[step.linear];
        if (weight_needs(step.linear)) {
          accumulate(weight_grads[step.linear], g_value.t().mm(value_in));
          accumulate(weight_grads[step.linear], shared_in.defined() ? g_shared.t().mm(shared_in) : g_shared.t());
        }
        if (bias_needs(step.bias)) accumulate(bias_grads[step.bias], g_value.sum(0));
        if (index > 0 || needs[0]) {  // anything before this step, or x, needs the gradient below it
          if (shared_in.defined()) g_shared = g_shared.mm(weight);
          g_value = g_value.mm(weight);
        }
        break;
      }
    }
  }
  variable_list grads(1 + num_weights + config.num_biases);
  if (needs[0]) grads[0] = g_value;
  for (size_t k = 0; k < num_weights; ++k) {
    if (weight_needs(static_cast<int64_t>(k))) grads[1 + k] = weight_grads[k];
    if (config.bias_slots[k] >= 0 && bias_needs(static_cast<int64_t>(k))) {
      grads[1 + num_weights + config.bias_slots[k]] = bias_grads[k];
    }
  }
  return grads;
}

// The gradients of the tensor inputs, grad mode on (create_graph): the sweep once more with autograd, then
// torch::autograd::grad of it with create_graph, so the result is differentiable again.
variable_list differentiable_pass(const Config& config, const Program& program, const at::Tensor& x,
                                  at::TensorList weights, const Biases& biases,
                                  at::TensorList inputs, const at::Tensor& grad_jet, const at::Tensor& grad_value,
                                  const std::vector<bool>& needs) {
  const auto [jet, value] = run_sweep(program, x, weights, biases, config.params, config.num_tangents,
                                      config.pair_i, config.pair_j, config.collapsed, nullptr);
  variable_list wanted;
  std::vector<size_t> positions;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (needs[i] && needs_grad(inputs[i])) {
      wanted.push_back(inputs[i]);
      positions.push_back(i);
    }
  }
  variable_list grads(inputs.size());
  if (wanted.empty()) return grads;
  const variable_list found = torch::autograd::grad({jet, value}, wanted, {grad_jet, grad_value},
                                                    /*retain_graph=*/true, /*create_graph=*/true,
                                                    /*allow_unused=*/true);
  for (size_t k = 0; k < positions.size(); ++k) grads[positions[k]] = found[k];
  return grads;
}

struct NetworkJetFunction : public torch::autograd::Function<NetworkJetFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, at::TensorList weights,
                               at::TensorList given_biases, c10::IntArrayRef bias_slots, c10::string_view steps,
                               c10::ArrayRef<double> params, c10::IntArrayRef param_counts, int64_t num_tangents,
                               c10::IntArrayRef pair_i, c10::IntArrayRef pair_j, c10::IntArrayRef collapsed) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const Biases biases = biases_of(given_biases, bias_slots);
    const Program program = network_steps(x, weights, biases, steps, params, param_counts, num_tangents);
    Saved saved;
    auto [jet, value] =
        run_sweep(program, x, weights, biases, params, num_tangents, pair_i, pair_j, collapsed, &saved);
    variable_list to_save;
    to_save.reserve(1 + weights.size() + given_biases.size() + saved.size());
    to_save.push_back(x);
    to_save.insert(to_save.end(), weights.begin(), weights.end());
    to_save.insert(to_save.end(), given_biases.begin(), given_biases.end());
    to_save.insert(to_save.end(), saved.begin(), saved.end());
    ctx->save_for_backward(to_save);
    ctx->saved_data["steps"] = std::string(steps);
    ctx->saved_data["params"] = params.vec();
    ctx->saved_data["param_counts"] = param_counts.vec();
    ctx->saved_data["bias_slots"] = bias_slots.vec();
    ctx->saved_data["num_biases"] = static_cast<int64_t>(given_biases.size());
    ctx->saved_data["num_tangents"] = num_tangents;
    ctx->saved_data["pair_i"] = pair_i.vec();
    ctx->saved_data["pair_j"] = pair_j.vec();
    ctx->saved_data["collapsed"] = collapsed.vec();
    return {jet, value};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const Config config = saved_config(ctx);
    const size_t num_inputs = static_cast<size_t>(1 + config.num_weights + config.num_biases);
    std::vector<bool> needs(num_inputs);
    bool any = false;
    for (size_t i = 0; i < num_inputs; ++i) any |= (needs[i] = ctx->needs_input_grad(i));
    variable_list result(num_inputs + kNonTensorArguments);
    if (!any) return result;
    const variable_list saved = ctx->get_saved_variables();
    const at::TensorList all(saved);
    const at::Tensor& x = saved[0];
    const at::TensorList weights = all.slice(1, config.num_weights);
    const at::TensorList given_biases = all.slice(1 + config.num_weights, config.num_biases);
    const Biases biases = biases_of(given_biases, config.bias_slots);
    const Program program =
        network_steps(x, weights, biases, config.steps, config.params, config.param_counts, config.num_tangents);
    const variable_list grads =
        c10::GradMode::is_enabled()
            ? differentiable_pass(config, program, x, weights, biases, all.slice(0, num_inputs), grad_outputs[0],
                                  grad_outputs[1], needs)
            : reverse_pass(config, program, weights, biases, all.slice(num_inputs), grad_outputs[0], grad_outputs[1],
                           needs);
    std::copy(grads.begin(), grads.end(), result.begin());
    return result;
  }
};

std::tuple<at::Tensor, at::Tensor> network_jet_autograd(const at::Tensor& x, at::TensorList weights,
                                                        const c10::List<c10::optional<at::Tensor>>& biases,
                                                        c10::string_view steps, c10::ArrayRef<double> params,
                                                        c10::IntArrayRef param_counts, int64_t num_tangents,
                                                        c10::IntArrayRef pair_i, c10::IntArrayRef pair_j,
                                                        c10::IntArrayRef collapsed) {
  std::vector<at::Tensor> given_biases;
  std::vector<int64_t> bias_slots;
  bias_slots.reserve(biases.size());
  bool any = needs_grad(x);
  for (const at::Tensor& weight : weights) any = any || needs_grad(weight);
  for (const c10::optional<at::Tensor>& bias : biases_from(biases)) {
    if (bias.has_value()) {
      bias_slots.push_back(static_cast<int64_t>(given_biases.size()));
      given_biases.push_back(*bias);
      any = any || needs_grad(*bias);
    } else {
      bias_slots.push_back(-1);
    }
  }
  if (!(c10::GradMode::is_enabled() && any)) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return handles::network_jet_op().call(x, weights, biases, steps, params, param_counts, num_tangents, pair_i,
                                          pair_j, collapsed);
  }
  const variable_list outputs =
      NetworkJetFunction::apply(x, weights, at::TensorList(given_biases), c10::IntArrayRef(bias_slots), steps,
                                params, param_counts, num_tangents, pair_i, pair_j, collapsed);
  return {outputs[0], outputs[1]};
}

}  // namespace
}  // namespace network_jet

void register_network_jet_autograd(torch::Library& library) {
  library.impl("network_jet", &network_jet::network_jet_autograd);
}

}  // namespace hoderiv
