// Host-side declarations shared by the op schemas (ops.cpp) and the CPU and
// CUDA implementations: argument checking and function-name parsing live in
// one place so every device reports bad input with the same message.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "hoderiv/derivative_math.h"
#include "hoderiv/jet_math.h"

namespace hoderiv {

struct ParsedFunction {
  math::Function function;
  math::FunctionParams params;
};

// Maps a function name ("tanh", "softplus", ...) and its scalar parameters to
// the kernel's enum, checking the parameter count and values.
ParsedFunction parse_function(std::string_view name, c10::ArrayRef<double> params);

// Comma-separated list of the names parse_function accepts (for messages).
std::string supported_function_names();

// The host half of an elementwise-op call, shared by the CPU and CUDA
// wrappers: the arguments checked (x float32/float64; order, or m + shift for
// a backward, in [0, kMaxOrder]; grad of shape (m + 1, *x.shape); polynomial
// coefficients 1-D, non-empty; every tensor with x's dtype and device), the
// operands made contiguous, the output allocated on the current device and
// the function parsed. Undefined tensors are operands the op does not have.
// When `out` is empty the wrapper returns it as is. Callers on CUDA set the
// device guard first.
struct ElementwiseCall {
  at::Tensor input;         // x, contiguous
  at::Tensor weights;       // backward: grad (m + 1, *x.shape), plane k weighs y^(k + shift)
  at::Tensor coefficients;  // polynomial ops: ascending powers
  at::Tensor out;           // forward: (order + 1, *x.shape); backward: x's shape
  int64_t n = 0;            // elements of x
  int64_t order = 0;        // forward: the highest order; backward: m
  int64_t shift = 0;        // backward only
  ParsedFunction parsed{};  // elementwise_derivatives*: the function and its parameters
};

ElementwiseCall prepare_elementwise(const at::Tensor& x, c10::string_view function, c10::ArrayRef<double> params,
                                    int64_t order);
ElementwiseCall prepare_elementwise_backward(const at::Tensor& grad, const at::Tensor& x, c10::string_view function,
                                             c10::ArrayRef<double> params, int64_t shift);
ElementwiseCall prepare_polynomial(const at::Tensor& x, const at::Tensor& coefficients, int64_t order);
ElementwiseCall prepare_polynomial_backward(const at::Tensor& grad, const at::Tensor& x,
                                            const at::Tensor& coefficients, int64_t shift);

// The host half of a jet activation-step call, shared by the CPU and CUDA
// wrappers: the arguments checked, the operands made contiguous (held here,
// so the raw pointers in `layout` stay valid), the output allocated on the
// current device, the slot layout and the parsed function. Undefined tensors
// are the operands the op does not have. When `out` is empty the wrapper
// returns it as is.
struct JetCall {
  at::Tensor input;     // the jet (N, S, m), or the first layer's preactivation (N, m)
  at::Tensor bias;      // (m), or undefined
  at::Tensor weight_t;  // first layer: the weight's transpose (d, m); row i holds T_i for every unit
  at::Tensor grad;      // backward: the output jet's gradient (N, S, m)
  at::Tensor pair_i, pair_j;
  at::Tensor out;       // the result: a jet (N, S, m), the gradient with respect to the input jet, or
                        // (first layer's backward) the gradient with respect to the preactivation (N, m)
  at::Tensor pair_products;  // first layer's backward: P_s = W[:, i_s] W[:, j_s] as (s, m) (collapsed: (1, m))
  at::Tensor sums;           // first layer's backward: zeroed partial sums (chunks, d + s, m)
  int64_t samples_per_chunk = 0;  // first layer's backward: samples behind each chunk of `sums`
  int64_t n = 0, slots = 0, m = 0;
  jet::SlotLayout layout{};
  ParsedFunction parsed{};
};

// Checks: the jet (N, S, m) against its slot layout (S = 1 + d + s, or 2 + d
// collapsed; pair_i, pair_j int64 1-D of length s on the jet's device, pair
// values checked when they are CPU tensors), the bias ((m), the jet's dtype
// and device), the backward's grad (the jet's shape, dtype and device), the
// first layer's preactivation (N, m) and weight (m, d). Callers on CUDA set
// the device guard first.
JetCall prepare_jet_activation(const at::Tensor& jet, const c10::optional<at::Tensor>& bias,
                               c10::string_view function, c10::ArrayRef<double> params, const at::Tensor& pair_i,
                               const at::Tensor& pair_j, int64_t num_inputs, bool collapsed);
JetCall prepare_jet_activation_backward(const at::Tensor& grad, const at::Tensor& jet,
                                        const c10::optional<at::Tensor>& bias, c10::string_view function,
                                        c10::ArrayRef<double> params, const at::Tensor& pair_i,
                                        const at::Tensor& pair_j, int64_t num_inputs, bool collapsed);
JetCall prepare_jet_activation_first(const at::Tensor& preactivation, const at::Tensor& weight,
                                     c10::string_view function, c10::ArrayRef<double> params,
                                     const at::Tensor& pair_i, const at::Tensor& pair_j, bool collapsed);

// The first layer's backward (jet_activation_first_backward): grad is the
// output jet's gradient (N, 1 + d + s, m). After allocate_chunk_sums (each
// device picks its chunk size) the kernels fill call.out (the gradient with
// respect to the preactivation) and call.sums, chunk c of `samples_per_chunk`
// samples into sums[c] (jet::first_backward_columns);
// finish_jet_activation_first_backward then forms the weight's gradient (m, d)
// from the sums.
JetCall prepare_jet_activation_first_backward(const at::Tensor& grad, const at::Tensor& preactivation,
                                              const at::Tensor& weight, c10::string_view function,
                                              c10::ArrayRef<double> params, const at::Tensor& pair_i,
                                              const at::Tensor& pair_j, bool collapsed);
void allocate_chunk_sums(JetCall& call, int64_t samples_per_chunk);
std::tuple<at::Tensor, at::Tensor> finish_jet_activation_first_backward(const JetCall& call);

}  // namespace hoderiv
