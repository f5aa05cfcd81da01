// Host preparation of the elementwise ops (see prepare.h), shared by the CPU
// and CUDA wrappers.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

#include <limits>
#include <string_view>

#include "ops/checks.h"
#include "ops/prepare.h"

namespace hoderiv {
namespace {

using checks::Arg;

constexpr int64_t kMaxOrder = math::kMaxOrder;

// grad of a backward op: (m + 1, *x.shape) with m + shift <= kMaxOrder
// (shift already checked to lie in [0, kMaxOrder]). Returns m.
int64_t check_backward_grad(const char* op, const at::Tensor& grad, const at::Tensor& x, int64_t shift) {
  TORCH_CHECK(grad.dim() == x.dim() + 1 && grad.size(0) >= 1 && grad.sizes().slice(1) == x.sizes(), op,
              ": grad must have shape (m + 1, *x.shape) = (m + 1, ", x.sizes(), ") with m >= 0, got ",
              grad.sizes());
  const int64_t m = grad.size(0) - 1;
  int64_t needed = 0;
  if (c10::add_overflows(m, shift, &needed)) needed = std::numeric_limits<int64_t>::max();
  TORCH_CHECK(needed <= kMaxOrder, op, ": differentiating this result needs derivatives of order ", needed,
              " (grad holds orders 0..", m, ", shift ", shift, ") but the compiled kernels serve up to order ",
              kMaxOrder, "; use backend='autograd' for higher orders");
  return m;
}

void check_coefficients(const char* op, const at::Tensor& coefficients, const Arg& first) {
  checks::check_like(op, {coefficients, "coefficients"}, first);
  TORCH_CHECK(coefficients.dim() == 1 && coefficients.numel() >= 1, op,
              ": coefficients must be a non-empty 1-D tensor (ascending powers), got shape ", coefficients.sizes());
}

ParsedFunction parse(const char* op, c10::string_view function, c10::ArrayRef<double> params) {
  return parse_function(op, std::string_view(function.data(), function.size()), params);
}

ElementwiseCall forward_call(const at::Tensor& x, int64_t order) {
  ElementwiseCall call;
  call.input = x.contiguous();
  std::vector<int64_t> shape{order + 1};
  shape.insert(shape.end(), x.sizes().begin(), x.sizes().end());
  call.out = at::empty(shape, call.input.options());
  call.n = call.input.numel();
  call.order = order;
  return call;
}

ElementwiseCall backward_call(const at::Tensor& grad, const at::Tensor& x, int64_t m, int64_t shift) {
  ElementwiseCall call;
  call.input = x.contiguous();
  call.weights = grad.contiguous();
  call.out = at::empty_like(call.input, at::MemoryFormat::Contiguous);
  call.n = call.input.numel();
  call.order = m;
  call.shift = shift;
  return call;
}

void set_polynomial(ElementwiseCall& call, const at::Tensor& coefficients) {
  if (call.n == 0) return;
  call.coefficients = coefficients.contiguous();
  call.table = at::empty({call.highest_order() + 1, call.coefficients.numel()}, call.coefficients.options());
}

}  // namespace

ElementwiseCall prepare_elementwise(const at::Tensor& x, c10::string_view function, c10::ArrayRef<double> params,
                                    int64_t order) {
  const char* op = "hoderiv_ext.elementwise_derivatives";
  checks::check_floating(op, {x, "x"});
  checks::check_range(op, "order", order, 0, kMaxOrder);
  const ParsedFunction parsed = parse(op, function, params);
  ElementwiseCall call = forward_call(x, order);
  call.parsed = parsed;
  return call;
}

ElementwiseCall prepare_elementwise_backward(const at::Tensor& grad, const at::Tensor& x, c10::string_view function,
                                             c10::ArrayRef<double> params, int64_t shift) {
  const char* op = "hoderiv_ext.elementwise_derivatives_backward";
  const Arg first{grad, "grad"};
  checks::check_floating(op, first);
  checks::check_like(op, {x, "x"}, first);
  checks::check_range(op, "shift", shift, 0, kMaxOrder);
  const int64_t m = check_backward_grad(op, grad, x, shift);
  const ParsedFunction parsed = parse(op, function, params);
  ElementwiseCall call = backward_call(grad, x, m, shift);
  call.parsed = parsed;
  return call;
}

ElementwiseCall prepare_polynomial(const at::Tensor& x, const at::Tensor& coefficients, int64_t order) {
  const char* op = "hoderiv_ext.polynomial_derivatives";
  const Arg first{x, "x"};
  checks::check_floating(op, first);
  check_coefficients(op, coefficients, first);
  checks::check_range(op, "order", order, 0, kMaxOrder);
  ElementwiseCall call = forward_call(x, order);
  set_polynomial(call, coefficients);
  return call;
}

ElementwiseCall prepare_polynomial_backward(const at::Tensor& grad, const at::Tensor& x,
                                            const at::Tensor& coefficients, int64_t shift) {
  const char* op = "hoderiv_ext.polynomial_derivatives_backward";
  const Arg first{grad, "grad"};
  checks::check_floating(op, first);
  checks::check_like(op, {x, "x"}, first);
  check_coefficients(op, coefficients, first);
  checks::check_range(op, "shift", shift, 0, kMaxOrder);
  const int64_t m = check_backward_grad(op, grad, x, shift);
  ElementwiseCall call = backward_call(grad, x, m, shift);
  set_polynomial(call, coefficients);
  return call;
}

}  // namespace hoderiv
