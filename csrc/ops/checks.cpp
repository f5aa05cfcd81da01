#include "ops/checks.h"

#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

namespace hoderiv {
namespace checks {

void check_floating(const char* op, const Arg& first) {
  const at::ScalarType type = first.tensor.scalar_type();
  TORCH_CHECK(type == at::kFloat || type == at::kDouble, op, ": ", first.name,
              " must be a float32 or float64 tensor, got ", type);
}

void check_like(const char* op, const Arg& arg, const Arg& first) {
  TORCH_CHECK(arg.tensor.device() == first.tensor.device(), op, ": ", arg.name, " is on ", arg.tensor.device(),
              " but ", first.name, " is on ", first.tensor.device(), "; every tensor argument must be on ", first.name,
              "'s device");
  TORCH_CHECK(arg.tensor.scalar_type() == first.tensor.scalar_type(), op, ": ", arg.name, " must have ", first.name,
              "'s dtype ", first.tensor.scalar_type(), ", got ", arg.tensor.scalar_type());
}

void check_range(const char* op, const char* name, int64_t value, int64_t low, int64_t high) {
  TORCH_CHECK(value >= low && value <= high, op, ": ", name, " must be in [", low, ", ", high, "], got ", value);
}

int64_t checked_product(const char* op, const char* what, std::initializer_list<int64_t> sizes) {
  int64_t product = 1;
  for (int64_t size : sizes) {
    TORCH_CHECK(size >= 0, op, ": ", what, ": negative size ", size);
    TORCH_CHECK(!c10::mul_overflows(product, size, &product), op, ": ", what, " overflows int64");
  }
  return product;
}

int64_t checked_sum(const char* op, const char* what, std::initializer_list<int64_t> terms) {
  int64_t sum = 0;
  for (int64_t term : terms) {
    TORCH_CHECK(term >= 0, op, ": ", what, ": negative count ", term);
    TORCH_CHECK(!c10::add_overflows(sum, term, &sum), op, ": ", what, " overflows int64");
  }
  return sum;
}

void check_bias(const char* op, const c10::optional<at::Tensor>& bias, const Arg& first, int64_t m) {
  if (!bias.has_value()) return;
  check_like(op, {*bias, "bias"}, first);
  TORCH_CHECK(bias->dim() == 1 && bias->size(0) == m, op, ": bias must have shape (m,) = (", m, ",), got ",
              bias->sizes());
}

at::Tensor dense_rows(const at::Tensor& t) {
  const int64_t m = t.size(2);
  const bool units = m <= 1 || t.stride(2) == 1;
  const bool slots = t.size(1) <= 1 || t.stride(1) == m;
  return units && slots ? t : t.contiguous();
}

int64_t sample_stride(const at::Tensor& t) { return t.size(0) > 1 ? t.stride(0) : t.size(1) * t.size(2); }

}  // namespace checks
}  // namespace hoderiv
