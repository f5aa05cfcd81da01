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
// table, taking the next param_counts[k] of `params`. The jet carries the d
// unit directions (num_tangents == d) and the second-order slots of (pair_i,
// pair_j, collapsed), as jet_activation does.
// Returns the last jet (N, S, o) -- slot 0 without a last pending bias -- and
// the value (N, o), which has it. The steps are those of the Python sweep:
// layers before the first activation are affine (their value through
// at::linear, their tangents a shared (t, m) matrix, W^T after one Linear),
// the first activation reads those tangents (jet_activation_first), every
// later Linear is one GEMM on the jet with its bias folded into the next
// activation (jet_activation).
//
// Two kernels (registration.cpp): this file's, for CompositeExplicitAutograd,
// runs the sweep's inner ops through the dispatcher below autograd (every
// backend, Meta included); network_jet_autograd.cpp's, for Autograd, records
// the whole sweep as ONE autograd node whose backward chains the inner ops'
// backward formulas (and recomputes the sweep with autograd when the gradient
// must be differentiable again). A network with no activation is refused (the
// Python sweep serves it).
#include <ATen/ATen.h>
#include <ATen/core/List.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "ops/handles.h"
#include "ops/network_jet.h"
#include "ops/registration.h"

namespace hoderiv {
namespace network_jet {
namespace {

constexpr const char* kOp = "hoderiv_ext.network_jet";
constexpr std::string_view kLinear = "linear";

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

}  // namespace

Biases biases_from(const c10::List<c10::optional<at::Tensor>>& biases) {
  Biases result;
  result.reserve(biases.size());
  for (size_t k = 0; k < biases.size(); ++k) {
    c10::optional<at::Tensor> bias = biases.get(k);
    result.push_back(bias.has_value() && bias->defined() ? std::move(bias) : c10::nullopt);
  }
  return result;
}

Program network_steps(const at::Tensor& x, at::TensorList weights, const Biases& biases,
                      c10::string_view step_names, c10::ArrayRef<double> params, c10::IntArrayRef param_counts,
                      int64_t num_tangents) {
  const std::vector<std::string_view> names = split_steps(step_names);
  TORCH_CHECK(x.dim() == 2, kOp, ": x must be (N, d), got ", x.dim(), " dimensions");
  TORCH_CHECK(num_tangents == x.size(1), kOp, ": num_tangents must be d = x.size(1) = ", x.size(1),
              " (the unit directions), got ", num_tangents);
  TORCH_CHECK(weights.size() == biases.size(), kOp, ": weights and biases must have one entry per Linear, got ",
              weights.size(), " and ", biases.size());
  size_t linears = 0, activations = 0;
  for (const std::string_view name : names) {
    if (name == kLinear) {
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
  Program program;
  program.steps.reserve(names.size());
  bool in_jet = false;  // the first activation has run
  int64_t pending = -1, next_linear = 0, next_activation = 0, next_param = 0;
  for (const std::string_view name : names) {
    StepRecord step;
    if (name == kLinear) {
      step.linear = next_linear++;
      if (in_jet) {
        step.kind = StepKind::kJetLinear;
        step.bias = pending;
        pending = biases[step.linear].has_value() ? step.linear : -1;
      } else {
        step.kind = StepKind::kPrefixLinear;
        step.bias = biases[step.linear].has_value() ? step.linear : -1;
      }
    } else {
      step.kind = in_jet ? StepKind::kActivation : StepKind::kFirstActivation;
      step.bias = in_jet ? pending : -1;
      pending = -1;
      in_jet = true;
      step.function = name;
      step.param_offset = next_param;
      step.param_count = param_counts[next_activation++];
      next_param += step.param_count;
    }
    program.steps.push_back(step);
  }
  program.final_bias = pending;
  return program;
}

std::tuple<at::Tensor, at::Tensor> run_sweep(const Program& program, const at::Tensor& x, at::TensorList weights,
                                             const Biases& biases,
                                             c10::ArrayRef<double> params, int64_t num_tangents,
                                             c10::IntArrayRef pair_i, c10::IntArrayRef pair_j,
                                             c10::IntArrayRef collapsed, Saved* saved) {
  const auto keep = [saved](const at::Tensor& tensor) {
    if (saved != nullptr) saved->push_back(tensor);
  };
  if (saved != nullptr) saved->reserve(2 * program.steps.size());
  at::Tensor value = x;   // the affine prefix's value (N, m)
  at::Tensor shared;      // its tangents (t, m), the same for every sample; undefined = the identity
  at::Tensor jet;         // (N, S, m) from the first activation on
  for (const StepRecord& step : program.steps) {
    const c10::string_view function(step.function.data(), step.function.size());
    switch (step.kind) {
      case StepKind::kPrefixLinear: {
        const at::Tensor& weight = weights[step.linear];
        keep(value);
        keep(shared);
        value = at::linear(value, weight, biases[step.linear]);
        shared = shared.defined() ? at::linear(shared, weight) : weight.t();
        break;
      }
      case StepKind::kFirstActivation: {
        const at::Tensor tangents = shared.defined() ? shared.t() : at::eye(num_tangents, value.options());  // (m, t)
        keep(value);
        keep(tangents);
        jet = handles::first_op().call(value, tangents, function, params.slice(step.param_offset, step.param_count),
                                       pair_i, pair_j, collapsed);
        break;
      }
      case StepKind::kJetLinear: {
        if (step.bias >= 0) {  // two Linear layers in a row: add the pending bias to slot 0
          jet = at::cat({(jet.select(1, 0) + *biases[step.bias]).unsqueeze(1), jet.narrow(1, 1, jet.size(1) - 1)}, 1);
        }
        keep(jet);
        jet = at::linear(jet, weights[step.linear]);
        break;
      }
      case StepKind::kActivation: {
        keep(jet);
        const c10::optional<at::Tensor> bias = step.bias >= 0 ? biases[step.bias] : c10::nullopt;
        jet = handles::jet_op().call(jet, bias, function, params.slice(step.param_offset, step.param_count),
                                     num_tangents, pair_i, pair_j, collapsed, c10::nullopt);
        break;
      }
    }
  }
  at::Tensor out_value = jet.select(1, 0);
  out_value = program.final_bias >= 0 ? out_value + *biases[program.final_bias]
                                      : out_value.clone();  // never a view of the jet output
  return {jet, out_value};
}

namespace {

// The kernel below autograd (CompositeExplicitAutograd: every backend, Meta included): the sweep's inner ops
// through the dispatcher, which sends them to the current backend's kernels.
std::tuple<at::Tensor, at::Tensor> network_jet_kernel(const at::Tensor& x, at::TensorList weights,
                                                      const c10::List<c10::optional<at::Tensor>>& biases,
                                                      c10::string_view steps, c10::ArrayRef<double> params,
                                                      c10::IntArrayRef param_counts, int64_t num_tangents,
                                                      c10::IntArrayRef pair_i, c10::IntArrayRef pair_j,
                                                      c10::IntArrayRef collapsed) {
  const Biases bias_list = biases_from(biases);
  const Program program = network_steps(x, weights, bias_list, steps, params, param_counts, num_tangents);
  return run_sweep(program, x, weights, bias_list, params, num_tangents, pair_i, pair_j, collapsed, nullptr);
}

}  // namespace
}  // namespace network_jet

void register_network_jet(torch::Library& library) { library.impl("network_jet", &network_jet::network_jet_kernel); }

}  // namespace hoderiv
