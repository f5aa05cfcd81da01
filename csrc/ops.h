// Host-side declarations shared by the op schemas (ops.cpp) and the CPU and
// CUDA implementations: argument checking and function-name parsing live in
// one place so every device reports bad input with the same message.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <string>
#include <string_view>
#include <vector>

#include "hoderiv/derivative_math.h"

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

// Checks shared by every elementwise op: `x` floating (float32/float64),
// `order` in [0, kMaxOrder].
void check_elementwise_input(const at::Tensor& x, int64_t order, const char* order_name);

// Checks the `grad` argument of a backward op: shape (m + 1, *x.shape), same
// dtype and device as x, and m + shift <= kMaxOrder. Returns m.
int64_t check_backward_grad(const at::Tensor& grad, const at::Tensor& x, int64_t shift);

// Checks polynomial coefficients: 1-D, non-empty, same dtype/device as x.
void check_coefficients(const at::Tensor& coefficients, const at::Tensor& x);

// Output shape (order + 1, *x.shape).
std::vector<int64_t> stacked_shape(const at::Tensor& x, int64_t order);

// Checks a jet (N, S, m) against its slot layout: S = 1 + d + s (s pairs) or
// 2 + d (collapsed); pair_i, pair_j int64 1-D of length s on the jet's device.
// Returns s. Pair values are checked on CPU tensors (device tensors are
// built by hoderiv_ext.taylor, which checks them when it builds them).
int64_t check_jet_layout(const at::Tensor& jet, const char* jet_name, const at::Tensor& pair_i,
                         const at::Tensor& pair_j, int64_t num_inputs, bool collapsed);

// Checks an optional bias: 1-D of length m, the jet's dtype and device.
void check_bias(const c10::optional<at::Tensor>& bias, const at::Tensor& jet);

// Checks a jet backward's incoming gradient: the jet's shape, dtype and device.
void check_jet_grad(const at::Tensor& grad, const at::Tensor& jet);

// Checks the first-layer step's arguments: preactivation (N, m), weight (m, d),
// same dtype and device. Returns the output jet's shape (N, 1 + d + s, m).
std::vector<int64_t> check_first_layer(const at::Tensor& preactivation, const at::Tensor& weight,
                                       const at::Tensor& pair_i, bool collapsed);

}  // namespace hoderiv
