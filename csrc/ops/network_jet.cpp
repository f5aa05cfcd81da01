// network_jet: forward Taylor mode through a whole plain network in one op
// call, for the eager path of the Taylor engine (hoderiv_ext/engines/taylor/
// sweep.py, which runs the same steps one Python op call at a time and stays
// the path under torch.compile).
//
//   network_jet(x, weights, biases, steps, params, param_counts, num_tangents,
//               pair_i, pair_j, collapsed) -> (jet, value)
//
// x (N, d) and the network as its steps in order, `steps` one string of
// space-separated names: "linear" takes the next of `weights` (out, in) and
// `biases` ((out,) or None); any other name is an activation of the function
// table, taking the next param_counts[k] of `params`. The jet carries the d unit directions (num_tangents == d) and the
// second-order slots of (pair_i, pair_j, collapsed), as jet_activation does.
// Returns the last jet (N, S, o) -- slot 0 without a last pending bias -- and
// the value (N, o), which has it. The steps are those of the Python sweep:
// layers before the first activation are affine (their value through
// at::linear, their tangents a shared (t, m) matrix, W^T after one Linear),
// the first activation reads those tangents (jet_activation_first), every
// later Linear is one GEMM on the jet with its bias folded into the next
// activation (jet_activation).
//
// The kernel is registered for CompositeImplicitAutograd: it calls the
// dispatcher for every inner op (at::linear, at::cat, the jet ops with their
// C++ autograd kernels), so autograd records those ops and the result is
// differentiable exactly as the Python sweep's. A network with no activation
// is refused (the Python sweep serves it).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <ATen/core/List.h>
#include <torch/library.h>

#include <string>
#include <string_view>
#include <vector>
#include <tuple>
#include <vector>

#include "ops/registration.h"

namespace hoderiv {
namespace {

constexpr const char* kOp = "hoderiv_ext.network_jet";
constexpr std::string_view kLinear = "linear";

using JetSignature = at::Tensor(const at::Tensor&, const c10::optional<at::Tensor>&, c10::string_view,
                                c10::ArrayRef<double>, int64_t, c10::IntArrayRef, c10::IntArrayRef,
                                c10::IntArrayRef);
using FirstSignature = at::Tensor(const at::Tensor&, const at::Tensor&, c10::string_view, c10::ArrayRef<double>,
                                  c10::IntArrayRef, c10::IntArrayRef, c10::IntArrayRef);

const c10::TypedOperatorHandle<JetSignature>& jet_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("hoderiv_ext::jet_activation", "").typed<JetSignature>();
  return op;
}

const c10::TypedOperatorHandle<FirstSignature>& first_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("hoderiv_ext::jet_activation_first", "").typed<FirstSignature>();
  return op;
}

// The step names of `steps` (space-separated; empty names between repeated spaces are skipped).
std::vector<std::string_view> split_steps(c10::string_view steps) {
  std::vector<std::string_view> names;
  const std::string_view all(steps.data(), steps.size());
  size_t start = 0;
  while (start < all.size()) {
    size_t end = all.find(' ', start);
    if (end == std::string_view::npos) end = all.size();
    if (end > start) names.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  return names;
}

// The steps, counted and checked against the lists before anything runs.
void check_steps(const at::Tensor& x, at::TensorList weights, const c10::List<c10::optional<at::Tensor>>& biases,
                 const std::vector<std::string_view>& steps, c10::ArrayRef<double> params,
                 c10::IntArrayRef param_counts, int64_t num_tangents) {
  TORCH_CHECK(x.dim() == 2, kOp, ": x must be (N, d), got ", x.dim(), " dimensions");
  TORCH_CHECK(num_tangents == x.size(1), kOp, ": num_tangents must be d = x.size(1) = ", x.size(1),
              " (the unit directions), got ", num_tangents);
  TORCH_CHECK(weights.size() == biases.size(), kOp, ": weights and biases must have one entry per Linear, got ",
              weights.size(), " and ", biases.size());
  size_t linears = 0, activations = 0;
  for (const std::string_view step : steps) {
    if (step == kLinear) {
      ++linears;
    } else {
      ++activations;
    }
  }
  TORCH_CHECK(linears == weights.size(), kOp, ": steps name ", linears, " 'linear' steps but ", weights.size(),
              " weights were given");
  TORCH_CHECK(activations == param_counts.size(), kOp, ": param_counts must have one entry per activation step (",
              activations, "), got ", param_counts.size());
  TORCH_CHECK(activations > 0, kOp, ": the network has no activation (the Python sweep serves affine networks)");
  int64_t total = 0;
  for (size_t k = 0; k < param_counts.size(); ++k) {
    const int64_t count = param_counts[k];
    TORCH_CHECK(count >= 0 && count <= static_cast<int64_t>(params.size()) - total, kOp, ": param_counts[", k,
                "] = ", count, " is negative or runs past the ", params.size(), " params");
    total += count;
  }
  TORCH_CHECK(total == static_cast<int64_t>(params.size()), kOp, ": param_counts sum to ", total, " but ",
              params.size(), " params were given");
  for (size_t k = 0; k < weights.size(); ++k) {
    TORCH_CHECK(weights[k].dim() == 2, kOp, ": weights[", k, "] must be (out, in), got ", weights[k].dim(),
                " dimensions");
  }
}

std::tuple<at::Tensor, at::Tensor> network_jet(const at::Tensor& x, at::TensorList weights,
                                               const c10::List<c10::optional<at::Tensor>>& biases,
                                               c10::string_view step_names, c10::ArrayRef<double> params,
                                               c10::IntArrayRef param_counts, int64_t num_tangents,
                                               c10::IntArrayRef pair_i, c10::IntArrayRef pair_j,
                                               c10::IntArrayRef collapsed) {
  const std::vector<std::string_view> steps = split_steps(step_names);
  check_steps(x, weights, biases, steps, params, param_counts, num_tangents);
  at::Tensor value = x;   // the affine prefix's value (N, m)
  at::Tensor shared;      // its tangents (t, m), the same for every sample; undefined = the identity
  at::Tensor jet;         // (N, S, m) from the first activation on
  c10::optional<at::Tensor> bias;  // a Linear's bias not yet added to slot 0 of the jet
  size_t next_linear = 0, next_activation = 0;
  int64_t next_param = 0;
  for (const std::string_view step : steps) {
    if (step == kLinear) {
      const at::Tensor& weight = weights[next_linear];
      const c10::optional<at::Tensor> layer_bias = biases.get(next_linear);
      ++next_linear;
      if (jet.defined()) {
        if (bias.has_value()) {  // two Linear layers in a row: add the pending bias to slot 0
          jet = at::cat({(jet.select(1, 0) + *bias).unsqueeze(1), jet.narrow(1, 1, jet.size(1) - 1)}, 1);
        }
        jet = at::linear(jet, weight);
        bias = layer_bias;
      } else {
        value = at::linear(value, weight, layer_bias);
        shared = shared.defined() ? at::linear(shared, weight) : weight.t();
      }
      continue;
    }
    const int64_t count = param_counts[next_activation++];
    const c10::ArrayRef<double> function_params = params.slice(next_param, count);
    next_param += count;
    if (!jet.defined()) {  // the first activation reads the shared tangents
      const at::Tensor tangents =
          shared.defined() ? shared.t() : at::eye(num_tangents, value.options());  // (m, t)
      jet = first_op().call(value, tangents, c10::string_view(step.data(), step.size()), function_params, pair_i,
                            pair_j, collapsed);
    } else {
      jet = jet_op().call(jet, bias, c10::string_view(step.data(), step.size()), function_params, num_tangents,
                          pair_i, pair_j, collapsed);
      bias = c10::nullopt;
    }
  }
  at::Tensor out_value = jet.select(1, 0);
  out_value = bias.has_value() ? out_value + *bias : out_value.clone();  // never a view of the jet output
  return {jet, out_value};
}

}  // namespace

void register_network_jet(torch::Library& library) { library.impl("network_jet", &network_jet); }

}  // namespace hoderiv
