// Argument checks shared by the host preparation of every op. Each message
// starts with the op's name ("hoderiv_ext.jet_activation: ...") and names
// the argument and what was expected.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>

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

// An optional bias: on first's device with first's dtype, shape (m,).
void check_bias(const char* op, const c10::optional<at::Tensor>& bias, const Arg& first, int64_t m);

// A jet (N, S, m) as is when its slots and units are dense (slot stride m,
// unit stride 1), else a contiguous copy: the kernels index slot s, unit j of
// sample i at i * sample_stride(t) + s * m + j. Strides of size-1 dimensions
// do not matter.
at::Tensor dense_rows(const at::Tensor& t);

// The distance between two samples of a dense_rows jet (any value for N <= 1).
int64_t sample_stride(const at::Tensor& t);

}  // namespace checks
}  // namespace hoderiv
