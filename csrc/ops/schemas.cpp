// The op schemas of hoderiv_ext. The elementwise ops:
//   elementwise_derivatives(x, function, params, order) -> (order + 1, *x.shape)
//       out[k] = phi^(k)(x)
//   elementwise_derivatives_backward(grad, x, function, params, shift) -> x.shape
//       out = sum_k grad[k] * phi^(k + shift)(x)     (grad: (m + 1, *x.shape))
//   polynomial_derivatives / polynomial_derivatives_backward: the same for
//       p(x) = sum_j coefficients[j] x^j.
// The jet ops: the activation step of a second-order jet (N, S, m) with
// S = 1 + t + p + c (slot layout and math: hoderiv/jet_math.h); pair_i,
// pair_j and collapsed are host lists of tangent indices.
//   jet_activation: the step, bias added to slot 0 first; with a residual
//       (N, S, m) jet, the step's jet plus the residual (a skip connection
//       h + phi(W h + b), one pass over the output);
//   jet_activation_backward: its gradient with respect to the jet (slot 0:
//       with respect to the activation's argument);
//   jet_activation_first: the first layer's step from the preactivation
//       (N, m) and the weight (m, t): tangents W[:, k], no second-order input;
//   jet_activation_first_backward: its gradients with respect to the
//       preactivation (N, m) and the weight (m, t).
// The bi-Laplacian's extra slots (math: hoderiv/bilaplacian_math.h): jet is
// the main jet (N, 1 + t + p(p+1)/2, m) of a (value, t tangents, the pairs
// i <= j over the p chosen tangents dims, row-major upper triangle), extra
// (N, p + 1, m) its third- and fourth-order slots (T_i for i in dims, then B).
//   jet_bilaplacian_extra: the extra slots of phi(a), a = jet[:, 0] + bias;
//   jet_bilaplacian_extra_backward: its gradients with respect to the main
//       jet (slot 0: with respect to a) and the extra jet.
// The univariate Taylor step (math: hoderiv/univariate_math.h): jet
// (N, 1 + t + R*order, m) holds the value, t = num_tangents tangents and R
// directions of the Taylor coefficients c_1..c_order (R derived).
//   jet_univariate: the jet of phi(a), a = jet[:, 0] + bias: phi(a),
//       phi'(a) T_k and the composed series of phi(a + delta) per direction
//       (order in [1, 8]);
//   jet_univariate_backward: its gradient with respect to the jet (slot 0:
//       with respect to a); order in [1, 7] (it needs phi^(order + 1)).
// The whole-network sweep (ops/network_jet.cpp, over the ops above; its
// autograd kernel, one node for the whole sweep, ops/network_jet_autograd.cpp):
//   network_jet: forward Taylor mode through a plain network's steps (space-
//       separated "linear" / function names), returning the last jet and the
//       value with the last bias added.
// Mixed mode's per-sample Hessian terms (ops/weighted_gram.h):
//   weighted_gram(left (N, k, m), weight (N, m), right (N, d, m)) -> (N, k, d),
//       out[n, i, j] = sum_u left[n, i, u] weight[n, u] right[n, j, u]; its
//       autograd formula is registered by the Python package (formulas.py).
// The backward ops are ops of their own. Autograd: the forward ops
// elementwise_derivatives, jet_activation, jet_activation_first,
// jet_bilaplacian_extra and jet_univariate have C++
// autograd kernels (ops/autograd.cpp) whose backward calls the backward op
// with autograd; the backward ops' and the polynomial ops' formulas and
// every op's fake kernel are registered by the Python package
// (hoderiv_ext/ops/formulas.py, fake.py).
#include "ops/registration.h"

namespace hoderiv {

c10::ArrayRef<const char*> op_schemas() {
  static constexpr const char* kSchemas[] = {
      "elementwise_derivatives(Tensor x, str function, float[] params, int order) -> Tensor",
      "elementwise_derivatives_backward(Tensor grad, Tensor x, str function, float[] params, int shift) -> Tensor",
      "polynomial_derivatives(Tensor x, Tensor coefficients, int order) -> Tensor",
      "polynomial_derivatives_backward(Tensor grad, Tensor x, Tensor coefficients, int shift) -> Tensor",
      "jet_activation(Tensor jet, Tensor? bias, str function, float[] params, int num_tangents, int[] pair_i, "
      "int[] pair_j, int[] collapsed, Tensor? residual=None) -> Tensor",
      "jet_activation_backward(Tensor grad, Tensor jet, Tensor? bias, str function, float[] params, "
      "int num_tangents, int[] pair_i, int[] pair_j, int[] collapsed) -> Tensor",
      "jet_activation_first(Tensor preactivation, Tensor weight, str function, float[] params, int[] pair_i, "
      "int[] pair_j, int[] collapsed) -> Tensor",
      "jet_activation_first_backward(Tensor grad, Tensor preactivation, Tensor weight, str function, "
      "float[] params, int[] pair_i, int[] pair_j, int[] collapsed) -> (Tensor, Tensor)",
      "jet_bilaplacian_extra(Tensor jet, Tensor? bias, Tensor extra, str function, float[] params, "
      "int num_tangents, int[] dims) -> Tensor",
      "jet_bilaplacian_extra_backward(Tensor grad, Tensor jet, Tensor? bias, Tensor extra, str function, "
      "float[] params, int num_tangents, int[] dims) -> (Tensor, Tensor)",
      "jet_univariate(Tensor jet, Tensor? bias, str function, float[] params, int num_tangents, int order) -> Tensor",
      "jet_univariate_backward(Tensor grad, Tensor jet, Tensor? bias, str function, float[] params, "
      "int num_tangents, int order) -> Tensor",
      "network_jet(Tensor x, Tensor[] weights, Tensor?[] biases, str steps, float[] params, int[] param_counts, "
      "int num_tangents, int[] pair_i, int[] pair_j, int[] collapsed) -> (Tensor, Tensor)",
      "weighted_gram(Tensor left, Tensor weight, Tensor right) -> Tensor",
  };
  return kSchemas;
}

}  // namespace hoderiv
