// CPU kernel of weighted_gram (csrc/ops/weighted_gram.h): per sample, the
// rows of left scaled by the weights once into a buffer, then every (i, j)
// entry as a dot product over the units with one vector of independent
// partial sums (each lane adds in order: no reassociation), summed at the
// end; when left and right are one tensor (T diag(w) T^T) only the entries on
// and above the diagonal, mirrored. Rows of few units (m < 4d, or 8d for two
// tensors) go to the batched matrix product instead, which measured faster
// there. Samples in parallel; int64 indexing; any strides but a unit stride on
// the last dimension (otherwise a contiguous copy).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/simd.h"
#include "ops/registration.h"
#include "ops/weighted_gram.h"

namespace hoderiv {
namespace {

// The partial sums of a dot product: one vector of kVectorBytes (GCC/clang vector extensions, so the
// accumulator stays in a register; the x86-64-v3/v4 clones run it as one AVX instruction per step).
constexpr size_t kVectorBytes = 32;

template <typename scalar_t>
inline scalar_t dot(const scalar_t* __restrict__ s, const scalar_t* __restrict__ b, int64_t m) {
  typedef scalar_t Vector __attribute__((vector_size(kVectorBytes)));
  constexpr int64_t kLanes = kVectorBytes / sizeof(scalar_t);
  Vector lanes = {};
  int64_t u = 0;
  for (; u + kLanes <= m; u += kLanes) {
    Vector x, y;
    std::memcpy(&x, s + u, sizeof(Vector));
    std::memcpy(&y, b + u, sizeof(Vector));
    lanes += x * y;
  }
  scalar_t total = scalar_t(0);
  for (int64_t l = 0; l < kLanes; ++l) total += lanes[l];
  for (; u < m; ++u) total += s[u] * b[u];
  return total;
}

at::Tensor unit_stride_last(const at::Tensor& t) { return t.size(-1) <= 1 || t.stride(-1) == 1 ? t : t.contiguous(); }

template <typename scalar_t>
HODERIV_CPU_CLONES void gram_samples(const scalar_t* left, const scalar_t* weight, const scalar_t* right,
                                     scalar_t* out, int64_t begin, int64_t end, int64_t k, int64_t d, int64_t m,
                                     const int64_t (&left_strides)[2], int64_t weight_stride,
                                     const int64_t (&right_strides)[2], bool symmetric) {
  std::vector<scalar_t> scaled(static_cast<size_t>(k * m));
  for (int64_t n = begin; n < end; ++n) {
    const scalar_t* w = weight + n * weight_stride;
    for (int64_t i = 0; i < k; ++i) {
      const scalar_t* a = left + n * left_strides[0] + i * left_strides[1];
      scalar_t* s = scaled.data() + i * m;
      for (int64_t u = 0; u < m; ++u) s[u] = a[u] * w[u];
    }
    scalar_t* result = out + n * k * d;
    for (int64_t j = 0; j < d; ++j) {
      const scalar_t* b = right + n * right_strides[0] + j * right_strides[1];
      // left is right (T diag(w) T^T): the entries below the diagonal are mirrored from above it.
      for (int64_t i = 0; i < (symmetric ? j + 1 : k); ++i) {
        const scalar_t* s = scaled.data() + i * m;
        const scalar_t total = dot(s, b, m);
        result[i * d + j] = total;
        if (symmetric) result[j * d + i] = total;
      }
    }
  }
}

at::Tensor weighted_gram_cpu(const at::Tensor& left_in, const at::Tensor& weight_in, const at::Tensor& right_in) {
  weighted_gram::check_arguments(left_in, weight_in, right_in);
  const int64_t n = left_in.size(0), k = left_in.size(1), d = right_in.size(1), m = left_in.size(2);
  // left is right (T diag(w) T^T: the same memory read the same way, whichever view of it), so only the
  // entries on and above the diagonal are computed.
  const bool symmetric = left_in.data_ptr() == right_in.data_ptr() && left_in.sizes() == right_in.sizes() &&
                         left_in.strides() == right_in.strides();
  // Where the batched matrix product measured faster (1 thread, N = 4096, float32, d = 2..16, m = 32..128):
  // few units per row. The one pass measured 1.9-4.8x faster with m >= 4d (symmetric) and 1.2-2.9x with
  // m >= 8d (general), 0.45-0.9x below.
  if (m < (symmetric ? 4 : 8) * d) return weighted_gram::composite(left_in, weight_in, right_in);
  const at::Tensor left = unit_stride_last(left_in), weight = unit_stride_last(weight_in),
                   right = symmetric ? left : unit_stride_last(right_in);
  at::Tensor out = at::empty({n, k, d}, left.options());
  if (out.numel() == 0) return out;
  const int64_t left_strides[2] = {left.stride(0), left.stride(1)};
  const int64_t right_strides[2] = {right.stride(0), right.stride(1)};
  const int64_t weight_stride = weight.stride(0);
  // About 32k multiply-adds per task, at least one sample.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, k * d * m));
  AT_DISPATCH_FLOATING_TYPES(left.scalar_type(), "weighted_gram_cpu", [&] {
    const scalar_t* a = left.const_data_ptr<scalar_t>();
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    const scalar_t* b = right.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
      gram_samples<scalar_t>(a, w, b, o, begin, end, k, d, m, left_strides, weight_stride, right_strides,
                              symmetric);
    });
  });
  return out;
}

}  // namespace

void register_weighted_gram_cpu(torch::Library& library) { library.impl("weighted_gram", &weighted_gram_cpu); }

}  // namespace hoderiv
