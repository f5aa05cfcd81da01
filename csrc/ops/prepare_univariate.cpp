// Host preparation of the univariate Taylor step ops (see prepare.h), shared
// by the CPU and CUDA wrappers: the arguments checked, the number of
// directions R derived from the jet's slot count, the operands made dense,
// the output allocated. Nothing here synchronises with a device.
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <limits>
#include <string_view>

#include "hoderiv/univariate_math.h"
#include "ops/checks.h"
#include "ops/prepare.h"

namespace hoderiv {

univariate::Layout UnivariateCall::layout() const {
  univariate::Layout layout;
  layout.num_tangents = num_tangents;
  layout.num_directions = num_directions;
  layout.order = order;
  return layout;
}

namespace {

using checks::Arg;
using checks::check_bias;
using checks::dense_rows;
using checks::sample_stride;

// The jet (N, S, m) with S = 1 + t + R * order: returns R. order has been
// range-checked (>= 1) before.
int64_t check_slots(const char* op, const at::Tensor& jet, int64_t num_tangents, int64_t order) {
  TORCH_CHECK(jet.dim() == 3, op, ": jet must be a (N, S, m) jet, got shape ", jet.sizes());
  const int64_t slots = jet.size(1);
  checks::check_range(op, "num_tangents", num_tangents, 0, std::numeric_limits<int32_t>::max());
  TORCH_CHECK(num_tangents <= slots - 1, op, ": num_tangents = ", num_tangents, " leaves no room in jet's S = ", slots,
              " slots: S = 1 + t + R * order needs t <= S - 1");
  const int64_t coefficients = slots - 1 - num_tangents;
  TORCH_CHECK(coefficients % order == 0, op, ": jet must have S = 1 + t + R * order slots (the value, t = ",
              num_tangents, " tangents, R directions of order = ", order, " coefficients), got S = ", slots, ": ",
              coefficients, " coefficient slots are not a multiple of order");
  return coefficients / order;
}

// Everything both ops check; `first` is the op's first tensor argument.
UnivariateCall make_call(const char* op, const Arg& first, const at::Tensor& jet,
                         const c10::optional<at::Tensor>& bias, c10::string_view function,
                         c10::ArrayRef<double> params, int64_t num_tangents, int64_t order) {
  UnivariateCall call;
  call.num_directions = check_slots(op, jet, num_tangents, order);
  call.num_tangents = num_tangents;
  call.order = order;
  check_bias(op, bias, first, jet.size(2));
  call.parsed = parse_function(op, std::string_view(function.data(), function.size()), params);
  call.n = jet.size(0);
  call.m = jet.size(2);
  call.out = at::empty(jet.sizes(), jet.options().memory_format(at::MemoryFormat::Contiguous));
  if (call.out.numel() == 0) return call;
  call.jet = dense_rows(jet);
  call.jet_sample_stride = sample_stride(call.jet);
  if (bias.has_value()) call.bias = bias->contiguous();
  return call;
}

}  // namespace

UnivariateCall prepare_jet_univariate(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                                      c10::string_view function, c10::ArrayRef<double> params, int64_t num_tangents,
                                      int64_t order) {
  const char* op = "hoderiv_ext.jet_univariate";
  const Arg first{jet, "jet"};
  checks::check_floating(op, first);
  checks::check_range(op, "order", order, 1, math::kMaxOrder);
  return make_call(op, first, jet, bias, function, params, num_tangents, order);
}

UnivariateCall prepare_jet_univariate_backward(const at::Tensor& grad, const at::Tensor& jet,
                                               const c10::optional<at::Tensor>& bias, c10::string_view function,
                                               c10::ArrayRef<double> params, int64_t num_tangents, int64_t order) {
  const char* op = "hoderiv_ext.jet_univariate_backward";
  const Arg first{grad, "grad"};
  checks::check_floating(op, first);
  checks::check_like(op, {jet, "jet"}, first);
  TORCH_CHECK(order >= 1 && order <= math::kMaxOrder - 1, op, ": order must be in [1, ", math::kMaxOrder - 1,
              "], got ", order, ": the gradient of order-K coefficients needs phi^(K + 1) and the kernels serve "
              "derivatives to order ", math::kMaxOrder,
              ", so order-8 coefficients are not differentiable again (use backend=\"autograd\")");
  UnivariateCall call = make_call(op, first, jet, bias, function, params, num_tangents, order);
  TORCH_CHECK(grad.sizes() == jet.sizes(), op, ": grad must have jet's shape ", jet.sizes(), ", got ",
              grad.sizes());
  if (call.out.numel() != 0) call.grad = grad.contiguous();
  return call;
}

}  // namespace hoderiv
