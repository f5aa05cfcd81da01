// Argument checks shared by the host preparation of every op. Each message
// starts with the op's name ("hoderiv_ext.jet_activation: ...") and names
// the argument and what was expected.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <initializer_list>

namespace hoderiv {
namespace checks {

// A named tensor argument of an op.
struct Arg {
  const at::Tensor& tensor;
  const char* name;
};

// `first` (the op's first tensor argument) is float32 or float64.
void check_floating(const char* op, const Arg& first);

// `arg` is on first's device and has first's dtype.
void check_like(const char* op, const Arg& arg, const Arg& first);

// An integer argument in [low, high], checked before any arithmetic on it.
void check_range(const char* op, const char* name, int64_t value, int64_t low, int64_t high);

// The product of non-negative sizes, refusing int64 overflow (`what` names it).
int64_t checked_product(const char* op, const char* what, std::initializer_list<int64_t> sizes);

// The sum of non-negative counts, refusing int64 overflow (`what` names it).
int64_t checked_sum(const char* op, const char* what, std::initializer_list<int64_t> terms);

}  // namespace checks
}  // namespace hoderiv
