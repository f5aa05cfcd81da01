// The whole-network sweep of network_jet, shared by its kernel below autograd
// (network_jet.cpp) and its autograd kernel (network_jet_autograd.cpp).
//
// A network is its steps in order (`steps`, space-separated: "linear" takes
// the next weight (out, in) and bias ((out,) or none), any other name is an
// activation of the function table with the next param_counts[k] params).
// network_steps() reads them into the sweep's program, one StepRecord per
// step; run_sweep() runs it and, when asked, keeps what a reverse pass needs.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/List.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <string_view>
#include <tuple>
#include <vector>

namespace hoderiv {
namespace network_jet {

// What a step is in the sweep:
//   kPrefixLinear    a Linear before the first activation: value <- value W^T + b (N, m) and the shared
//                    tangents (t, m), the same for every sample, <- shared W^T (W^T itself after the first);
//   kFirstActivation the first activation: jet_activation_first(value, shared^T) (the identity when no
//                    Linear came first) makes the jet (N, S, m);
//   kJetLinear       a later Linear: ONE GEMM on the jet, its bias kept pending (added to slot 0 by the next
//                    activation, or by a cat when another Linear follows at once);
//   kActivation      a later activation: jet_activation(jet, pending bias).
enum class StepKind { kPrefixLinear, kFirstActivation, kJetLinear, kActivation };

struct StepRecord {
  StepKind kind;
  int64_t linear = -1;  // linear steps: the index of the weight
  // the index of the Linear whose bias this step adds (-1: none): a prefix Linear its own, an activation the
  // pending one, a jet Linear the pending one it adds to slot 0 before its GEMM
  int64_t bias = -1;
  std::string_view function;  // activations: the function's name
  int64_t param_offset = 0, param_count = 0;  // activations: its params, params[offset : offset + count]
};

struct Program {
  std::vector<StepRecord> steps;
  int64_t final_bias = -1;  // the Linear whose bias is still pending after the last step (-1: none)
};

// Per Linear its bias, or nullopt for none.
using Biases = std::vector<c10::optional<at::Tensor>>;

// The op's bias list as Biases; an optional holding an undefined tensor counts as no bias.
Biases biases_from(const c10::List<c10::optional<at::Tensor>>& biases);

// The program of `steps`, checked against the arguments (errors name them); `biases` has one entry per weight
// (checked).
Program network_steps(const at::Tensor& x, at::TensorList weights, const Biases& biases,
                      c10::string_view steps, c10::ArrayRef<double> params, c10::IntArrayRef param_counts,
                      int64_t num_tangents);

// The tensors a reverse pass reads, per step in order: kPrefixLinear (value in (N, in), shared tangents in
// (t, in) or undefined for the identity), kFirstActivation (preactivation (N, m), tangents (m, t)),
// kJetLinear (jet in (N, S, in), after the pending bias was added), kActivation (jet in (N, S, m)).
using Saved = std::vector<at::Tensor>;

// Runs the program through the dispatcher (with autograd unless the caller went below it) and returns
// (jet (N, S, o) without the last pending bias in slot 0, value (N, o) with it, never a view of the jet).
// `saved`: when given, filled as above.
std::tuple<at::Tensor, at::Tensor> run_sweep(const Program& program, const at::Tensor& x, at::TensorList weights,
                                             const Biases& biases,
                                             c10::ArrayRef<double> params, int64_t num_tangents,
                                             c10::IntArrayRef pair_i, c10::IntArrayRef pair_j,
                                             c10::IntArrayRef collapsed, Saved* saved);

}  // namespace network_jet
}  // namespace hoderiv
