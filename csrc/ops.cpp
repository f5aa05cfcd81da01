// Op schemas of hoderiv_ext (one TORCH_LIBRARY block) and the host-side
// argument checks every device implementation shares.
//
// Schemas:
//   elementwise_derivatives(x, function, params, order) -> (order+1, *x.shape)
//       out[k] = phi^(k)(x)
//   elementwise_derivatives_backward(grad, x, function, params, shift) -> x.shape
//       out = sum_k grad[k] * phi^(k+shift)(x)     (grad: (m+1, *x.shape))
//   polynomial_derivatives / polynomial_derivatives_backward: the same for
//       p(x) = sum_j coefficients[j] x^j.
//   jet_activation(jet, bias, function, params, pair_i, pair_j, d, collapsed)
//       the activation step of a second-order jet (N, S, m), bias added to
//       slot 0 first; jet_activation_backward its gradient with respect to
//       the jet; jet_activation_first the first layer's step from the
//       preactivation (N, m) and the weight (m, d), and
//       jet_activation_first_backward its gradients with respect to both.
//       Math: hoderiv/jet_math.h.
// The backward ops are their own ops with their own autograd formulas
// (registered in hoderiv_ext/_ops.py and hoderiv_ext/_jet_ops.py).
#include "ops.h"

#include <ATen/Functions.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <sstream>

namespace hoderiv {

namespace {

struct FunctionEntry {
  const char* name;
  math::Function function;
  int num_params;
  const char* param_names;
};

constexpr FunctionEntry kFunctions[] = {
#define HODERIV_FUNCTION(ENUM, NAME, NUM_PARAMS, PARAM_NAMES) {NAME, math::Function::ENUM, NUM_PARAMS, PARAM_NAMES},
#include "hoderiv/functions.def"
};
static_assert(sizeof(kFunctions) / sizeof(kFunctions[0]) == math::kNumFunctions, "one entry per function");

}  // namespace

std::string supported_function_names() {
  std::ostringstream out;
  for (int i = 0; i < math::kNumFunctions; ++i) {
    if (i) out << ", ";
    out << kFunctions[i].name;
  }
  return out.str();
}

ParsedFunction parse_function(std::string_view name, c10::ArrayRef<double> params) {
  for (const auto& entry : kFunctions) {
    if (name != entry.name) continue;
    TORCH_CHECK(static_cast<int>(params.size()) == entry.num_params, "hoderiv_ext: function '",
                entry.name, "' takes ", entry.num_params, " parameter(s) (", entry.param_names,
                "), got params of length ", params.size());
    ParsedFunction parsed{entry.function, {}};
    if (entry.num_params >= 1) parsed.params.p0 = params[0];
    if (entry.num_params >= 2) parsed.params.p1 = params[1];
    if (entry.function == math::Function::kSoftplus) {
      TORCH_CHECK(params[0] != 0.0, "hoderiv_ext: softplus parameter beta must be non-zero, got ",
                  params[0]);
    }
    return parsed;
  }
  TORCH_CHECK(false, "hoderiv_ext: unknown function '", std::string(name),
              "'; the kernels serve: ", supported_function_names());
}

namespace {

void check_elementwise_input(const at::Tensor& x, int64_t order, const char* order_name) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "hoderiv_ext: x must be a float32 or float64 tensor, got ", x.scalar_type());
  TORCH_CHECK(order >= 0 && order <= math::kMaxOrder, "hoderiv_ext: ", order_name,
              " must be in [0, ", math::kMaxOrder, "] for the compiled kernels, got ", order);
}

int64_t check_backward_grad(const at::Tensor& grad, const at::Tensor& x, int64_t shift) {
  TORCH_CHECK(shift >= 0, "hoderiv_ext: shift must be non-negative, got ", shift);
  TORCH_CHECK(grad.dim() == x.dim() + 1, "hoderiv_ext: grad must have shape (m+1, *x.shape) = (m+1, ",
              x.sizes(), "), got ", grad.sizes());
  TORCH_CHECK(grad.sizes().slice(1) == x.sizes(), "hoderiv_ext: grad must have shape (m+1, ",
              x.sizes(), "), got ", grad.sizes());
  TORCH_CHECK(grad.scalar_type() == x.scalar_type(), "hoderiv_ext: grad must have x's dtype ",
              x.scalar_type(), ", got ", grad.scalar_type());
  TORCH_CHECK(grad.device() == x.device(), "hoderiv_ext: grad must be on x's device ", x.device(),
              ", got ", grad.device());
  const int64_t m = grad.size(0) - 1;
  TORCH_CHECK(m >= 0, "hoderiv_ext: grad must hold at least one derivative slice, got shape ",
              grad.sizes());
  TORCH_CHECK(m + shift <= math::kMaxOrder,
              "hoderiv_ext: differentiating this result needs derivatives of order ", m + shift,
              " but the compiled kernels serve up to order ", math::kMaxOrder,
              "; use backend='autograd' for higher orders");
  return m;
}

void check_coefficients(const at::Tensor& coefficients, const at::Tensor& x) {
  TORCH_CHECK(coefficients.dim() == 1 && coefficients.numel() >= 1,
              "hoderiv_ext: coefficients must be a non-empty 1-D tensor (ascending powers), got shape ",
              coefficients.sizes());
  TORCH_CHECK(coefficients.scalar_type() == x.scalar_type(),
              "hoderiv_ext: coefficients must have x's dtype ", x.scalar_type(), ", got ",
              coefficients.scalar_type());
  TORCH_CHECK(coefficients.device() == x.device(), "hoderiv_ext: coefficients must be on x's device ",
              x.device(), ", got ", coefficients.device());
}

std::vector<int64_t> stacked_shape(const at::Tensor& x, int64_t order) {
  std::vector<int64_t> shape;
  shape.reserve(x.dim() + 1);
  shape.push_back(order + 1);
  for (auto size : x.sizes()) shape.push_back(size);
  return shape;
}


ParsedFunction parse(c10::string_view function, c10::ArrayRef<double> params) {
  return parse_function(std::string_view(function.data(), function.size()), params);
}

ElementwiseCall forward_call(const at::Tensor& x, int64_t order) {
  ElementwiseCall call;
  call.input = x.contiguous();
  call.out = at::empty(stacked_shape(x, order), call.input.options());
  call.n = call.input.numel();
  call.order = order;
  return call;
}

ElementwiseCall backward_call(const at::Tensor& grad, const at::Tensor& x, int64_t m, int64_t shift) {
  ElementwiseCall call;
  call.input = x.contiguous();
  call.weights = grad.contiguous();
  call.out = at::empty_like(call.input);
  call.n = call.input.numel();
  call.order = m;
  call.shift = shift;
  return call;
}

int64_t check_jet_layout(const at::Tensor& jet, const char* jet_name, const at::Tensor& pair_i,
                         const at::Tensor& pair_j, int64_t num_inputs, bool collapsed) {
  TORCH_CHECK(jet.dim() == 3, "hoderiv_ext: ", jet_name, " must be a (N, S, m) jet, got shape ", jet.sizes());
  TORCH_CHECK(jet.scalar_type() == at::kFloat || jet.scalar_type() == at::kDouble, "hoderiv_ext: ", jet_name,
              " must be float32 or float64, got ", jet.scalar_type());
  TORCH_CHECK(num_inputs >= 1, "hoderiv_ext: num_inputs must be >= 1, got ", num_inputs);
  TORCH_CHECK(pair_i.dim() == 1 && pair_j.dim() == 1 && pair_i.numel() == pair_j.numel(),
              "hoderiv_ext: pair_i and pair_j must be 1-D of equal length, got shapes ", pair_i.sizes(), " and ",
              pair_j.sizes());
  TORCH_CHECK(pair_i.scalar_type() == at::kLong && pair_j.scalar_type() == at::kLong,
              "hoderiv_ext: pair_i and pair_j must be int64, got ", pair_i.scalar_type(), " and ",
              pair_j.scalar_type());
  TORCH_CHECK(pair_i.device() == jet.device() && pair_j.device() == jet.device(),
              "hoderiv_ext: pair_i and pair_j must be on the jet's device ", jet.device());
  const int64_t num_second = collapsed ? 1 : pair_i.numel();
  TORCH_CHECK(jet.size(1) == 1 + num_inputs + num_second, "hoderiv_ext: ", jet_name, " must have S = 1 + d + s = ",
              1 + num_inputs + num_second, " slots (d = ", num_inputs, ", s = ", num_second,
              collapsed ? ", collapsed Laplacian" : "", "), got shape ", jet.sizes());
  if (!collapsed && pair_i.device().is_cpu()) {
    const at::Tensor pi = pair_i.contiguous();
    const at::Tensor pj = pair_j.contiguous();
    const int64_t* a = pi.const_data_ptr<int64_t>();
    const int64_t* b = pj.const_data_ptr<int64_t>();
    for (int64_t s = 0; s < num_second; ++s) {
      TORCH_CHECK(a[s] >= 0 && a[s] < num_inputs && b[s] >= 0 && b[s] < num_inputs, "hoderiv_ext: pair ", s, " = (",
                  a[s], ", ", b[s], ") out of range for d = ", num_inputs);
    }
  }
  return num_second;
}

void check_bias(const c10::optional<at::Tensor>& bias, const at::Tensor& jet) {
  if (!bias.has_value()) return;
  TORCH_CHECK(bias->dim() == 1 && bias->size(0) == jet.size(2), "hoderiv_ext: bias must have shape (m,) = (",
              jet.size(2), ",), got ", bias->sizes());
  TORCH_CHECK(bias->scalar_type() == jet.scalar_type(), "hoderiv_ext: bias must have the jet's dtype ",
              jet.scalar_type(), ", got ", bias->scalar_type());
  TORCH_CHECK(bias->device() == jet.device(), "hoderiv_ext: bias must be on the jet's device ", jet.device(),
              ", got ", bias->device());
}

void check_jet_grad(const at::Tensor& grad, const at::Tensor& jet) {
  TORCH_CHECK(grad.sizes() == jet.sizes(), "hoderiv_ext: grad must have the jet's shape ", jet.sizes(), ", got ",
              grad.sizes());
  TORCH_CHECK(grad.scalar_type() == jet.scalar_type() && grad.device() == jet.device(),
              "hoderiv_ext: grad must have the jet's dtype and device (", jet.scalar_type(), ", ", jet.device(),
              "), got ", grad.scalar_type(), ", ", grad.device());
}

std::vector<int64_t> check_first_layer(const at::Tensor& preactivation, const at::Tensor& weight,
                                       const at::Tensor& pair_i, bool collapsed) {
  TORCH_CHECK(preactivation.dim() == 2, "hoderiv_ext: preactivation must be (N, m), got shape ",
              preactivation.sizes());
  TORCH_CHECK(weight.dim() == 2 && weight.size(0) == preactivation.size(1),
              "hoderiv_ext: weight must be (m, d) with m = ", preactivation.size(1), ", got shape ", weight.sizes());
  TORCH_CHECK(weight.scalar_type() == preactivation.scalar_type() && weight.device() == preactivation.device(),
              "hoderiv_ext: weight must have the preactivation's dtype and device");
  const int64_t num_second = collapsed ? 1 : pair_i.numel();
  return {preactivation.size(0), 1 + weight.size(1) + num_second, preactivation.size(1)};
}

jet::SlotLayout layout_of(const JetCall& call, int64_t num_inputs, bool collapsed, int64_t num_second) {
  return jet::SlotLayout{num_inputs, num_second, collapsed, call.pair_i.const_data_ptr<int64_t>(),
                         call.pair_j.const_data_ptr<int64_t>()};
}

// The first layer's operands, shared by its step and the step's backward: the
// preactivation, the weight's transpose (row i holds T_i for every unit), the
// pairs and the slot layout.
void set_first_layer_operands(JetCall& call, const at::Tensor& preactivation, const at::Tensor& weight,
                              const at::Tensor& pair_i, const at::Tensor& pair_j, bool collapsed,
                              int64_t num_second) {
  call.input = preactivation.contiguous();
  call.weight_t = weight.t().contiguous();
  call.pair_i = pair_i.contiguous();
  call.pair_j = pair_j.contiguous();
  call.layout = layout_of(call, weight.size(1), collapsed, num_second);
}

// The part the forward and backward steps share: the input jet, bias, pairs, layout and output.
JetCall prepare_jet_step(const at::Tensor& jet, const c10::optional<at::Tensor>& bias, const at::Tensor& pair_i,
                         const at::Tensor& pair_j, int64_t num_inputs, bool collapsed, int64_t num_second,
                         ParsedFunction parsed) {
  JetCall call;
  call.parsed = parsed;
  call.input = jet.contiguous();
  call.pair_i = pair_i.contiguous();
  call.pair_j = pair_j.contiguous();
  call.out = at::empty_like(call.input);
  call.n = call.input.size(0);
  call.slots = call.input.size(1);
  call.m = call.input.size(2);
  if (call.out.numel() == 0) return call;
  if (bias.has_value()) call.bias = bias->contiguous();
  call.layout = layout_of(call, num_inputs, collapsed, num_second);
  return call;
}

}  // namespace

ElementwiseCall prepare_elementwise(const at::Tensor& x, c10::string_view function, c10::ArrayRef<double> params,
                                    int64_t order) {
  check_elementwise_input(x, order, "order");
  const ParsedFunction parsed = parse(function, params);
  ElementwiseCall call = forward_call(x, order);
  call.parsed = parsed;
  return call;
}

ElementwiseCall prepare_elementwise_backward(const at::Tensor& grad, const at::Tensor& x, c10::string_view function,
                                             c10::ArrayRef<double> params, int64_t shift) {
  check_elementwise_input(x, 0, "order");
  const int64_t m = check_backward_grad(grad, x, shift);
  const ParsedFunction parsed = parse(function, params);
  ElementwiseCall call = backward_call(grad, x, m, shift);
  call.parsed = parsed;
  return call;
}

ElementwiseCall prepare_polynomial(const at::Tensor& x, const at::Tensor& coefficients, int64_t order) {
  check_elementwise_input(x, order, "order");
  check_coefficients(coefficients, x);
  ElementwiseCall call = forward_call(x, order);
  call.coefficients = coefficients.contiguous();
  return call;
}

ElementwiseCall prepare_polynomial_backward(const at::Tensor& grad, const at::Tensor& x,
                                            const at::Tensor& coefficients, int64_t shift) {
  check_elementwise_input(x, 0, "order");
  const int64_t m = check_backward_grad(grad, x, shift);
  check_coefficients(coefficients, x);
  ElementwiseCall call = backward_call(grad, x, m, shift);
  call.coefficients = coefficients.contiguous();
  return call;
}

JetCall prepare_jet_activation(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                               c10::string_view function, c10::ArrayRef<double> params, const at::Tensor& pair_i,
                               const at::Tensor& pair_j, int64_t num_inputs, bool collapsed) {
  const int64_t num_second = check_jet_layout(jet, "jet", pair_i, pair_j, num_inputs, collapsed);
  check_bias(bias, jet);
  return prepare_jet_step(jet, bias, pair_i, pair_j, num_inputs, collapsed, num_second, parse(function, params));
}

JetCall prepare_jet_activation_backward(const at::Tensor& grad, const at::Tensor& jet,
                                        const c10::optional<at::Tensor>& bias, c10::string_view function,
                                        c10::ArrayRef<double> params, const at::Tensor& pair_i,
                                        const at::Tensor& pair_j, int64_t num_inputs, bool collapsed) {
  const int64_t num_second = check_jet_layout(jet, "jet", pair_i, pair_j, num_inputs, collapsed);
  check_jet_grad(grad, jet);
  check_bias(bias, jet);
  JetCall call =
      prepare_jet_step(jet, bias, pair_i, pair_j, num_inputs, collapsed, num_second, parse(function, params));
  if (call.out.numel() != 0) call.grad = grad.contiguous();
  return call;
}

JetCall prepare_jet_activation_first(const at::Tensor& preactivation, const at::Tensor& weight,
                                     c10::string_view function, c10::ArrayRef<double> params,
                                     const at::Tensor& pair_i, const at::Tensor& pair_j, bool collapsed) {
  const std::vector<int64_t> out_shape = check_first_layer(preactivation, weight, pair_i, collapsed);
  JetCall call;
  call.out = at::empty(out_shape, preactivation.options());
  call.n = out_shape[0];
  call.slots = out_shape[1];
  call.m = out_shape[2];
  const int64_t d = weight.size(1);
  const int64_t num_second = check_jet_layout(call.out, "the output jet", pair_i, pair_j, d, collapsed);
  call.parsed = parse(function, params);  // before the empty-batch return: a bad name fails for N = 0 too
  if (call.out.numel() == 0) return call;
  set_first_layer_operands(call, preactivation, weight, pair_i, pair_j, collapsed, num_second);
  return call;
}

JetCall prepare_jet_activation_first_backward(const at::Tensor& grad, const at::Tensor& preactivation,
                                              const at::Tensor& weight, c10::string_view function,
                                              c10::ArrayRef<double> params, const at::Tensor& pair_i,
                                              const at::Tensor& pair_j, bool collapsed) {
  const std::vector<int64_t> jet_shape = check_first_layer(preactivation, weight, pair_i, collapsed);
  const int64_t d = weight.size(1);
  const int64_t num_second = check_jet_layout(grad, "grad", pair_i, pair_j, d, collapsed);
  TORCH_CHECK(grad.sizes() == c10::IntArrayRef(jet_shape), "hoderiv_ext: grad must be the output jet's gradient (",
              c10::IntArrayRef(jet_shape), "), got shape ", grad.sizes());
  TORCH_CHECK(grad.scalar_type() == preactivation.scalar_type() && grad.device() == preactivation.device(),
              "hoderiv_ext: grad must have the preactivation's dtype and device (", preactivation.scalar_type(), ", ",
              preactivation.device(), "), got ", grad.scalar_type(), ", ", grad.device());
  JetCall call;
  call.parsed = parse(function, params);
  call.n = jet_shape[0];
  call.slots = jet_shape[1];
  call.m = jet_shape[2];
  set_first_layer_operands(call, preactivation, weight, pair_i, pair_j, collapsed, num_second);
  call.grad = grad.contiguous();
  call.pair_products = collapsed ? (call.weight_t * call.weight_t).sum(0, /*keepdim=*/true)
                                 : call.weight_t.index_select(0, call.pair_i) * call.weight_t.index_select(0, call.pair_j);
  call.out = at::empty({call.n, call.m}, call.input.options());
  return call;
}

void allocate_chunk_sums(JetCall& call, int64_t samples_per_chunk) {
  call.samples_per_chunk = std::max<int64_t>(1, samples_per_chunk);
  const int64_t chunks = (call.n + call.samples_per_chunk - 1) / call.samples_per_chunk;
  call.sums = at::zeros({chunks, call.layout.num_inputs + call.layout.num_second, call.m}, call.input.options());
}

std::tuple<at::Tensor, at::Tensor> finish_jet_activation_first_backward(const JetCall& call) {
  const int64_t d = call.layout.num_inputs;
  const at::Tensor sums = call.sums.sum(0);  // (d + s, m), over the chunks in a fixed order
  at::Tensor grad_weight_t = sums.narrow(0, 0, d).clone();
  const at::Tensor second_sums = sums.narrow(0, d, sums.size(0) - d);  // H_s = sum_n phi'' gQ_s
  if (call.layout.collapsed) {
    grad_weight_t.add_(2 * second_sums * call.weight_t);
  } else if (second_sums.size(0) > 0) {
    grad_weight_t.index_add_(0, call.pair_i, second_sums * call.weight_t.index_select(0, call.pair_j));
    grad_weight_t.index_add_(0, call.pair_j, second_sums * call.weight_t.index_select(0, call.pair_i));
  }
  return {call.out, grad_weight_t.t().contiguous()};
}

}  // namespace hoderiv

TORCH_LIBRARY(hoderiv_ext, m) {
  m.def("elementwise_derivatives(Tensor x, str function, float[] params, int order) -> Tensor");
  m.def(
      "elementwise_derivatives_backward(Tensor grad, Tensor x, str function, float[] params, "
      "int shift) -> Tensor");
  m.def("polynomial_derivatives(Tensor x, Tensor coefficients, int order) -> Tensor");
  m.def(
      "polynomial_derivatives_backward(Tensor grad, Tensor x, Tensor coefficients, int shift) -> "
      "Tensor");
  // Taylor-mode activation step on a jet (N, S, m); see hoderiv/jet_math.h.
  m.def(
      "jet_activation(Tensor jet, Tensor? bias, str function, float[] params, Tensor pair_i, Tensor pair_j, "
      "int num_inputs, bool collapsed) -> Tensor");
  m.def(
      "jet_activation_backward(Tensor grad, Tensor jet, Tensor? bias, str function, float[] params, "
      "Tensor pair_i, Tensor pair_j, int num_inputs, bool collapsed) -> Tensor");
  // First layer: tangents are the weight's columns for every sample, Q = 0.
  m.def(
      "jet_activation_first(Tensor preactivation, Tensor weight, str function, float[] params, Tensor pair_i, "
      "Tensor pair_j, bool collapsed) -> Tensor");
  // Its backward: (gradient with respect to the preactivation (N, m), to the weight (m, d)).
  m.def(
      "jet_activation_first_backward(Tensor grad, Tensor preactivation, Tensor weight, str function, "
      "float[] params, Tensor pair_i, Tensor pair_j, bool collapsed) -> (Tensor, Tensor)");
}
