// Host preparation of the bi-Laplacian extra-slot ops (see prepare.h), shared
// by the CPU and CUDA wrappers. The dims list arrives as a host int[] list
// and is validated here, once, for every device.
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <limits>
#include <string_view>
#include <utility>
#include <vector>

#include "hoderiv/bilaplacian_math.h"
#include "ops/checks.h"
#include "ops/prepare.h"

namespace hoderiv {

bilaplacian::ExtraLayout BilaplacianExtraCall::layout() const {
  bilaplacian::ExtraLayout layout;
  layout.num_tangents = num_tangents;
  layout.num_dims = static_cast<int64_t>(dims.size());
  layout.dims = dims.data();
  return layout;
}

namespace {

using checks::Arg;
using checks::check_bias;
using checks::dense_rows;
using checks::sample_stride;

constexpr int64_t kMaxTangents = std::numeric_limits<jet::Index>::max();

// num_tangents and dims: p >= 1 distinct entries in [0, t).
std::vector<jet::Index> check_dims(const char* op, int64_t num_tangents, c10::IntArrayRef dims) {
  checks::check_range(op, "num_tangents", num_tangents, 0, kMaxTangents);
  TORCH_CHECK(!dims.empty(), op, ": dims must list at least one tangent index (p >= 1), got an empty list");
  std::vector<jet::Index> result;
  result.reserve(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    TORCH_CHECK(dims[i] >= 0 && dims[i] < num_tangents, op, ": dims[", i, "] = ", dims[i],
                " out of range: dims entries must be tangent indices in [0, num_tangents) = [0, ", num_tangents,
                ")");
    result.push_back(static_cast<jet::Index>(dims[i]));
  }
  std::vector<jet::Index> sorted = result;
  std::sort(sorted.begin(), sorted.end());
  const auto repeated = std::adjacent_find(sorted.begin(), sorted.end());
  TORCH_CHECK(repeated == sorted.end(), op, ": dims lists tangent ", *repeated,
              " more than once; its entries must be distinct");
  return result;
}

// The jet (N, S, m) with S = 1 + t + p(p+1)/2 and extra (N, p + 1, m).
void check_shapes(const char* op, const at::Tensor& jet, const at::Tensor& extra, int64_t t, int64_t p) {
  TORCH_CHECK(jet.dim() == 3, op, ": jet must be a (N, S, m) jet, got shape ", jet.sizes());
  const int64_t pairs = checks::checked_product(op, "the pair count p (p + 1)", {p, p + 1}) / 2;
  const int64_t slots = checks::checked_sum(op, "the slot count S = 1 + t + p(p+1)/2", {1, t, pairs});
  TORCH_CHECK(jet.size(1) == slots, op, ": jet must have S = 1 + t + p(p+1)/2 = 1 + ", t, " + ", pairs, " = ", slots,
              " slots (the value, t = num_tangents tangents, the pairs i <= j over the p = len(dims) chosen "
              "tangents), got shape ",
              jet.sizes());
  TORCH_CHECK(extra.dim() == 3 && extra.size(0) == jet.size(0) && extra.size(1) == p + 1 &&
                  extra.size(2) == jet.size(2),
              op, ": extra must have shape (N, p + 1, m) = (", jet.size(0), ", ", p + 1, ", ", jet.size(2),
              ") (T_i for the p = len(dims) chosen tangents, then B), got ", extra.sizes());
}

BilaplacianExtraCall make_call(const at::Tensor& jet, const c10::optional<at::Tensor>& bias, const at::Tensor& extra,
                               int64_t num_tangents, std::vector<jet::Index> dims, ParsedFunction parsed) {
  BilaplacianExtraCall call;
  call.parsed = parsed;
  call.num_tangents = num_tangents;
  call.dims = std::move(dims);
  call.n = jet.size(0);
  call.m = jet.size(2);
  call.out = at::empty(extra.sizes(), extra.options().memory_format(at::MemoryFormat::Contiguous));
  if (call.out.numel() == 0) return call;
  call.jet = dense_rows(jet);
  call.extra = dense_rows(extra);
  call.jet_sample_stride = sample_stride(call.jet);
  call.extra_sample_stride = sample_stride(call.extra);
  if (bias.has_value()) call.bias = bias->contiguous();
  return call;
}

}  // namespace

BilaplacianExtraCall prepare_jet_bilaplacian_extra(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                                                   const at::Tensor& extra, c10::string_view function,
                                                   c10::ArrayRef<double> params, int64_t num_tangents,
                                                   c10::IntArrayRef dims) {
  const char* op = "hoderiv_ext.jet_bilaplacian_extra";
  const Arg first{jet, "jet"};
  checks::check_floating(op, first);
  checks::check_like(op, {extra, "extra"}, first);
  std::vector<jet::Index> chosen = check_dims(op, num_tangents, dims);
  check_shapes(op, jet, extra, num_tangents, static_cast<int64_t>(chosen.size()));
  check_bias(op, bias, first, jet.size(2));
  const ParsedFunction parsed = parse_function(op, std::string_view(function.data(), function.size()), params);
  return make_call(jet, bias, extra, num_tangents, std::move(chosen), parsed);
}

BilaplacianExtraCall prepare_jet_bilaplacian_extra_backward(const at::Tensor& grad, const at::Tensor& jet,
                                                            const c10::optional<at::Tensor>& bias,
                                                            const at::Tensor& extra, c10::string_view function,
                                                            c10::ArrayRef<double> params, int64_t num_tangents,
                                                            c10::IntArrayRef dims) {
  const char* op = "hoderiv_ext.jet_bilaplacian_extra_backward";
  const Arg first{grad, "grad"};
  checks::check_floating(op, first);
  checks::check_like(op, {jet, "jet"}, first);
  checks::check_like(op, {extra, "extra"}, first);
  std::vector<jet::Index> chosen = check_dims(op, num_tangents, dims);
  check_shapes(op, jet, extra, num_tangents, static_cast<int64_t>(chosen.size()));
  check_bias(op, bias, first, jet.size(2));
  TORCH_CHECK(grad.sizes() == extra.sizes(), op, ": grad must have extra's shape (N, p + 1, m) = ", extra.sizes(),
              ", got ", grad.sizes());
  const ParsedFunction parsed = parse_function(op, std::string_view(function.data(), function.size()), params);
  BilaplacianExtraCall call = make_call(jet, bias, extra, num_tangents, std::move(chosen), parsed);
  call.grad_jet = at::empty(jet.sizes(), jet.options().memory_format(at::MemoryFormat::Contiguous));
  if (call.out.numel() != 0) call.grad = grad.contiguous();
  return call;
}

}  // namespace hoderiv
