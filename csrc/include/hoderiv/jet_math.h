// The activation step of a second-order jet, forward and backward, for one
// column (one sample n, one unit j): shared by the CPU and CUDA kernels.
//
// A jet carries, per sample and unit, S = 1 + d + s slots laid out with a
// stride of m elements (the layer width) between slots:
//   slot 0           value v
//   slots 1..d       tangents T_i = dv/dx_i
//   slots 1+d..S-1   second-order slots Q_s = d2v/dx_{i_s}dx_{j_s}, or one
//                    collapsed slot Q = sum_i d2v/dx_i^2 (the Laplacian)
//
// With a = v + bias and phi^(k) = phi^(k)(a) (from derivative_math.h):
// forward
//   v' = phi(a);  T'_i = phi' T_i
//   Q'_s = phi' Q_s + phi'' T_{i_s} T_{j_s}       collapsed: phi' Q + phi'' sum_i T_i^2
// backward (given gv', gT', gQ')
//   gQ_s = phi' gQ'_s
//   gT_k = phi' gT'_k + phi'' sum_s gQ'_s (delta_{i_s k} T_{j_s} + delta_{j_s k} T_{i_s})
//                                                   collapsed: + 2 phi'' gQ' T_k
//   ga   = phi' gv' + phi'' sum_i gT'_i T_i + phi'' sum_s gQ'_s Q_s
//          + phi''' sum_s gQ'_s T_{i_s} T_{j_s}     collapsed: phi''' gQ' sum_i T_i^2
// The first layer's tangents are the same for every sample (T_i = W[j, i],
// Q = 0), so its forward reads them from the weight instead (forward_columns
// with second == nullptr).
//
// Each function handles `width` adjacent columns (units j .. j+width-1 of one
// sample) with the loops over columns innermost: the CPU kernels pass a whole
// row (contiguous, vectorisable), each CUDA thread passes width 1.
#pragma once

#include <cstdint>

#include "hoderiv/derivative_math.h"

namespace hoderiv {
namespace jet {

// Second-order slot layout: `num_second` pairs (pair_i[s], pair_j[s]), or one
// collapsed Laplacian slot when `collapsed` is true (pairs unused).
struct SlotLayout {
  int64_t num_inputs;   // d
  int64_t num_second;   // s (1 when collapsed)
  bool collapsed;
  const int64_t* pair_i;
  const int64_t* pair_j;
};

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
// k = 0..2. The input's tangent T_i of column c is tangents[i * tangent_stride + c]
// and its second-order slot s is second[s * stride + c]; second == nullptr
// means Q = 0 (the first layer, whose tangents are the weight's transpose,
// tangent_stride = m). The output jet has slot stride `stride`. Inner loops
// run over c, contiguous in memory.
template <typename T>
HODERIV_HD void forward_columns(const T* __restrict__ tangents, int64_t tangent_stride, const T* __restrict__ second,
                                T* __restrict__ out, int64_t stride, int64_t width, const T* __restrict__ phi,
                                const SlotLayout& layout) {
  const int64_t d = layout.num_inputs;
  const T* phi0 = phi;
  const T* phi1 = phi + width;
  const T* phi2 = phi + 2 * width;
  T* out_tangents = out + stride;
  T* out_second = out + (1 + d) * stride;
  for (int64_t c = 0; c < width; ++c) out[c] = phi0[c];
  for (int64_t i = 0; i < d; ++i) {
    for (int64_t c = 0; c < width; ++c) {
      out_tangents[i * stride + c] = phi1[c] * tangents[i * tangent_stride + c];
    }
  }
  if (layout.collapsed) {
    if (second != nullptr) {
      for (int64_t c = 0; c < width; ++c) out_second[c] = phi1[c] * second[c];
    } else {
      for (int64_t c = 0; c < width; ++c) out_second[c] = T(0);
    }
    for (int64_t i = 0; i < d; ++i) {
      for (int64_t c = 0; c < width; ++c) {
        const T t = tangents[i * tangent_stride + c];
        out_second[c] += phi2[c] * t * t;
      }
    }
    return;
  }
  for (int64_t s = 0; s < layout.num_second; ++s) {
    const T* ti = tangents + layout.pair_i[s] * tangent_stride;
    const T* tj = tangents + layout.pair_j[s] * tangent_stride;
    if (second != nullptr) {
      for (int64_t c = 0; c < width; ++c) {
        out_second[s * stride + c] = phi1[c] * second[s * stride + c] + phi2[c] * ti[c] * tj[c];
      }
    } else {
      for (int64_t c = 0; c < width; ++c) out_second[s * stride + c] = phi2[c] * ti[c] * tj[c];
    }
  }
}

// Gradient with respect to the input jet for `width` adjacent columns, given
// phi[k * width + c], k = 0..3. Slot 0 of grad_in is the gradient with
// respect to a (the bias gradient's summand).
template <typename T>
HODERIV_HD void backward_columns(const T* __restrict__ grad_out, const T* __restrict__ in, T* __restrict__ grad_in,
                                 int64_t stride, int64_t width, const T* __restrict__ phi, const SlotLayout& layout) {
  const int64_t d = layout.num_inputs;
  const T* phi1 = phi + width;
  const T* phi2 = phi + 2 * width;
  const T* phi3 = phi + 3 * width;
  const T* tangents = in + stride;
  const T* second = in + (1 + d) * stride;
  const T* g_tangents = grad_out + stride;
  const T* g_second = grad_out + (1 + d) * stride;
  T* gi_tangents = grad_in + stride;
  T* gi_second = grad_in + (1 + d) * stride;

  // grad_a = phi' gv' + phi'' sum_i gT'_i T_i + ..., accumulated in slot 0.
  for (int64_t c = 0; c < width; ++c) grad_in[c] = phi1[c] * grad_out[c];
  for (int64_t i = 0; i < d; ++i) {
    for (int64_t c = 0; c < width; ++c) {
      const T gt = g_tangents[i * stride + c];
      grad_in[c] += phi2[c] * gt * tangents[i * stride + c];
      gi_tangents[i * stride + c] = phi1[c] * gt;
    }
  }
  if (layout.collapsed) {
    for (int64_t c = 0; c < width; ++c) {
      gi_second[c] = phi1[c] * g_second[c];
      grad_in[c] += phi2[c] * g_second[c] * second[c];
    }
    for (int64_t i = 0; i < d; ++i) {
      for (int64_t c = 0; c < width; ++c) {
        const T t = tangents[i * stride + c];
        const T gq = g_second[c];
        gi_tangents[i * stride + c] += T(2) * phi2[c] * gq * t;
        grad_in[c] += phi3[c] * gq * t * t;
      }
    }
    return;
  }
  for (int64_t s = 0; s < layout.num_second; ++s) {
    const int64_t i = layout.pair_i[s];
    const int64_t j = layout.pair_j[s];
    const T* ti = tangents + i * stride;
    const T* tj = tangents + j * stride;
    T* gti = gi_tangents + i * stride;
    T* gtj = gi_tangents + j * stride;
    for (int64_t c = 0; c < width; ++c) {
      const T gq = g_second[s * stride + c];
      gi_second[s * stride + c] = phi1[c] * gq;
      grad_in[c] += phi2[c] * gq * second[s * stride + c] + phi3[c] * gq * ti[c] * tj[c];
      const T scaled = phi2[c] * gq;
      const T ti_c = ti[c];
      gti[c] += scaled * tj[c];
      gtj[c] += scaled * ti_c;
    }
  }
}

// First layer's backward for `width` adjacent columns of one sample, given
// phi[k * width + c], k = 0..3 (at the preactivation). With W the weight
// (m, d), its transpose weight_t (d, m) and P_s = W[:, i_s] W[:, j_s]
// (collapsed: P = sum_i W[:, i]^2), the gradient with respect to the
// preactivation is
//   ga = phi' g0 + phi'' sum_i gT_i W[:, i] + phi''' sum_s gQ_s P_s
// and the weight's gradient needs two sums over samples, accumulated here
// into `sums` (d + s rows of `stride`):
//   sums[i]     += phi' gT_i         (i < d)
//   sums[d + s] += phi'' gQ_s
// from which gW[:, i] = sums[i] + sum_s sums[d + s] (delta_{i_s i} W[:, j_s]
// + delta_{j_s i} W[:, i_s]) (collapsed: + 2 sums[d] W[:, i]), formed by the
// host. grad is the sample's output-jet gradient (slot stride `stride`);
// weight_t, pair_products and sums have row stride `stride` too.
template <typename T>
HODERIV_HD void first_backward_columns(const T* __restrict__ grad, const T* __restrict__ weight_t,
                                       const T* __restrict__ pair_products, T* __restrict__ grad_a,
                                       T* __restrict__ sums, int64_t stride, int64_t width, const T* __restrict__ phi,
                                       const SlotLayout& layout) {
  const int64_t d = layout.num_inputs;
  const T* phi1 = phi + width;
  const T* phi2 = phi + 2 * width;
  const T* phi3 = phi + 3 * width;
  for (int64_t c = 0; c < width; ++c) grad_a[c] = phi1[c] * grad[c];
  for (int64_t i = 0; i < d; ++i) {
    for (int64_t c = 0; c < width; ++c) {
      const T gt = grad[(1 + i) * stride + c];
      grad_a[c] += phi2[c] * gt * weight_t[i * stride + c];
      sums[i * stride + c] += phi1[c] * gt;
    }
  }
  for (int64_t s = 0; s < layout.num_second; ++s) {
    for (int64_t c = 0; c < width; ++c) {
      const T gq = grad[(1 + d + s) * stride + c];
      grad_a[c] += phi3[c] * gq * pair_products[s * stride + c];
      sums[(d + s) * stride + c] += phi2[c] * gq;
    }
  }
}

// ----- One column of an (N, S, m) jet: a CUDA thread's whole work -----
// Column c = sample * m + unit. Each function is the body of one CUDA kernel
// (csrc/cuda/jet_cuda.cu); the host test (csrc/tests/test_jet_math.cpp) runs
// it over every column and compares it with the row functions above, which
// the CPU kernels call, so the CUDA kernels' index arithmetic is tested
// without a GPU.

// Forward step of column c of the jet `in` (N, S, m) into `out` (N, S, m).
template <typename T>
HODERIV_HD void forward_column(const T* __restrict__ in, const T* __restrict__ bias, T* __restrict__ out, int64_t c,
                               int64_t slots, int64_t m, const SlotLayout& layout, math::Function function,
                               const math::FunctionParams& params) {
  const int64_t sample = c / m, unit = c - sample * m;
  const int64_t offset = sample * slots * m + unit;
  T phi[3];
  activation_derivatives<T, 2>(in + offset, bias != nullptr ? bias + unit : nullptr, 1, function, params, phi);
  const T* column = in + offset;
  forward_columns<T>(column + m, m, column + (1 + layout.num_inputs) * m, out + offset, m, 1, phi, layout);
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
// weight_t the weight's transpose (d, m), `out` the jet (N, S, m).
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
// of a CUDA thread, the only writer of its column of `sums` (d + s rows of m,
// this chunk's partial sums). grad (N, S, m), pre (N, m), weight_t (d, m),
// pair_products (s, m), grad_a (N, m).
template <typename T>
HODERIV_HD void first_backward_unit(const T* __restrict__ grad, const T* __restrict__ pre,
                                    const T* __restrict__ weight_t, const T* __restrict__ pair_products,
                                    T* __restrict__ grad_a, T* __restrict__ sums, int64_t unit, int64_t begin,
                                    int64_t end, int64_t slots, int64_t m, const SlotLayout& layout,
                                    math::Function function, const math::FunctionParams& params) {
  for (int64_t sample = begin; sample < end; ++sample) {
    T phi[4];
    activation_derivatives<T, 3>(pre + sample * m + unit, nullptr, 1, function, params, phi);
    first_backward_columns<T>(grad + sample * slots * m + unit, weight_t + unit, pair_products + unit,
                              grad_a + sample * m + unit, sums + unit, m, 1, phi, layout);
  }
}

}  // namespace jet
}  // namespace hoderiv
