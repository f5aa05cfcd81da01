// Autograd kernels (dispatch key Autograd) of the forward ops
// elementwise_derivatives, jet_activation, jet_activation_first,
// jet_bilaplacian_extra and jet_univariate, as
// torch::autograd::Functions: eager calls then go through no Python.
//
// Each kernel is the op's autograd step only:
//   * no input needs a gradient (grad mode off, or no tensor argument
//     requiring grad): the op is called below autograd and nothing is saved;
//   * else forward calls the op below autograd (AutoDispatchBelowADInplaceOrView,
//     then the op's typed handle: the dispatcher picks the backend, a fake or
//     functional mode included), saves the tensor arguments
//     (save_for_backward) and the function, its parameters and the index
//     lists (saved_data);
//   * backward calls the op's BACKWARD op through the dispatcher, WITH
//     autograd when grad mode is on (create_graph), so the result is
//     differentiable again, and below autograd otherwise: the backward ops
//     (elementwise_derivatives_backward, jet_activation_backward,
//     jet_activation_first_backward, jet_bilaplacian_extra_backward,
//     jet_univariate_backward) keep their autograd formulas in Python
//     (hoderiv_ext/ops/formulas.py), and the double backward runs through them.
//
// The formulas (the same as the Python ones they replace):
//   elementwise_derivatives(x, f, params, order):
//       grad_x = elementwise_derivatives_backward(grad, x, f, params, shift=1)
//   jet_activation(jet, bias, f, params, t, pair_i, pair_j, collapsed, residual):
//       grad_residual = grad                       (when the residual is given and needs grad)
//       grad_jet  = jet_activation_backward(grad, jet, bias, f, params, t, pair_i, pair_j, collapsed)
//       grad_bias = grad_jet[:, 0].sum(0)          (when the bias is given and needs grad)
//   jet_activation_first(a, weight, f, params, pair_i, pair_j, collapsed):
//       (grad_a, grad_weight) = jet_activation_first_backward(grad, a, weight, f, params, pair_i, pair_j, collapsed)
//   jet_bilaplacian_extra(jet, bias, extra, f, params, t, dims):
//       (grad_jet, grad_extra) = jet_bilaplacian_extra_backward(grad, jet, bias, extra, f, params, t, dims)
//       grad_bias = grad_jet[:, 0].sum(0)          (when the bias is given and needs grad)
//   jet_univariate(jet, bias, f, params, t, order):
//       grad_jet  = jet_univariate_backward(grad, jet, bias, f, params, t, order)   (order <= 7: it
//                   refuses order 8, whose gradient needs phi^(9))
//       grad_bias = grad_jet[:, 0].sum(0)          (when the bias is given and needs grad)
// backward returns one entry per forward argument: undefined for the
// non-tensor arguments, an absent bias and inputs that need no gradient
// (needs_input_grad indexes the tensor inputs that were given, in order).
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/GradMode.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ops/handles.h"
#include "ops/registration.h"

namespace hoderiv {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using namespace handles;  // the ops' typed handles (ops/handles.h)

bool needs_grad(const at::Tensor& tensor) { return tensor.defined() && tensor.requires_grad(); }

// A backward op called from a backward: WITH autograd when grad mode is on (create_graph: the result is
// differentiated again, through the backward op's formula), else below autograd. With grad mode off the
// autograd kernel (the Python formula registered with torch.library.register_autograd) would only
// redispatch, after entering Python: tens of microseconds per call on a small batch.
template <typename Signature, typename... Args>
auto call_backward(const c10::TypedOperatorHandle<Signature>& op, Args&&... args) {
  if (!c10::GradMode::is_enabled()) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(std::forward<Args>(args)...);
  }
  return op.call(std::forward<Args>(args)...);
}

// The jet ops' optional bias: saved as an undefined tensor when absent, passed back as an optional.
at::Tensor saved_bias(const c10::optional<at::Tensor>& bias) { return bias.has_value() ? *bias : at::Tensor(); }

c10::optional<at::Tensor> bias_argument(const at::Tensor& saved) {
  return saved.defined() ? c10::optional<at::Tensor>(saved) : c10::nullopt;
}

// Whether a jet op with this jet and bias records a graph.
bool jet_or_bias_needs_grad(const at::Tensor& jet, const c10::optional<at::Tensor>& bias) {
  return c10::GradMode::is_enabled() && (needs_grad(jet) || (bias.has_value() && needs_grad(*bias)));
}

// The bias's gradient from the jet's: the bias enters the value slot (slot 0) of every sample.
at::Tensor bias_gradient(const at::Tensor& grad_jet) { return grad_jet.select(1, 0).sum(0); }

// ----- saved_data: the non-tensor arguments -----

void save_function(AutogradContext* ctx, c10::string_view function, c10::ArrayRef<double> params) {
  ctx->saved_data["function"] = std::string(function);
  ctx->saved_data["params"] = params.vec();
}

void save_indices(AutogradContext* ctx, c10::IntArrayRef pair_i, c10::IntArrayRef pair_j,
                  c10::IntArrayRef collapsed) {
  ctx->saved_data["pair_i"] = pair_i.vec();
  ctx->saved_data["pair_j"] = pair_j.vec();
  ctx->saved_data["collapsed"] = collapsed.vec();
}

// The saved non-tensor arguments, as the backward op takes them.
struct SavedConfig {
  std::string function;
  std::vector<double> params;
  std::vector<int64_t> pair_i, pair_j, collapsed;
};

SavedConfig saved_function(AutogradContext* ctx) {
  SavedConfig config;
  config.function = ctx->saved_data.at("function").toStringRef();
  config.params = ctx->saved_data.at("params").toDoubleVector();
  return config;
}

SavedConfig saved_config(AutogradContext* ctx) {
  SavedConfig config = saved_function(ctx);
  config.pair_i = ctx->saved_data.at("pair_i").toIntVector();
  config.pair_j = ctx->saved_data.at("pair_j").toIntVector();
  config.collapsed = ctx->saved_data.at("collapsed").toIntVector();
  return config;
}

// ----- elementwise_derivatives(x, function, params, order) -----

struct ElementwiseDerivativesFunction : public torch::autograd::Function<ElementwiseDerivativesFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, c10::string_view function,
                            c10::ArrayRef<double> params, int64_t order) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor out = elementwise_op().call(x, function, params, order);
    ctx->save_for_backward({x});
    save_function(ctx, function, params);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    at::Tensor grad_x;
    if (ctx->needs_input_grad(0)) {
      const SavedConfig config = saved_function(ctx);
      grad_x =
          call_backward(elementwise_backward_op(), grad_outputs[0], saved[0], config.function, config.params, 1);
    }
    return {grad_x, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor elementwise_derivatives_autograd(const at::Tensor& x, c10::string_view function,
                                            c10::ArrayRef<double> params, int64_t order) {
  if (!(c10::GradMode::is_enabled() && needs_grad(x))) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return elementwise_op().call(x, function, params, order);
  }
  return ElementwiseDerivativesFunction::apply(x, function, params, order);
}

// ----- jet_activation(jet, bias, function, params, num_tangents, pair_i, pair_j, collapsed, residual) -----

struct JetActivationFunction : public torch::autograd::Function<JetActivationFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                            c10::string_view function, c10::ArrayRef<double> params, int64_t num_tangents,
                            c10::IntArrayRef pair_i, c10::IntArrayRef pair_j, c10::IntArrayRef collapsed,
                            const c10::optional<at::Tensor>& residual) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor out = jet_op().call(jet, bias, function, params, num_tangents, pair_i, pair_j, collapsed, residual);
    ctx->save_for_backward({jet, saved_bias(bias)});
    ctx->saved_data["has_residual"] = residual.has_value() && residual->defined();
    save_function(ctx, function, params);
    ctx->saved_data["num_tangents"] = num_tangents;
    save_indices(ctx, pair_i, pair_j, collapsed);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& jet = saved[0];
    const at::Tensor& bias = saved[1];
    // Tensor inputs given, in order: the jet (0), then the bias (1) if defined, then the residual if given.
    const bool jet_needs_grad = ctx->needs_input_grad(0);
    const bool bias_needs_grad = bias.defined() && ctx->needs_input_grad(1);
    const bool residual_needs_grad =
        ctx->saved_data.at("has_residual").toBool() && ctx->needs_input_grad(bias.defined() ? 2 : 1);
    // The residual is added to the output: its gradient is the output's (the identity, differentiable as is).
    const at::Tensor grad_residual = residual_needs_grad ? grad_outputs[0] : at::Tensor();
    at::Tensor grad_jet, grad_bias;
    if (jet_needs_grad || bias_needs_grad) {
      const SavedConfig config = saved_config(ctx);
      const int64_t num_tangents = ctx->saved_data.at("num_tangents").toInt();
      grad_jet = call_backward(jet_backward_op(), grad_outputs[0], jet, bias_argument(bias), config.function,
                               config.params, num_tangents, config.pair_i, config.pair_j, config.collapsed);
      if (bias_needs_grad) grad_bias = bias_gradient(grad_jet);
      if (!jet_needs_grad) grad_jet = at::Tensor();
    }
    return {grad_jet,    grad_bias,   at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), grad_residual};
  }
};

at::Tensor jet_activation_autograd(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                                   c10::string_view function, c10::ArrayRef<double> params, int64_t num_tangents,
                                   c10::IntArrayRef pair_i, c10::IntArrayRef pair_j, c10::IntArrayRef collapsed,
                                   const c10::optional<at::Tensor>& residual) {
  if (!jet_or_bias_needs_grad(jet, bias) &&
      !(c10::GradMode::is_enabled() && residual.has_value() && needs_grad(*residual))) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return jet_op().call(jet, bias, function, params, num_tangents, pair_i, pair_j, collapsed, residual);
  }
  return JetActivationFunction::apply(jet, bias, function, params, num_tangents, pair_i, pair_j, collapsed,
                                      residual);
}

// ----- jet_activation_first(preactivation, weight, function, params, pair_i, pair_j, collapsed) -----

struct JetActivationFirstFunction : public torch::autograd::Function<JetActivationFirstFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& preactivation, const at::Tensor& weight,
                            c10::string_view function, c10::ArrayRef<double> params, c10::IntArrayRef pair_i,
                            c10::IntArrayRef pair_j, c10::IntArrayRef collapsed) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor out = first_op().call(preactivation, weight, function, params, pair_i, pair_j, collapsed);
    ctx->save_for_backward({preactivation, weight});
    save_function(ctx, function, params);
    save_indices(ctx, pair_i, pair_j, collapsed);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    // Tensor inputs, in order: the preactivation (0), the weight (1).
    const bool preactivation_needs_grad = ctx->needs_input_grad(0);
    const bool weight_needs_grad = ctx->needs_input_grad(1);
    at::Tensor grad_preactivation, grad_weight;
    if (preactivation_needs_grad || weight_needs_grad) {
      const SavedConfig config = saved_config(ctx);
      std::tie(grad_preactivation, grad_weight) =
          call_backward(first_backward_op(), grad_outputs[0], saved[0], saved[1], config.function, config.params,
                        config.pair_i, config.pair_j, config.collapsed);
      if (!preactivation_needs_grad) grad_preactivation = at::Tensor();
      if (!weight_needs_grad) grad_weight = at::Tensor();
    }
    return {grad_preactivation, grad_weight,  at::Tensor(), at::Tensor(),
            at::Tensor(),       at::Tensor(), at::Tensor()};
  }
};

at::Tensor jet_activation_first_autograd(const at::Tensor& preactivation, const at::Tensor& weight,
                                         c10::string_view function, c10::ArrayRef<double> params,
                                         c10::IntArrayRef pair_i, c10::IntArrayRef pair_j,
                                         c10::IntArrayRef collapsed) {
  if (!(c10::GradMode::is_enabled() && (needs_grad(preactivation) || needs_grad(weight)))) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return first_op().call(preactivation, weight, function, params, pair_i, pair_j, collapsed);
  }
  return JetActivationFirstFunction::apply(preactivation, weight, function, params, pair_i, pair_j, collapsed);
}

// ----- jet_bilaplacian_extra(jet, bias, extra, function, params, num_tangents, dims) -----

struct JetBilaplacianExtraFunction : public torch::autograd::Function<JetBilaplacianExtraFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                            const at::Tensor& extra, c10::string_view function, c10::ArrayRef<double> params,
                            int64_t num_tangents, c10::IntArrayRef dims) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor out = extra_op().call(jet, bias, extra, function, params, num_tangents, dims);
    ctx->save_for_backward({jet, saved_bias(bias), extra});
    save_function(ctx, function, params);
    ctx->saved_data["num_tangents"] = num_tangents;
    ctx->saved_data["dims"] = dims.vec();
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& jet = saved[0];
    const at::Tensor& bias = saved[1];
    const at::Tensor& extra = saved[2];
    // Tensor inputs given, in order: the jet (0), the bias (1) if defined, then extra.
    const bool jet_needs_grad = ctx->needs_input_grad(0);
    const bool bias_needs_grad = bias.defined() && ctx->needs_input_grad(1);
    const bool extra_needs_grad = ctx->needs_input_grad(bias.defined() ? 2 : 1);
    at::Tensor grad_jet, grad_bias, grad_extra;
    if (jet_needs_grad || bias_needs_grad || extra_needs_grad) {
      const SavedConfig config = saved_function(ctx);
      const int64_t num_tangents = ctx->saved_data.at("num_tangents").toInt();
      const std::vector<int64_t> dims = ctx->saved_data.at("dims").toIntVector();
      std::tie(grad_jet, grad_extra) =
          call_backward(extra_backward_op(), grad_outputs[0], jet, bias_argument(bias), extra, config.function,
                        config.params, num_tangents, dims);
      if (bias_needs_grad) grad_bias = bias_gradient(grad_jet);
      if (!jet_needs_grad) grad_jet = at::Tensor();
      if (!extra_needs_grad) grad_extra = at::Tensor();
    }
    return {grad_jet, grad_bias, grad_extra, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor jet_bilaplacian_extra_autograd(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                                          const at::Tensor& extra, c10::string_view function,
                                          c10::ArrayRef<double> params, int64_t num_tangents,
                                          c10::IntArrayRef dims) {
  if (!(c10::GradMode::is_enabled() &&
        (needs_grad(jet) || needs_grad(extra) || (bias.has_value() && needs_grad(*bias))))) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return extra_op().call(jet, bias, extra, function, params, num_tangents, dims);
  }
  return JetBilaplacianExtraFunction::apply(jet, bias, extra, function, params, num_tangents, dims);
}

// ----- jet_univariate(jet, bias, function, params, num_tangents, order) -----

struct JetUnivariateFunction : public torch::autograd::Function<JetUnivariateFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                            c10::string_view function, c10::ArrayRef<double> params, int64_t num_tangents,
                            int64_t order) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor out = univariate_op().call(jet, bias, function, params, num_tangents, order);
    ctx->save_for_backward({jet, saved_bias(bias)});
    save_function(ctx, function, params);
    ctx->saved_data["num_tangents"] = num_tangents;
    ctx->saved_data["order"] = order;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& jet = saved[0];
    const at::Tensor& bias = saved[1];
    // Tensor inputs given, in order: the jet (0), then the bias (1) if defined.
    const bool jet_needs_grad = ctx->needs_input_grad(0);
    const bool bias_needs_grad = bias.defined() && ctx->needs_input_grad(1);
    at::Tensor grad_jet, grad_bias;
    if (jet_needs_grad || bias_needs_grad) {
      const SavedConfig config = saved_function(ctx);
      const int64_t num_tangents = ctx->saved_data.at("num_tangents").toInt();
      const int64_t order = ctx->saved_data.at("order").toInt();
      grad_jet = call_backward(univariate_backward_op(), grad_outputs[0], jet, bias_argument(bias), config.function,
                               config.params, num_tangents, order);
      if (bias_needs_grad) grad_bias = bias_gradient(grad_jet);
      if (!jet_needs_grad) grad_jet = at::Tensor();
    }
    return {grad_jet, grad_bias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor jet_univariate_autograd(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                                   c10::string_view function, c10::ArrayRef<double> params, int64_t num_tangents,
                                   int64_t order) {
  if (!jet_or_bias_needs_grad(jet, bias)) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return univariate_op().call(jet, bias, function, params, num_tangents, order);
  }
  return JetUnivariateFunction::apply(jet, bias, function, params, num_tangents, order);
}

}  // namespace

void register_autograd(torch::Library& library) {
  library.impl("elementwise_derivatives", &elementwise_derivatives_autograd);
  library.impl("jet_activation", &jet_activation_autograd);
  library.impl("jet_activation_first", &jet_activation_first_autograd);
  library.impl("jet_bilaplacian_extra", &jet_bilaplacian_extra_autograd);
  library.impl("jet_univariate", &jet_univariate_autograd);
}

}  // namespace hoderiv
