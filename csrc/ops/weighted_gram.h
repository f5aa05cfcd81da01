// weighted_gram(left, weight, right) -> (N, k, d):
//   out[n, i, j] = sum_u left[n, i, u] * weight[n, u] * right[n, j, u]
// for left (N, k, m), weight (N, m), right (N, d, m): the per-sample products
// T_a diag(w) T_b^T of mixed mode's Hessian terms (engines/taylor/mixed.py,
// engines/taylor/traced/mixed.py). One pass over the operands instead of the
// scaled copy left * weight and a batched matrix product of small matrices
// per sample.
#pragma once

#include <ATen/core/Tensor.h>

namespace hoderiv {
namespace weighted_gram {

// The op's argument checks (named arguments, shapes, dtype, device).
void check_arguments(const at::Tensor& left, const at::Tensor& weight, const at::Tensor& right);

// The op in ATen ops: (left * weight[:, None]) @ right^T (checked).
at::Tensor composite(const at::Tensor& left, const at::Tensor& weight, const at::Tensor& right);

}  // namespace weighted_gram
}  // namespace hoderiv
