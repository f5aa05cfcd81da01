// The univariate Taylor jet through an activation, forward and backward:
// shared by the CPU and CUDA kernels (csrc/cpu/univariate_cpu.cpp,
// csrc/cuda/univariate_cuda.cu) and tested on the host by
// csrc/tests/test_univariate_math.cpp.
//
// Operand, per sample, with a stride of m elements (the layer width) between
// slots: the jet (S = 1 + t + R K slots)
//   slot 0            the value v,
//   slots 1..t        t tangents T_k (first order: the gradient's columns),
//   slot 1 + t + r K + (k - 1), k = 1..K
//                     the Taylor coefficient c_k = (1/k!) d^k/dt^k of
//                     direction r (r = 0..R-1).
// With a = v + bias, s_j = phi^(j)(a) / j! (math::taylor_coefficients) and,
// per direction, delta(t) = sum_{k=1..K} c_k t^k:
// forward (the jet of phi(a)): phi(a + delta) = sum_{j=0..K} s_j delta^j mod t^(K+1),
//   slot 0   phi(a) = s_0
//   T_k'     phi'(a) T_k
//   c_k'     y_k = sum_{j=1..k} s_j [delta^j]_k
// by Horner's rule in truncated power series (compose): H_K = s_K,
// H_j = s_j + delta H_{j+1}, H_0 = phi(a + delta); H_j is needed only to
// order K - j, so the step costs sum_{L=1..K} L(L+1)/2 multiply-adds per
// direction (120 for K = 8).
// backward, given the output's gradient (gv, gT_k, gy_{r,k}) and, per
// direction, g(t) = phi'(a + delta(t)) = sum_{j=0..K} (j+1) s_{j+1} delta^j
// mod t^(K+1) (compose again; it needs phi^(1..K+1), so the backward serves
// K <= kMaxOrder - 1):
//   da       = phi'(a) gv + phi''(a) sum_k gT_k T_k + sum_r sum_{k=1..K} gy_{r,k} g_k
//   dT_k     = phi'(a) gT_k
//   dc_{r,i} = sum_{k=i..K} gy_{r,k} g_{k-i}
// (dy_k / da = g_k and dy_k / dc_i = g_{k-i}: d/dc_i phi(a + delta) = g(t) t^i).
// The gradient with respect to the jet holds da in slot 0 (the gradient with
// respect to a, hence to v and, summed over samples, to the bias).
//
// The order K is a template parameter everywhere (fixed-size local arrays,
// loops the compilers unroll fully). The row functions handle `width`
// adjacent columns (one sample, adjacent units) with the loop over columns
// innermost and straight-line code inside, so the host compiler vectorises
// it; a CUDA thread passes width 1. Per-column values live in local arrays of
// Block entries: distinct arrays, no restrict-qualified scratch pointers cut
// from one buffer (gcc 12 at -O3 miscompiled that form in the bi-Laplacian
// backward).
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "hoderiv/derivative_math.h"

// The loops over columns of one direction store K slots at a runtime slot
// stride: gcc cannot prove those K streams apart (K(K-1)/2 run-time alias
// checks, over its limit of 10 from K = 6 on) and would leave the loop
// scalar. They never overlap: every caller passes width <= stride (the slot
// stride is the layer width m), so the loop has no loop-carried dependence.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__) && !defined(__HIPCC__)
#define HODERIV_COLUMNS_INDEPENDENT _Pragma("GCC ivdep")
#else
#define HODERIV_COLUMNS_INDEPENDENT
#endif

namespace hoderiv {
namespace univariate {

// The slots of a univariate jet: t tangents, R directions of K coefficients.
struct Layout {
  int64_t num_tangents = 0;    // t
  int64_t num_directions = 0;  // R
  int64_t order = 0;           // K: the compile-time K of the functions it is passed to

  HODERIV_HD int64_t slots() const { return 1 + num_tangents + num_directions * order; }
  // The slot of c_1 of direction r (c_k is k - 1 slots further).
  HODERIV_HD int64_t direction_slot(int64_t r) const { return 1 + num_tangents + r * order; }
};

// Calls body(std::integral_constant<int, K>{}) for the runtime order K in
// [1, Max] (the caller has checked the range): one instantiation per order.
template <int Max, int K = 1, typename Body>
void dispatch_order(int64_t order, Body&& body) {
  if constexpr (K <= Max) {
    if (order == K) {
      body(std::integral_constant<int, K>{});
      return;
    }
    dispatch_order<Max, K + 1>(order, std::forward<Body>(body));
  }
}

// ----- One column -----

// out = sum_{j=0..K} coef[j] delta^j mod t^(K+1), for a series delta without
// constant term (delta[0] is not read), by Horner's rule: h holds H_j to
// order K - j, updated in place from the top order down (h[k] reads only
// h[0..k-1], still H_{j+1}). Every loop has compile-time bounds and a
// condition that folds once unrolled (as in derivative_math.h): with bounds
// that depend on an outer index gcc leaves the K = 8 nest partly rolled and
// then does not vectorise the callers' loops over columns.
template <typename T, int K>
HODERIV_HD void compose(const T (&coef)[K + 1], const T (&delta)[K + 1], T (&out)[K + 1]) {
  out[0] = coef[K];
  HODERIV_UNROLL
  for (int k = 1; k <= K; ++k) out[k] = T(0);
  HODERIV_UNROLL
  for (int j = K - 1; j >= 0; --j) {
    HODERIV_UNROLL
    for (int k = K; k >= 1; --k) {
      if (k <= K - j) {
        T acc = delta[1] * out[k - 1];
        HODERIV_UNROLL
        for (int i = 2; i <= K; ++i) {
          if (i <= k) acc += delta[i] * out[k - i];
        }
        out[k] = acc;
      }
    }
    out[0] = coef[j];
  }
}

// Forward of one direction: y[0] = phi(a), y[k] = c_k' (k = 1..K), from
// taylor[j] = s_j (j = 0..K) and c[k] = c_k (c[0] not read).
template <typename T, int K>
HODERIV_HD void direction_forward(const T (&taylor)[K + 1], const T (&c)[K + 1], T (&y)[K + 1]) {
  compose<T, K>(taylor, c, y);
}

// Backward of one direction, from taylor[j] = s_j (j = 0..K+1), c[k] = c_k and
// gy[k] = the gradient of c_k' (k = 1..K; index 0 not read): writes
// gc[i] = dc_i (i = 1..K; gc[0] = 0) and returns this direction's part of
// da, sum_{k=1..K} gy_k g_k.
template <typename T, int K>
HODERIV_HD T direction_backward(const T (&taylor)[K + 2], const T (&c)[K + 1], const T (&gy)[K + 1],
                                T (&gc)[K + 1]) {
  T derivative[K + 1];  // the coefficients (j+1) s_{j+1} of phi'(a + h)
  HODERIV_UNROLL
  for (int j = 0; j <= K; ++j) derivative[j] = T(j + 1) * taylor[j + 1];
  T g[K + 1];
  compose<T, K>(derivative, c, g);
  T da = gy[1] * g[1];
  HODERIV_UNROLL
  for (int k = 2; k <= K; ++k) da += gy[k] * g[k];
  gc[0] = T(0);
  HODERIV_UNROLL
  for (int i = 1; i <= K; ++i) {
    T acc = gy[i] * g[0];
    HODERIV_UNROLL
    for (int k = 2; k <= K; ++k) {
      if (k > i) acc += gy[k] * g[k - i];
    }
    gc[i] = acc;
  }
  return da;
}

// ----- Rows of `width` <= Block adjacent columns, slot stride `stride` >= width -----

// taylor[k][c] = phi^(k)(a[c] + bias[c]) / k!, k = 0..Kd (bias may be null).
// Kd may exceed the order the step needs (the CPU shares one derivative
// block between orders); rows beyond it are not read.
template <typename T, int Kd, int64_t Block>
HODERIV_HD void taylor_columns(const T* __restrict__ a, const T* __restrict__ bias, int64_t width,
                               math::Function function, const math::FunctionParams& params,
                               T (&taylor)[Kd + 1][Block]) {
  if (bias != nullptr) {
    for (int64_t c = 0; c < width; ++c) {
      T d[Kd + 1];
      math::taylor_coefficients<T, Kd>(function, params, a[c] + bias[c], d);
      HODERIV_UNROLL
      for (int k = 0; k <= Kd; ++k) taylor[k][c] = d[k];
    }
    return;
  }
  for (int64_t c = 0; c < width; ++c) {
    T d[Kd + 1];
    math::taylor_coefficients<T, Kd>(function, params, a[c], d);
    HODERIV_UNROLL
    for (int k = 0; k <= Kd; ++k) taylor[k][c] = d[k];
  }
}

// Forward: the jet `out` of phi(a) from the jet `jet`, given taylor rows
// 0..K (taylor_columns). Both jets have slot stride `stride`.
template <typename T, int K, int64_t Block>
HODERIV_HD void forward_columns(const T* __restrict__ jet, T* __restrict__ out, int64_t stride, int64_t width,
                                const T (*__restrict__ taylor)[Block], const Layout& layout) {
  for (int64_t c = 0; c < width; ++c) out[c] = taylor[0][c];
  for (int64_t k = 0; k < layout.num_tangents; ++k) {
    const T* tangent = jet + (1 + k) * stride;
    T* tangent_out = out + (1 + k) * stride;
    for (int64_t c = 0; c < width; ++c) tangent_out[c] = taylor[1][c] * tangent[c];
  }
  for (int64_t r = 0; r < layout.num_directions; ++r) {
    const int64_t first = (1 + layout.num_tangents + r * K) * stride;
    const T* in = jet + first;
    T* direction_out = out + first;
    HODERIV_COLUMNS_INDEPENDENT
    for (int64_t c = 0; c < width; ++c) {
      T coef[K + 1], delta[K + 1], y[K + 1];
      HODERIV_UNROLL
      for (int j = 0; j <= K; ++j) coef[j] = taylor[j][c];
      delta[0] = T(0);
      HODERIV_UNROLL
      for (int k = 1; k <= K; ++k) delta[k] = in[(k - 1) * stride + c];
      direction_forward<T, K>(coef, delta, y);
      HODERIV_UNROLL
      for (int k = 1; k <= K; ++k) direction_out[(k - 1) * stride + c] = y[k];
    }
  }
}

// Backward: the gradient `grad_jet` with respect to `jet` (slot 0: with
// respect to a) from the output's gradient `grad`, given taylor rows 0..K+1.
// All three have slot stride `stride`.
template <typename T, int K, int64_t Block>
HODERIV_HD void backward_columns(const T* __restrict__ grad, const T* __restrict__ jet, T* __restrict__ grad_jet,
                                 int64_t stride, int64_t width, const T (*__restrict__ taylor)[Block],
                                 const Layout& layout) {
  T da[Block];
  for (int64_t c = 0; c < width; ++c) da[c] = taylor[1][c] * grad[c];
  for (int64_t k = 0; k < layout.num_tangents; ++k) {
    const int64_t slot = (1 + k) * stride;
    const T* tangent = jet + slot;
    const T* grad_tangent = grad + slot;
    T* tangent_out = grad_jet + slot;
    for (int64_t c = 0; c < width; ++c) {
      tangent_out[c] = taylor[1][c] * grad_tangent[c];
      da[c] += T(2) * taylor[2][c] * grad_tangent[c] * tangent[c];  // phi''(a) = 2 s_2
    }
  }
  for (int64_t r = 0; r < layout.num_directions; ++r) {
    const int64_t first = (1 + layout.num_tangents + r * K) * stride;
    const T* in = jet + first;
    const T* grad_in = grad + first;
    T* direction_out = grad_jet + first;
    HODERIV_COLUMNS_INDEPENDENT
    for (int64_t c = 0; c < width; ++c) {
      T coef[K + 2], delta[K + 1], gy[K + 1], gc[K + 1];
      HODERIV_UNROLL
      for (int j = 0; j <= K + 1; ++j) coef[j] = taylor[j][c];
      delta[0] = T(0);
      gy[0] = T(0);
      HODERIV_UNROLL
      for (int k = 1; k <= K; ++k) {
        delta[k] = in[(k - 1) * stride + c];
        gy[k] = grad_in[(k - 1) * stride + c];
      }
      da[c] += direction_backward<T, K>(coef, delta, gy, gc);
      HODERIV_UNROLL
      for (int k = 1; k <= K; ++k) direction_out[(k - 1) * stride + c] = gc[k];
    }
  }
  for (int64_t c = 0; c < width; ++c) grad_jet[c] = da[c];
}

// ----- One column c = sample * m + unit: a CUDA thread's whole work -----
// jet_sample_stride: the elements between the input jet's samples (its slot
// stride is m; the host passes a narrowed view of a wider jet without
// copying); out, grad and grad_jet are contiguous (N, S, m).

template <typename T, int K>
HODERIV_HD void forward_column(const T* __restrict__ jet, int64_t jet_sample_stride, const T* __restrict__ bias,
                               T* __restrict__ out, int64_t c, int64_t m, const Layout& layout,
                               math::Function function, const math::FunctionParams& params) {
  const int64_t sample = c / m, unit = c - sample * m;
  const T* column = jet + sample * jet_sample_stride + unit;
  T taylor[K + 1][1];
  taylor_columns<T, K, 1>(column, bias != nullptr ? bias + unit : nullptr, 1, function, params, taylor);
  forward_columns<T, K, 1>(column, out + sample * layout.slots() * m + unit, m, 1, taylor, layout);
}

template <typename T, int K>
HODERIV_HD void backward_column(const T* __restrict__ grad, const T* __restrict__ jet, int64_t jet_sample_stride,
                                const T* __restrict__ bias, T* __restrict__ grad_jet, int64_t c, int64_t m,
                                const Layout& layout, math::Function function, const math::FunctionParams& params) {
  static_assert(K + 1 <= math::kMaxOrder, "the backward needs phi^(K+1): K <= kMaxOrder - 1");
  const int64_t sample = c / m, unit = c - sample * m;
  const T* column = jet + sample * jet_sample_stride + unit;
  T taylor[K + 2][1];
  taylor_columns<T, K + 1, 1>(column, bias != nullptr ? bias + unit : nullptr, 1, function, params, taylor);
  const int64_t offset = sample * layout.slots() * m + unit;
  backward_columns<T, K, 1>(grad + offset, column, grad_jet + offset, m, 1, taylor, layout);
}

}  // namespace univariate
}  // namespace hoderiv
