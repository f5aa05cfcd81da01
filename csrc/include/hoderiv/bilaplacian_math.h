// The extra slots of the exact bi-Laplacian's jet through an activation,
// forward and backward, for one column (one sample n, one unit j): shared by
// the CPU and CUDA kernels (csrc/cpu/jet_cpu.cpp, csrc/cuda/jet_cuda.cu).
//
// Operands, per sample, with a stride of m elements (the layer width)
// between slots:
//   the main jet   (S slots)    slot 0 the value v, slots 1..t the tangents,
//                               then the p(p+1)/2 pairs (a, b), a <= b, over
//                               the chosen tangents D = (dims[0], ..., dims[p-1]),
//                               row-major upper triangle: pair (a, b) is slot
//                               1 + t + a p - a(a-1)/2 + b - a
//                               (S = 1 + t + p(p+1)/2);
//   the extra jet  (p + 1 slots) T_i (i < p), then B.
// With a = v + bias, g_i = tangent dims[i], A the symmetric p x p matrix of
// the pairs and phi_k = phi^(k)(a) (derivative_math.h):
//   G = sum_j g_j^2,  L = sum_j A_jj,  H_i = sum_j A_ij g_j,  Q = sum_i g_i H_i,
//   F = sum_ij A_ij^2,  P = sum_i g_i T_i
// forward (the extra jet of phi(a))
//   T_i' = (phi3 G + phi2 L) g_i + 2 phi2 H_i + phi1 T_i
//   B'   = phi4 G^2 + 2 phi3 L G + 4 phi3 Q + phi2 (2F + L^2 + 4P) + phi1 B
// backward, given gT = grad[:p], gB = grad[p], s = sum_i gT_i g_i,
// (A gT)_k = sum_i A_ki gT_i:
//   da   = phi4 G s + 2 phi3 sum_i gT_i H_i + phi3 L s + phi2 sum_i gT_i T_i
//          + gB (phi5 G^2 + 2 phi4 L G + 4 phi4 Q + phi3 (2F + L^2 + 4P) + phi2 B)
//   dg_k = phi3 G gT_k + 2 phi3 s g_k + 2 phi2 (A gT)_k + phi2 L gT_k
//          + gB (4 phi4 G g_k + 4 phi3 L g_k + 8 phi3 H_k + 4 phi2 T_k)
//   dT_k = phi1 gT_k + 4 phi2 gB g_k;   dB = phi1 gB
//   dpair(a < b) = 2 phi2 (gT_a g_b + gT_b g_a) + gB (8 phi3 g_a g_b + 8 phi2 A_ab)
//   dpair(a, a)  = 2 phi2 gT_a g_a + phi2 s + 2 phi3 G gB + 2 phi2 L gB
//                  + gB (4 phi3 g_a^2 + 4 phi2 A_aa)
// The gradient with respect to the main jet holds da in slot 0, dg_k in slot
// 1 + dims[k] (zero in the other tangent slots: dims has no repeats) and
// dpair in the pair slots.
//
// Each row function handles `width` adjacent columns with the loops over
// columns innermost (the CPU passes blocks of a row, vectorisable; a CUDA
// thread passes width 1). Every loop reads
// and writes only the slots above: the host has checked the shapes and that
// every dims entry is in [0, t).
#pragma once

#include <cstdint>

#include "hoderiv/derivative_math.h"
#include "hoderiv/jet_math.h"

namespace hoderiv {
namespace bilaplacian {

using jet::Index;

// The extra slots' layout: t tangents in the main jet, the p chosen ones.
struct ExtraLayout {
  int64_t num_tangents = 0;  // t
  int64_t num_dims = 0;      // p >= 1
  const Index* dims = nullptr;

  // The main jet's slot of pair (a, b) over D, a <= b.
  HODERIV_HD int64_t pair_slot(int64_t a, int64_t b) const {
    if (a > b) {
      const int64_t swap = a;
      a = b;
      b = swap;
    }
    return 1 + num_tangents + a * num_dims - a * (a - 1) / 2 + b - a;
  }
  HODERIV_HD int64_t num_pairs() const { return num_dims * (num_dims + 1) / 2; }
  HODERIV_HD int64_t jet_slots() const { return 1 + num_tangents + num_pairs(); }
  HODERIV_HD int64_t extra_slots() const { return num_dims + 1; }
};

// The dims list as one fixed-capacity value, a CUDA kernel's by-value
// (`const __grid_constant__`) argument: no host-to-device copy, capturable in
// CUDA graphs. 1 KB; the host refuses p > kCapacity for CUDA tensors.
struct DimsTable {
  static constexpr int64_t kCapacity = 256;
  int64_t num_tangents = 0;
  int64_t num_dims = 0;
  Index dims[kCapacity] = {};

  HODERIV_HD ExtraLayout layout() const {
    ExtraLayout result;
    result.num_tangents = num_tangents;
    result.num_dims = num_dims;
    result.dims = dims;
    return result;
  }
};

inline DimsTable dims_table_of(const ExtraLayout& host) {
  DimsTable table;
  table.num_tangents = host.num_tangents;
  table.num_dims = host.num_dims;
  for (int64_t i = 0; i < host.num_dims && i < DimsTable::kCapacity; ++i) table.dims[i] = host.dims[i];
  return table;
}

// Forward for `width` <= Block adjacent columns, given phi[k * width + c],
// k = 0..4: the main jet `jet`, the extra jet `extra` and the output extra
// jet `out`, all with slot stride `stride`. The per-column sums live in local
// arrays of Block entries (the CPU passes blocks of columns, a CUDA thread
// Block = 1): distinct local arrays, so the compiler sees they never overlap
// and vectorises the loops without restrict-qualified scratch pointers (gcc
// 12 at -O3 miscompiled the backward with ten restrict scratch arrays cut
// from one buffer, and vectorised it badly with one unqualified buffer).
template <typename T, int64_t Block>
HODERIV_HD void forward_columns(const T* __restrict__ jet, const T* __restrict__ extra, T* __restrict__ out,
                                int64_t stride, int64_t width, const T* __restrict__ phi, const ExtraLayout& layout) {
  const int64_t p = layout.num_dims;
  const T* phi1 = phi + width;
  const T* phi2 = phi + 2 * width;
  const T* phi3 = phi + 3 * width;
  const T* phi4 = phi + 4 * width;
  T sum_g2[Block], trace[Block], quadratic[Block], frobenius[Block], projected[Block];
  for (int64_t c = 0; c < width; ++c) {
    sum_g2[c] = T(0);
    trace[c] = T(0);
    quadratic[c] = T(0);
    frobenius[c] = T(0);
    projected[c] = T(0);
  }
  for (int64_t i = 0; i < p; ++i) {
    const T* gi = jet + (1 + layout.dims[i]) * stride;
    const T* aii = jet + layout.pair_slot(i, i) * stride;
    for (int64_t c = 0; c < width; ++c) {
      sum_g2[c] += gi[c] * gi[c];
      trace[c] += aii[c];
    }
  }
  for (int64_t i = 0; i < p; ++i) {
    const T* gi = jet + (1 + layout.dims[i]) * stride;
    const T* ti = extra + i * stride;
    T* out_i = out + i * stride;  // holds H_i until the last loop
    for (int64_t c = 0; c < width; ++c) out_i[c] = T(0);
    for (int64_t j = 0; j < p; ++j) {
      const T* gj = jet + (1 + layout.dims[j]) * stride;
      const T* aij = jet + layout.pair_slot(i, j) * stride;
      for (int64_t c = 0; c < width; ++c) {
        out_i[c] += aij[c] * gj[c];
        frobenius[c] += aij[c] * aij[c];
      }
    }
    for (int64_t c = 0; c < width; ++c) {
      const T h = out_i[c];
      quadratic[c] += gi[c] * h;
      projected[c] += gi[c] * ti[c];
      out_i[c] = (phi3[c] * sum_g2[c] + phi2[c] * trace[c]) * gi[c] + T(2) * phi2[c] * h + phi1[c] * ti[c];
    }
  }
  const T* b = extra + p * stride;
  T* out_b = out + p * stride;
  for (int64_t c = 0; c < width; ++c) {
    const T g2 = sum_g2[c], l = trace[c];
    out_b[c] = phi4[c] * g2 * g2 + T(2) * phi3[c] * l * g2 + T(4) * phi3[c] * quadratic[c] +
               phi2[c] * (T(2) * frobenius[c] + l * l + T(4) * projected[c]) + phi1[c] * b[c];
  }
}

// Backward for `width` <= Block adjacent columns, given phi[k * width + c],
// k = 0..5: grad (the output extra jet's gradient), jet and extra as in
// forward_columns; writes grad_jet (the main jet's gradient, slot 0: with
// respect to a) and grad_extra, all with slot stride `stride`.
template <typename T, int64_t Block>
HODERIV_HD void backward_columns(const T* __restrict__ grad, const T* __restrict__ jet, const T* __restrict__ extra,
                                 T* __restrict__ grad_jet, T* __restrict__ grad_extra, int64_t stride, int64_t width,
                                 const T* __restrict__ phi, const ExtraLayout& layout) {
  const int64_t t = layout.num_tangents, p = layout.num_dims;
  const T* phi1 = phi + width;
  const T* phi2 = phi + 2 * width;
  const T* phi3 = phi + 3 * width;
  const T* phi4 = phi + 4 * width;
  const T* phi5 = phi + 5 * width;
  // G, L, s = sum gT_i g_i, Q, F, P, sum gT_i H_i, sum gT_i T_i, then H_k and (A gT)_k of the current k.
  T sum_g2[Block], trace[Block], s[Block], quadratic[Block], frobenius[Block], projected[Block];
  T grad_h[Block], grad_t[Block], h[Block], a_grad[Block];
  const T* gb = grad + p * stride;
  for (int64_t c = 0; c < width; ++c) {
    sum_g2[c] = T(0);
    trace[c] = T(0);
    s[c] = T(0);
    quadratic[c] = T(0);
    frobenius[c] = T(0);
    projected[c] = T(0);
    grad_h[c] = T(0);
    grad_t[c] = T(0);
  }
  for (int64_t k = 0; k < t; ++k) {
    T* slot = grad_jet + (1 + k) * stride;
    for (int64_t c = 0; c < width; ++c) slot[c] = T(0);
  }
  for (int64_t i = 0; i < p; ++i) {
    const T* gi = jet + (1 + layout.dims[i]) * stride;
    const T* aii = jet + layout.pair_slot(i, i) * stride;
    const T* gti = grad + i * stride;
    for (int64_t c = 0; c < width; ++c) {
      sum_g2[c] += gi[c] * gi[c];
      trace[c] += aii[c];
      s[c] += gti[c] * gi[c];
    }
  }
  for (int64_t k = 0; k < p; ++k) {
    const T* gk = jet + (1 + layout.dims[k]) * stride;
    const T* tk = extra + k * stride;
    const T* gtk = grad + k * stride;
    for (int64_t c = 0; c < width; ++c) {
      h[c] = T(0);
      a_grad[c] = T(0);
    }
    for (int64_t j = 0; j < p; ++j) {
      const T* gj = jet + (1 + layout.dims[j]) * stride;
      const T* gtj = grad + j * stride;
      const T* akj = jet + layout.pair_slot(k, j) * stride;
      for (int64_t c = 0; c < width; ++c) {
        h[c] += akj[c] * gj[c];
        a_grad[c] += akj[c] * gtj[c];
        frobenius[c] += akj[c] * akj[c];
      }
    }
    T* d_gk = grad_jet + (1 + layout.dims[k]) * stride;
    T* d_tk = grad_extra + k * stride;
    for (int64_t c = 0; c < width; ++c) {
      quadratic[c] += gk[c] * h[c];
      projected[c] += gk[c] * tk[c];
      grad_h[c] += gtk[c] * h[c];
      grad_t[c] += gtk[c] * tk[c];
      d_gk[c] = phi3[c] * sum_g2[c] * gtk[c] + T(2) * phi3[c] * s[c] * gk[c] + T(2) * phi2[c] * a_grad[c] +
                phi2[c] * trace[c] * gtk[c] +
                gb[c] * (T(4) * phi4[c] * sum_g2[c] * gk[c] + T(4) * phi3[c] * trace[c] * gk[c] +
                         T(8) * phi3[c] * h[c] + T(4) * phi2[c] * tk[c]);
      d_tk[c] = phi1[c] * gtk[c] + T(4) * phi2[c] * gb[c] * gk[c];
    }
  }
  for (int64_t a = 0; a < p; ++a) {
    const T* ga = jet + (1 + layout.dims[a]) * stride;
    const T* gta = grad + a * stride;
    for (int64_t b = a; b < p; ++b) {
      const int64_t slot = layout.pair_slot(a, b);
      const T* aab = jet + slot * stride;
      T* d_pair = grad_jet + slot * stride;
      if (a == b) {
        for (int64_t c = 0; c < width; ++c) {
          d_pair[c] = T(2) * phi2[c] * gta[c] * ga[c] + phi2[c] * s[c] + T(2) * phi3[c] * sum_g2[c] * gb[c] +
                      T(2) * phi2[c] * trace[c] * gb[c] +
                      gb[c] * (T(4) * phi3[c] * ga[c] * ga[c] + T(4) * phi2[c] * aab[c]);
        }
      } else {
        const T* gbb = jet + (1 + layout.dims[b]) * stride;
        const T* gtb = grad + b * stride;
        for (int64_t c = 0; c < width; ++c) {
          d_pair[c] = T(2) * phi2[c] * (gta[c] * gbb[c] + gtb[c] * ga[c]) +
                      gb[c] * (T(8) * phi3[c] * ga[c] * gbb[c] + T(8) * phi2[c] * aab[c]);
        }
      }
    }
  }
  const T* b_in = extra + p * stride;
  T* d_b = grad_extra + p * stride;
  for (int64_t c = 0; c < width; ++c) {
    const T g2 = sum_g2[c], l = trace[c];
    grad_jet[c] = phi4[c] * g2 * s[c] + T(2) * phi3[c] * grad_h[c] + phi3[c] * l * s[c] + phi2[c] * grad_t[c] +
                  gb[c] * (phi5[c] * g2 * g2 + T(2) * phi4[c] * l * g2 + T(4) * phi4[c] * quadratic[c] +
                           phi3[c] * (T(2) * frobenius[c] + l * l + T(4) * projected[c]) + phi2[c] * b_in[c]);
    d_b[c] = phi1[c] * gb[c];
  }
}

// ----- One column: a CUDA thread's whole work -----
// Column c = sample * m + unit. jet_sample_stride / extra_sample_stride: the
// elements between samples of the main and extra jets (their slot stride is
// m; the host passes narrowed views of one contiguous jet without copying);
// out, grad, grad_jet and grad_extra are contiguous.

template <typename T>
HODERIV_HD void forward_column(const T* __restrict__ jet, int64_t jet_sample_stride, const T* __restrict__ bias,
                               const T* __restrict__ extra, int64_t extra_sample_stride, T* __restrict__ out,
                               int64_t c, int64_t m, const ExtraLayout& layout, math::Function function,
                               const math::FunctionParams& params) {
  const int64_t sample = c / m, unit = c - sample * m;
  const T* column = jet + sample * jet_sample_stride + unit;
  T phi[5];
  jet::activation_derivatives<T, 4>(column, bias != nullptr ? bias + unit : nullptr, 1, function, params, phi);
  forward_columns<T, 1>(column, extra + sample * extra_sample_stride + unit,
                        out + sample * layout.extra_slots() * m + unit, m, 1, phi, layout);
}

template <typename T>
HODERIV_HD void backward_column(const T* __restrict__ grad, const T* __restrict__ jet, int64_t jet_sample_stride,
                                const T* __restrict__ bias, const T* __restrict__ extra, int64_t extra_sample_stride,
                                T* __restrict__ grad_jet, T* __restrict__ grad_extra, int64_t c, int64_t m,
                                const ExtraLayout& layout, math::Function function,
                                const math::FunctionParams& params) {
  const int64_t sample = c / m, unit = c - sample * m;
  const T* column = jet + sample * jet_sample_stride + unit;
  T phi[6];
  jet::activation_derivatives<T, 5>(column, bias != nullptr ? bias + unit : nullptr, 1, function, params, phi);
  const int64_t extra_offset = sample * layout.extra_slots() * m + unit;
  backward_columns<T, 1>(grad + extra_offset, column, extra + sample * extra_sample_stride + unit,
                         grad_jet + sample * layout.jet_slots() * m + unit, grad_extra + extra_offset, m, 1, phi,
                         layout);
}

}  // namespace bilaplacian
}  // namespace hoderiv
