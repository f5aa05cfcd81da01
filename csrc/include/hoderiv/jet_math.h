// The activation step of a second-order jet, forward and backward, for one
// column (one sample n, one unit j): shared by the CPU and CUDA kernels.
//
// A jet carries, per sample and unit, S = 1 + t + p + c slots laid out with
// a stride of m elements (the layer width) between slots:
//   slot 0                 value v
//   slots 1..t             tangents T_k = dv/dx_k
//   slots 1+t..t+p         pair slots Q_s = d2v/dx_{i_s}dx_{j_s}, s < p
//   slot 1+t+p (if c = 1)  the collapsed slot Q_c = sum_{k in C} d2v/dx_k^2
// with the pairs (i_s, j_s) and the collapsed list C (distinct tangent
// indices; c = 1 when it is non-empty) given by the SlotLayout.
//
// With a = v + bias and phi^(k) = phi^(k)(a) (from derivative_math.h):
// forward
//   v' = phi(a);  T'_k = phi' T_k
//   Q'_s = phi' Q_s + phi'' T_{i_s} T_{j_s}
//   Q'_c = phi' Q_c + phi'' sum_{k in C} T_k^2
// backward (given gv', gT', gQ')
//   gQ_s = phi' gQ'_s;  gQ_c = phi' gQ'_c
//   gT_k = phi' gT'_k + phi'' sum_s gQ'_s (delta_{i_s k} T_{j_s} + delta_{j_s k} T_{i_s})
//          + [k in C] 2 phi'' gQ'_c T_k
//   ga   = phi' gv' + phi'' sum_k gT'_k T_k + phi'' (sum_s gQ'_s Q_s + gQ'_c Q_c)
//          + phi''' (sum_s gQ'_s T_{i_s} T_{j_s} + gQ'_c sum_{k in C} T_k^2)
// (slot 0 of the backward's result holds ga.)
// The first layer's tangents are the same for every sample (T_k = W[j, k],
// Q = 0), so its forward reads them from the weight instead (forward_columns
// with second == nullptr); its backward is first_backward_columns plus
// first_weight_grad_entry.
//
// Each row function handles `width` adjacent columns (units j .. j+width-1 of
// one sample) with the loops over columns innermost: the CPU kernels pass a
// whole row (contiguous, vectorisable), each CUDA thread passes width 1.
#pragma once

#include <cstdint>

#include "hoderiv/derivative_math.h"

namespace hoderiv {
namespace jet {

// Index type of the pair and collapsed lists (tangent indices).
using Index = int32_t;

// The slot layout: t tangents, p pairs (pair_i[s], pair_j[s]) and the
// collapsed list (num_collapsed distinct indices; no collapsed slot when 0).
// Every index is in [0, t): the host checks them before any kernel runs.
struct SlotLayout {
  int64_t num_tangents = 0;   // t
  int64_t num_pairs = 0;      // p
  int64_t num_collapsed = 0;  // |C|
  const Index* pair_i = nullptr;
  const Index* pair_j = nullptr;
  const Index* collapsed = nullptr;

  HODERIV_HD bool has_collapsed() const { return num_collapsed > 0; }
  // Second-order slots: p + c.
  HODERIV_HD int64_t num_second() const { return num_pairs + (num_collapsed > 0 ? 1 : 0); }
  // Slot index of the first pair slot and of the collapsed slot.
  HODERIV_HD int64_t pair_slot() const { return 1 + num_tangents; }
  HODERIV_HD int64_t collapsed_slot() const { return 1 + num_tangents + num_pairs; }
  HODERIV_HD int64_t slots() const { return 1 + num_tangents + num_second(); }
};

// The index lists as one fixed-capacity value: the CUDA kernels take it by
// value as a `const __grid_constant__` parameter, so the lists travel in the
// launch itself (no host-to-device copy; capturable in CUDA graphs) and
// layout() points into the parameter without a local copy. A list longer than
// its capacity is not stored inline: the caller sets its `*_external`
// pointer to a device copy instead (see csrc/cuda/jet_cuda.cu).
// sizeof(IndexTable) = 4144 bytes on 64-bit targets: with the kernels' other
// arguments within the 32 KB kernel-parameter limit of CUDA >= 12.1 on Volta
// and newer (every GPU CUDA 13 supports), and well under 8 KB.
struct IndexTable {
  static constexpr int64_t kPairCapacity = 384;       // a full Hessian's pairs up to t = 27
  static constexpr int64_t kCollapsedCapacity = 256;  // collapsed lists up to 256 tangents
  int64_t num_tangents = 0;
  int64_t num_pairs = 0;
  int64_t num_collapsed = 0;
  const Index* pair_i_external = nullptr;  // non-null: the pairs live there, not inline
  const Index* pair_j_external = nullptr;
  const Index* collapsed_external = nullptr;
  Index pair_i[kPairCapacity] = {};
  Index pair_j[kPairCapacity] = {};
  Index collapsed[kCollapsedCapacity] = {};

  static constexpr bool pairs_fit(int64_t num_pairs) { return num_pairs <= kPairCapacity; }
  static constexpr bool collapsed_fits(int64_t num_collapsed) { return num_collapsed <= kCollapsedCapacity; }

  HODERIV_HD SlotLayout layout() const {
    SlotLayout result;
    result.num_tangents = num_tangents;
    result.num_pairs = num_pairs;
    result.num_collapsed = num_collapsed;
    result.pair_i = pair_i_external != nullptr ? pair_i_external : pair_i;
    result.pair_j = pair_j_external != nullptr ? pair_j_external : pair_j;
    result.collapsed = collapsed_external != nullptr ? collapsed_external : collapsed;
    return result;
  }
};

static_assert(sizeof(IndexTable) <= 4200, "IndexTable is a kernel argument: keep it near 4 KB");

// The table of a host layout: the counts, and the lists that fit their
// capacity copied inline. The caller must set the external pointer of every
// list that does not fit (pairs_fit / collapsed_fits false) before use.
inline IndexTable index_table_of(const SlotLayout& host) {
  IndexTable table;
  table.num_tangents = host.num_tangents;
  table.num_pairs = host.num_pairs;
  table.num_collapsed = host.num_collapsed;
  if (IndexTable::pairs_fit(host.num_pairs)) {
    for (int64_t s = 0; s < host.num_pairs; ++s) {
      table.pair_i[s] = host.pair_i[s];
      table.pair_j[s] = host.pair_j[s];
    }
  }
  if (IndexTable::collapsed_fits(host.num_collapsed)) {
    for (int64_t q = 0; q < host.num_collapsed; ++q) table.collapsed[q] = host.collapsed[q];
  }
  return table;
}

// phi^(k)(a) for `width` adjacent columns: phi[k * width + c], k = 0..K.
// The bias test sits outside the loops and the pointers are restrict, so on
// the host each loop is straight-line code over c that the compiler
// vectorises without runtime checks.
template <typename T, int K>
HODERIV_HD void activation_derivatives(const T* __restrict__ a, const T* __restrict__ bias, int64_t width,
                                       math::Function function, const math::FunctionParams& params,
                                       T* __restrict__ phi) {
  if (bias != nullptr) {
    for (int64_t c = 0; c < width; ++c) {
      T d[K + 1];
      math::derivatives<T, K>(function, params, a[c] + bias[c], d);
      HODERIV_UNROLL
      for (int k = 0; k <= K; ++k) phi[k * width + c] = d[k];
    }
    return;
  }
  for (int64_t c = 0; c < width; ++c) {
    T d[K + 1];
    math::derivatives<T, K>(function, params, a[c], d);
    HODERIV_UNROLL
    for (int k = 0; k <= K; ++k) phi[k * width + c] = d[k];
  }
}

// Forward step for `width` adjacent columns, given phi[k * width + c],
// k = 0..2. The input's tangent T_k of column c is tangents[k * tangent_stride + c]
// and its second-order slot s (pairs, then the collapsed slot) is
// second[s * stride + c]; second == nullptr means Q = 0 (the first layer,
// whose tangents are the weight's transpose, tangent_stride = m). The output
// jet has slot stride `stride`. Inner loops run over c, contiguous in memory.
template <typename T>
HODERIV_HD void forward_columns(const T* __restrict__ tangents, int64_t tangent_stride, const T* __restrict__ second,
                                T* __restrict__ out, int64_t stride, int64_t width, const T* __restrict__ phi,
                                const SlotLayout& layout) {
  const int64_t t = layout.num_tangents, p = layout.num_pairs;
  const T* phi0 = phi;
  const T* phi1 = phi + width;
  const T* phi2 = phi + 2 * width;
  T* out_tangents = out + stride;
  T* out_pairs = out + layout.pair_slot() * stride;
  for (int64_t c = 0; c < width; ++c) out[c] = phi0[c];
  for (int64_t k = 0; k < t; ++k) {
    for (int64_t c = 0; c < width; ++c) {
      out_tangents[k * stride + c] = phi1[c] * tangents[k * tangent_stride + c];
    }
  }
  for (int64_t s = 0; s < p; ++s) {
    const T* ti = tangents + layout.pair_i[s] * tangent_stride;
    const T* tj = tangents + layout.pair_j[s] * tangent_stride;
    if (second != nullptr) {
      for (int64_t c = 0; c < width; ++c) {
        out_pairs[s * stride + c] = phi1[c] * second[s * stride + c] + phi2[c] * ti[c] * tj[c];
      }
    } else {
      for (int64_t c = 0; c < width; ++c) out_pairs[s * stride + c] = phi2[c] * ti[c] * tj[c];
    }
  }
  if (!layout.has_collapsed()) return;
  T* out_collapsed = out + layout.collapsed_slot() * stride;
  if (second != nullptr) {
    const T* in_collapsed = second + p * stride;
    for (int64_t c = 0; c < width; ++c) out_collapsed[c] = phi1[c] * in_collapsed[c];
  } else {
    for (int64_t c = 0; c < width; ++c) out_collapsed[c] = T(0);
  }
  // Two list entries per pass, added in list order. Written out because gcc's
  // own unroll-and-jam of the one-entry loop leaves the jammed loop scalar
  // (the rows' forward ran 30% slower).
  int64_t q = 0;
  for (; q + 2 <= layout.num_collapsed; q += 2) {
    const T* ta = tangents + layout.collapsed[q] * tangent_stride;
    const T* tb = tangents + layout.collapsed[q + 1] * tangent_stride;
    for (int64_t c = 0; c < width; ++c) {
      out_collapsed[c] = (out_collapsed[c] + phi2[c] * ta[c] * ta[c]) + phi2[c] * tb[c] * tb[c];
    }
  }
  if (q < layout.num_collapsed) {
    const T* tk = tangents + layout.collapsed[q] * tangent_stride;
    for (int64_t c = 0; c < width; ++c) out_collapsed[c] += phi2[c] * tk[c] * tk[c];
  }
}

// Gradient with respect to the input jet for `width` adjacent columns, given
// phi[k * width + c], k = 0..3. Slot 0 of grad_in is the gradient with
// respect to a (the bias gradient's summand).
template <typename T>
HODERIV_HD void backward_columns(const T* __restrict__ grad_out, const T* __restrict__ in, T* __restrict__ grad_in,
                                 int64_t stride, int64_t width, const T* __restrict__ phi, const SlotLayout& layout) {
  const int64_t t = layout.num_tangents, p = layout.num_pairs;
  const T* phi1 = phi + width;
  const T* phi2 = phi + 2 * width;
  const T* phi3 = phi + 3 * width;
  const T* tangents = in + stride;
  const T* pairs = in + layout.pair_slot() * stride;
  const T* g_tangents = grad_out + stride;
  const T* g_pairs = grad_out + layout.pair_slot() * stride;
  T* gi_tangents = grad_in + stride;
  T* gi_pairs = grad_in + layout.pair_slot() * stride;

  // ga = phi' gv' + phi'' sum_k gT'_k T_k + ..., accumulated in slot 0.
  for (int64_t c = 0; c < width; ++c) grad_in[c] = phi1[c] * grad_out[c];
  for (int64_t k = 0; k < t; ++k) {
    for (int64_t c = 0; c < width; ++c) {
      const T gt = g_tangents[k * stride + c];
      grad_in[c] += phi2[c] * gt * tangents[k * stride + c];
      gi_tangents[k * stride + c] = phi1[c] * gt;
    }
  }
  for (int64_t s = 0; s < p; ++s) {
    const int64_t i = layout.pair_i[s];
    const int64_t j = layout.pair_j[s];
    const T* ti = tangents + i * stride;
    const T* tj = tangents + j * stride;
    T* gti = gi_tangents + i * stride;
    T* gtj = gi_tangents + j * stride;  // gti when i == j: both terms land on T_i
    for (int64_t c = 0; c < width; ++c) {
      const T gq = g_pairs[s * stride + c];
      gi_pairs[s * stride + c] = phi1[c] * gq;
      grad_in[c] += phi2[c] * gq * pairs[s * stride + c] + phi3[c] * gq * ti[c] * tj[c];
      const T scaled = phi2[c] * gq;
      const T ti_c = ti[c];
      gti[c] += scaled * tj[c];
      gtj[c] += scaled * ti_c;
    }
  }
  if (!layout.has_collapsed()) return;
  const T* in_collapsed = in + layout.collapsed_slot() * stride;
  const T* g_collapsed = grad_out + layout.collapsed_slot() * stride;
  T* gi_collapsed = grad_in + layout.collapsed_slot() * stride;
  for (int64_t c = 0; c < width; ++c) {
    gi_collapsed[c] = phi1[c] * g_collapsed[c];
    grad_in[c] += phi2[c] * g_collapsed[c] * in_collapsed[c];
  }
  for (int64_t q = 0; q < layout.num_collapsed; ++q) {
    const int64_t k = layout.collapsed[q];
    const T* tk = tangents + k * stride;
    T* gtk = gi_tangents + k * stride;
    for (int64_t c = 0; c < width; ++c) {
      const T gq = g_collapsed[c];
      gtk[c] += T(2) * phi2[c] * gq * tk[c];
      grad_in[c] += phi3[c] * gq * tk[c] * tk[c];
    }
  }
}

// sum_{k in C} W[j, k]^2 for `width` adjacent units j: the first layer's
// collapsed-slot product (weight_t is the weight's transpose, row stride
// `stride`). Called once per batch of samples, not per sample.
template <typename T>
HODERIV_HD void collapsed_square_sum(const T* __restrict__ weight_t, int64_t stride, int64_t width,
                                     const SlotLayout& layout, T* __restrict__ out) {
  for (int64_t c = 0; c < width; ++c) out[c] = T(0);
  for (int64_t q = 0; q < layout.num_collapsed; ++q) {
    const T* wk = weight_t + layout.collapsed[q] * stride;
    for (int64_t c = 0; c < width; ++c) out[c] += wk[c] * wk[c];
  }
}

// Rows of the first layer's per-chunk partial sums (see first_backward_columns):
// t + p + c.
HODERIV_HD int64_t first_sum_rows(const SlotLayout& layout) { return layout.num_tangents + layout.num_second(); }

// First layer's backward for `width` adjacent columns of one sample, given
// phi[k * width + c], k = 0..3 (at the preactivation). With W the weight
// (m, t) and weight_t its transpose (t, m), the gradient with respect to the
// preactivation is
//   ga = phi' g0 + phi'' sum_k gT_k W[:, k]
//        + phi''' (sum_s gQ_s W[:, i_s] W[:, j_s] + gQ_c sum_{k in C} W[:, k]^2)
// (the last sum is `collapsed_square`, from collapsed_square_sum; unused
// without a collapsed slot) and the weight's gradient needs sums over the
// samples, accumulated here into `sums` (first_sum_rows rows of `stride`):
//   sums[k]     += phi' gT_k      (k < t)
//   sums[t + s] += phi'' gQ_s     (s < p)
//   sums[t + p] += phi'' gQ_c     (with a collapsed slot)
// from which first_weight_grad_entry forms gW. grad is the sample's
// output-jet gradient (slot stride `stride`); weight_t and sums have row
// stride `stride` too.
template <typename T>
HODERIV_HD void first_backward_columns(const T* __restrict__ grad, const T* __restrict__ weight_t,
                                       const T* __restrict__ collapsed_square, T* __restrict__ grad_a,
                                       T* __restrict__ sums, int64_t stride, int64_t width, const T* __restrict__ phi,
                                       const SlotLayout& layout) {
  const int64_t t = layout.num_tangents, p = layout.num_pairs;
  const T* phi1 = phi + width;
  const T* phi2 = phi + 2 * width;
  const T* phi3 = phi + 3 * width;
  for (int64_t c = 0; c < width; ++c) grad_a[c] = phi1[c] * grad[c];
  for (int64_t k = 0; k < t; ++k) {
    for (int64_t c = 0; c < width; ++c) {
      const T gt = grad[(1 + k) * stride + c];
      grad_a[c] += phi2[c] * gt * weight_t[k * stride + c];
      sums[k * stride + c] += phi1[c] * gt;
    }
  }
  for (int64_t s = 0; s < p; ++s) {
    const T* wi = weight_t + layout.pair_i[s] * stride;
    const T* wj = weight_t + layout.pair_j[s] * stride;
    const T* gq = grad + (layout.pair_slot() + s) * stride;
    T* sum = sums + (t + s) * stride;
    // Two loops, not one: gcc's unroll-and-jam of the fused loop over the
    // pairs leaves it scalar (the rows ran 1.7x slower).
    for (int64_t c = 0; c < width; ++c) grad_a[c] += phi3[c] * gq[c] * wi[c] * wj[c];
    for (int64_t c = 0; c < width; ++c) sum[c] += phi2[c] * gq[c];
  }
  if (!layout.has_collapsed()) return;
  const T* gq = grad + layout.collapsed_slot() * stride;
  T* sum = sums + (t + p) * stride;
  for (int64_t c = 0; c < width; ++c) {
    grad_a[c] += phi3[c] * gq[c] * collapsed_square[c];
    sum[c] += phi2[c] * gq[c];
  }
}

// The partial sums of `chunks` chunks added up for `width` adjacent units of
// one row, in chunk order: out[c] = sum_q sums[q * chunk_stride + c]. The CPU
// adds all its chunks this way (width m) before first_weight_grad_entry; a
// CUDA thread adds one fixed group of chunks for one unit (width 1).
template <typename T>
HODERIV_HD void sum_chunks_columns(const T* __restrict__ sums, int64_t chunks, int64_t chunk_stride, int64_t width,
                                   T* __restrict__ out) {
  for (int64_t c = 0; c < width; ++c) out[c] = T(0);
  for (int64_t q = 0; q < chunks; ++q) {
    for (int64_t c = 0; c < width; ++c) out[c] += sums[q * chunk_stride + c];
  }
}

// The first layer's weight gradient gW[unit, k] from the partial sums of
// `chunks` chunks (chunk q's first_sum_rows x m sums at sums + q * chunk_stride):
//   H_r   = sum over chunks, in chunk order, of row r at `unit`
//   gW[unit, k] = H_k + sum_s H_{t+s} (delta_{i_s k} W[unit, j_s] + delta_{j_s k} W[unit, i_s])
//                 + [k in C] 2 H_{t+p} W[unit, k]
// Every entry is the work of one CPU loop step or one CUDA thread and adds
// its terms in a fixed order (chunks, then pairs in list order), so the
// result does not depend on the number of threads and needs no atomics.
// weight_t is the weight's transpose (t, m).
template <typename T>
HODERIV_HD T first_weight_grad_entry(const T* __restrict__ sums, int64_t chunks, int64_t chunk_stride,
                                     const T* __restrict__ weight_t, int64_t m, int64_t k, int64_t unit,
                                     const SlotLayout& layout) {
  const int64_t t = layout.num_tangents, p = layout.num_pairs;
  const auto chunk_total = [&](int64_t row) {
    T total = T(0);
    for (int64_t q = 0; q < chunks; ++q) total += sums[q * chunk_stride + row * m + unit];
    return total;
  };
  T g = chunk_total(k);
  for (int64_t s = 0; s < p; ++s) {
    const int64_t i = layout.pair_i[s], j = layout.pair_j[s];
    if (i != k && j != k) continue;
    const T h = chunk_total(t + s);
    if (i == k) g += h * weight_t[j * m + unit];
    if (j == k) g += h * weight_t[i * m + unit];
  }
  for (int64_t q = 0; q < layout.num_collapsed; ++q) {
    if (layout.collapsed[q] != k) continue;
    g += T(2) * chunk_total(t + p) * weight_t[k * m + unit];
    break;  // the list's entries are distinct
  }
  return g;
}

// out[s * stride + c] += residual[s * stride + c] for the `slots` slots of
// `width` adjacent columns: jet_activation's residual (a skip connection
// h + phi(W h + b)), added while the step's output is still in cache. Its
// gradient is the identity: the backward step needs nothing of it.
template <typename T>
HODERIV_HD void add_residual_columns(const T* __restrict__ residual, T* __restrict__ out, int64_t slots,
                                     int64_t stride, int64_t width) {
  for (int64_t s = 0; s < slots; ++s) {
    for (int64_t c = 0; c < width; ++c) out[s * stride + c] += residual[s * stride + c];
  }
}

// ----- One column of an (N, S, m) jet: a CUDA thread's whole work -----
// Column c = sample * m + unit. Each function is the body of one CUDA kernel
// (csrc/cuda/jet_cuda.cu); the host test (csrc/tests/test_jet_math.cpp) runs
// it over every column and compares it with written-out formulas, as it does
// the row functions above, which the CPU kernels call, so the CUDA kernels'
// index arithmetic is tested without a GPU.

// Forward step of column c of the jet `in` (N, S, m) into `out` (N, S, m);
// with a `residual` jet (N, S, m), out = step + residual.
template <typename T>
HODERIV_HD void forward_column(const T* __restrict__ in, const T* __restrict__ bias, T* __restrict__ out, int64_t c,
                               int64_t slots, int64_t m, const SlotLayout& layout, math::Function function,
                               const math::FunctionParams& params, const T* __restrict__ residual = nullptr) {
  const int64_t sample = c / m, unit = c - sample * m;
  const int64_t offset = sample * slots * m + unit;
  T phi[3];
  activation_derivatives<T, 2>(in + offset, bias != nullptr ? bias + unit : nullptr, 1, function, params, phi);
  const T* column = in + offset;
  forward_columns<T>(column + m, m, column + layout.pair_slot() * m, out + offset, m, 1, phi, layout);
  if (residual != nullptr) add_residual_columns<T>(residual + offset, out + offset, slots, m, 1);
}

// Backward step of column c: grad_out, in and grad_in are (N, S, m) jets.
template <typename T>
HODERIV_HD void backward_column(const T* __restrict__ grad_out, const T* __restrict__ in, const T* __restrict__ bias,
                                T* __restrict__ grad_in, int64_t c, int64_t slots, int64_t m,
                                const SlotLayout& layout, math::Function function,
                                const math::FunctionParams& params) {
  const int64_t sample = c / m, unit = c - sample * m;
  const int64_t offset = sample * slots * m + unit;
  T phi[4];
  activation_derivatives<T, 3>(in + offset, bias != nullptr ? bias + unit : nullptr, 1, function, params, phi);
  backward_columns<T>(grad_out + offset, in + offset, grad_in + offset, m, 1, phi, layout);
}

// First layer's forward step of column c: `pre` is the preactivation (N, m),
// weight_t the weight's transpose (t, m), `out` the jet (N, S, m).
template <typename T>
HODERIV_HD void first_forward_column(const T* __restrict__ pre, const T* __restrict__ weight_t, T* __restrict__ out,
                                     int64_t c, int64_t slots, int64_t m, const SlotLayout& layout,
                                     math::Function function, const math::FunctionParams& params) {
  const int64_t sample = c / m, unit = c - sample * m;
  T phi[3];
  activation_derivatives<T, 2>(pre + c, nullptr, 1, function, params, phi);
  forward_columns<T>(weight_t + unit, m, nullptr, out + sample * slots * m + unit, m, 1, phi, layout);
}

// First layer's backward over the samples [begin, end) of one unit: the work
// of a CUDA thread, the only writer of its column of `sums` (this chunk's
// first_sum_rows x m partial sums), which it zeroes first. grad (N, S, m),
// pre (N, m), weight_t (t, m), grad_a (N, m).
template <typename T>
HODERIV_HD void first_backward_unit(const T* __restrict__ grad, const T* __restrict__ pre,
                                    const T* __restrict__ weight_t, T* __restrict__ grad_a, T* __restrict__ sums,
                                    int64_t unit, int64_t begin, int64_t end, int64_t slots, int64_t m,
                                    const SlotLayout& layout, math::Function function,
                                    const math::FunctionParams& params) {
  for (int64_t row = 0; row < first_sum_rows(layout); ++row) sums[row * m + unit] = T(0);
  T collapsed_square;
  collapsed_square_sum<T>(weight_t + unit, m, 1, layout, &collapsed_square);
  for (int64_t sample = begin; sample < end; ++sample) {
    T phi[4];
    activation_derivatives<T, 3>(pre + sample * m + unit, nullptr, 1, function, params, phi);
    first_backward_columns<T>(grad + sample * slots * m + unit, weight_t + unit, &collapsed_square,
                              grad_a + sample * m + unit, sums + unit, m, 1, phi, layout);
  }
}

}  // namespace jet
}  // namespace hoderiv
