// Host preparation of the jet activation ops (see prepare.h), shared by the
// CPU and CUDA wrappers. The index lists arrive as host int[] lists and are
// validated here, once, for every device.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ops/checks.h"
#include "ops/prepare.h"

namespace hoderiv {

jet::SlotLayout JetIndices::layout() const {
  jet::SlotLayout layout;
  layout.num_tangents = num_tangents;
  layout.num_pairs = static_cast<int64_t>(pair_i.size());
  layout.num_collapsed = static_cast<int64_t>(collapsed.size());
  layout.pair_i = pair_i.data();
  layout.pair_j = pair_j.data();
  layout.collapsed = collapsed.data();
  return layout;
}

namespace {

using checks::Arg;
using checks::check_bias;

// Tangent indices are stored as jet::Index (int32).
constexpr int64_t kMaxTangents = std::numeric_limits<jet::Index>::max();

ParsedFunction parse(const char* op, c10::string_view function, c10::ArrayRef<double> params) {
  return parse_function(op, std::string_view(function.data(), function.size()), params);
}

// t (named `tangents_name` in messages), the pairs and the collapsed list.
JetIndices check_indices(const char* op, const char* tangents_name, int64_t num_tangents, c10::IntArrayRef pair_i,
                         c10::IntArrayRef pair_j, c10::IntArrayRef collapsed) {
  checks::check_range(op, tangents_name, num_tangents, 0, kMaxTangents);
  TORCH_CHECK(pair_i.size() == pair_j.size(), op, ": pair_i and pair_j must have one length, got ", pair_i.size(),
              " and ", pair_j.size());
  const int64_t t = num_tangents;
  JetIndices indices;
  indices.num_tangents = t;
  indices.pair_i.reserve(pair_i.size());
  indices.pair_j.reserve(pair_j.size());
  for (size_t s = 0; s < pair_i.size(); ++s) {
    const int64_t i = pair_i[s], j = pair_j[s];
    TORCH_CHECK(i >= 0 && i < t && j >= 0 && j < t, op, ": pair ", s, " = (", i, ", ", j,
                ") out of range: pair_i and pair_j entries must be tangent indices in [0, t) = [0, ", t, ")");
    indices.pair_i.push_back(static_cast<jet::Index>(i));
    indices.pair_j.push_back(static_cast<jet::Index>(j));
  }
  indices.collapsed.reserve(collapsed.size());
  for (size_t q = 0; q < collapsed.size(); ++q) {
    const int64_t k = collapsed[q];
    TORCH_CHECK(k >= 0 && k < t, op, ": collapsed[", q, "] = ", k,
                " out of range: collapsed entries must be tangent indices in [0, t) = [0, ", t, ")");
    indices.collapsed.push_back(static_cast<jet::Index>(k));
  }
  std::vector<jet::Index> sorted = indices.collapsed;
  std::sort(sorted.begin(), sorted.end());
  const auto repeated = std::adjacent_find(sorted.begin(), sorted.end());
  TORCH_CHECK(repeated == sorted.end(), op, ": collapsed lists tangent ", *repeated,
              " more than once; its entries must be distinct");
  return indices;
}

// S = 1 + t + p + c.
int64_t slot_count(const char* op, const JetIndices& indices) {
  const jet::SlotLayout layout = indices.layout();
  return checks::checked_sum(op, "the slot count S = 1 + t + p + c",
                             {1, layout.num_tangents, layout.num_pairs, layout.has_collapsed() ? 1 : 0});
}

std::string describe_slots(const JetIndices& indices, int64_t slots) {
  const jet::SlotLayout layout = indices.layout();
  return "S = 1 + t + p + c = 1 + " + std::to_string(layout.num_tangents) + " + " +
         std::to_string(layout.num_pairs) + " + " + std::to_string(layout.has_collapsed() ? 1 : 0) + " = " +
         std::to_string(slots) + " slots (t tangents, p pairs, c = 1 with a collapsed list)";
}

void check_jet(const char* op, const Arg& jet, const JetIndices& indices) {
  TORCH_CHECK(jet.tensor.dim() == 3, op, ": ", jet.name, " must be a (N, S, m) jet, got shape ", jet.tensor.sizes());
  const int64_t slots = slot_count(op, indices);
  TORCH_CHECK(jet.tensor.size(1) == slots, op, ": ", jet.name, " must have ", describe_slots(indices, slots),
              ", got shape ", jet.tensor.sizes());
}

// The first layer's preactivation (N, m) and weight (m, t).
void check_first_layer(const char* op, const at::Tensor& preactivation, const at::Tensor& weight) {
  TORCH_CHECK(preactivation.dim() == 2, op, ": preactivation must be (N, m), got shape ", preactivation.sizes());
  TORCH_CHECK(weight.dim() == 2 && weight.size(0) == preactivation.size(1), op,
              ": weight must be (m, t) with m = preactivation.size(1) = ", preactivation.size(1), ", got shape ",
              weight.sizes());
}

// The output jet's shape (N, S, m) of the first layer, refusing overflow.
std::vector<int64_t> first_layer_jet_shape(const char* op, const at::Tensor& preactivation,
                                           const JetIndices& indices) {
  const int64_t n = preactivation.size(0), m = preactivation.size(1);
  const int64_t slots = slot_count(op, indices);
  checks::checked_product(op, "the output jet's size N * S * m", {n, slots, m});
  return {n, slots, m};
}

// The part the forward and backward steps share: the input jet, bias, indices and output.
JetCall jet_step_call(const at::Tensor& jet, const c10::optional<at::Tensor>& bias, JetIndices indices,
                      ParsedFunction parsed) {
  JetCall call;
  call.parsed = parsed;
  call.indices = std::move(indices);
  call.input = jet.contiguous();
  call.out = at::empty_like(call.input, at::MemoryFormat::Contiguous);
  call.n = call.input.size(0);
  call.slots = call.input.size(1);
  call.m = call.input.size(2);
  if (call.out.numel() != 0 && bias.has_value()) call.bias = bias->contiguous();
  return call;
}

}  // namespace

JetCall prepare_jet_activation(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                               c10::string_view function, c10::ArrayRef<double> params, int64_t num_tangents,
                               c10::IntArrayRef pair_i, c10::IntArrayRef pair_j, c10::IntArrayRef collapsed,
                               const c10::optional<at::Tensor>& residual) {
  const char* op = "hoderiv_ext.jet_activation";
  const Arg first{jet, "jet"};
  checks::check_floating(op, first);
  TORCH_CHECK(jet.dim() == 3, op, ": jet must be a (N, S, m) jet, got shape ", jet.sizes());
  check_bias(op, bias, first, jet.size(2));
  JetIndices indices = check_indices(op, "num_tangents", num_tangents, pair_i, pair_j, collapsed);
  check_jet(op, first, indices);
  if (residual.has_value()) {
    checks::check_like(op, {*residual, "residual"}, first);
    TORCH_CHECK(residual->sizes() == jet.sizes(), op, ": residual must have the jet's shape ", jet.sizes(),
                ", got ", residual->sizes());
  }
  const ParsedFunction parsed = parse(op, function, params);
  JetCall call = jet_step_call(jet, bias, std::move(indices), parsed);
  if (call.out.numel() != 0 && residual.has_value()) call.residual = residual->contiguous();
  return call;
}

JetCall prepare_jet_activation_backward(const at::Tensor& grad, const at::Tensor& jet,
                                        const c10::optional<at::Tensor>& bias, c10::string_view function,
                                        c10::ArrayRef<double> params, int64_t num_tangents,
                                        c10::IntArrayRef pair_i, c10::IntArrayRef pair_j,
                                        c10::IntArrayRef collapsed) {
  const char* op = "hoderiv_ext.jet_activation_backward";
  const Arg first{grad, "grad"};
  checks::check_floating(op, first);
  checks::check_like(op, {jet, "jet"}, first);
  TORCH_CHECK(jet.dim() == 3, op, ": jet must be a (N, S, m) jet, got shape ", jet.sizes());
  check_bias(op, bias, first, jet.size(2));
  JetIndices indices = check_indices(op, "num_tangents", num_tangents, pair_i, pair_j, collapsed);
  check_jet(op, {jet, "jet"}, indices);
  TORCH_CHECK(grad.sizes() == jet.sizes(), op, ": grad must have the jet's shape ", jet.sizes(), ", got ",
              grad.sizes());
  const ParsedFunction parsed = parse(op, function, params);
  JetCall call = jet_step_call(jet, bias, std::move(indices), parsed);
  if (call.out.numel() != 0) call.grad = grad.contiguous();
  return call;
}

JetCall prepare_jet_activation_first(const at::Tensor& preactivation, const at::Tensor& weight,
                                     c10::string_view function, c10::ArrayRef<double> params,
                                     c10::IntArrayRef pair_i, c10::IntArrayRef pair_j, c10::IntArrayRef collapsed) {
  const char* op = "hoderiv_ext.jet_activation_first";
  const Arg first{preactivation, "preactivation"};
  checks::check_floating(op, first);
  checks::check_like(op, {weight, "weight"}, first);
  check_first_layer(op, preactivation, weight);
  JetIndices indices =
      check_indices(op, "t = weight.size(1) (the number of tangents)", weight.size(1), pair_i, pair_j, collapsed);
  const std::vector<int64_t> shape = first_layer_jet_shape(op, preactivation, indices);
  JetCall call;
  call.parsed = parse(op, function, params);  // before the empty-batch return: a bad name fails for N = 0 too
  call.indices = std::move(indices);
  call.out = at::empty(shape, preactivation.options());
  call.n = shape[0];
  call.slots = shape[1];
  call.m = shape[2];
  if (call.out.numel() == 0) return call;
  call.input = preactivation.contiguous();
  call.weight_t = weight.t().contiguous();
  return call;
}

JetCall prepare_jet_activation_first_backward(const at::Tensor& grad, const at::Tensor& preactivation,
                                              const at::Tensor& weight, c10::string_view function,
                                              c10::ArrayRef<double> params, c10::IntArrayRef pair_i,
                                              c10::IntArrayRef pair_j, c10::IntArrayRef collapsed) {
  const char* op = "hoderiv_ext.jet_activation_first_backward";
  const Arg first{grad, "grad"};
  checks::check_floating(op, first);
  checks::check_like(op, {preactivation, "preactivation"}, first);
  checks::check_like(op, {weight, "weight"}, first);
  check_first_layer(op, preactivation, weight);
  JetIndices indices =
      check_indices(op, "t = weight.size(1) (the number of tangents)", weight.size(1), pair_i, pair_j, collapsed);
  const std::vector<int64_t> shape = first_layer_jet_shape(op, preactivation, indices);
  TORCH_CHECK(grad.sizes() == c10::IntArrayRef(shape), op,
              ": grad must be the output jet's gradient, of shape (N, S, m) = ", c10::IntArrayRef(shape), " (",
              describe_slots(indices, shape[1]), "), got shape ", grad.sizes());
  JetCall call;
  call.parsed = parse(op, function, params);
  call.indices = std::move(indices);
  call.n = shape[0];
  call.slots = shape[1];
  call.m = shape[2];
  const int64_t t = call.indices.num_tangents;
  call.out = at::empty({call.n, call.m}, preactivation.options());
  call.grad_weight = at::empty({call.m, t}, weight.options());
  if (call.m == 0) return call;
  call.input = preactivation.contiguous();
  call.weight_t = weight.t().contiguous();
  call.grad = grad.contiguous();
  return call;
}

void allocate_chunk_sums(JetCall& call, int64_t samples_per_chunk) {
  call.samples_per_chunk = std::max<int64_t>(1, samples_per_chunk);
  call.chunks = call.n / call.samples_per_chunk + (call.n % call.samples_per_chunk != 0 ? 1 : 0);
  call.sums = at::empty({call.chunks, jet::first_sum_rows(call.indices.layout()), call.m}, call.input.options());
}

}  // namespace hoderiv
