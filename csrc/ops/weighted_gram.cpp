// weighted_gram's checks and its kernel for every device without a kernel of
// its own (CompositeExplicitAutograd: the scaled copy and a batched matrix
// product in ATen ops, e.g. on CUDA, where cuBLAS batches the small products);
// the CPU kernel is csrc/cpu/weighted_gram_cpu.cpp. Autograd and the fake
// kernel: hoderiv_ext/ops/formulas.py, fake.py.
#include "ops/weighted_gram.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include "ops/checks.h"
#include "ops/registration.h"

namespace hoderiv {
namespace weighted_gram {

namespace {
constexpr const char* kOp = "hoderiv_ext.weighted_gram";
}  // namespace

void check_arguments(const at::Tensor& left, const at::Tensor& weight, const at::Tensor& right) {
  checks::check_floating(kOp, {left, "left"});
  checks::check_like(kOp, {weight, "weight"}, {left, "left"});
  checks::check_like(kOp, {right, "right"}, {left, "left"});
  TORCH_CHECK(left.dim() == 3, kOp, ": left must be (N, k, m), got ", left.dim(), " dimensions");
  TORCH_CHECK(right.dim() == 3, kOp, ": right must be (N, d, m), got ", right.dim(), " dimensions");
  TORCH_CHECK(weight.dim() == 2, kOp, ": weight must be (N, m), got ", weight.dim(), " dimensions");
  TORCH_CHECK(weight.size(0) == left.size(0) && right.size(0) == left.size(0), kOp,
              ": left, weight and right must have one batch size N, got ", left.size(0), ", ", weight.size(0),
              " and ", right.size(0));
  TORCH_CHECK(weight.size(1) == left.size(2) && right.size(2) == left.size(2), kOp,
              ": left, weight and right must have one unit count m (their last dimension), got ", left.size(2),
              ", ", weight.size(1), " and ", right.size(2));
}

at::Tensor composite(const at::Tensor& left, const at::Tensor& weight, const at::Tensor& right) {
  check_arguments(left, weight, right);
  return at::matmul(left * weight.unsqueeze(1), right.transpose(1, 2));
}

}  // namespace weighted_gram

void register_weighted_gram(torch::Library& library) { library.impl("weighted_gram", &weighted_gram::composite); }

}  // namespace hoderiv
