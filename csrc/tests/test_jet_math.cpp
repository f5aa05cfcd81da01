// C++ test of the jet activation step (csrc/include/hoderiv/jet_math.h), run
// by ctest. Needs no torch and no GPU.
//
// Three computations of the same step are compared on random jets:
//   * naive   -- the formulas of jet_math.h's header comment, written out here
//                per sample, unit and slot, with the Kronecker deltas as
//                explicit tests (the independent reference);
//   * rows    -- the row functions over a whole sample (width m), as the CPU
//                kernels call them;
//   * columns -- forward_column / backward_column / first_forward_column over
//                every column c of the batch, as each CUDA thread calls them
//                (first_backward_unit over every (chunk, unit) for the first
//                layer's backward), with the layout taken from an IndexTable
//                (the CUDA kernels' by-value argument), inline and through
//                its external-pointer fallback.
// The first layer's weight gradient: first_weight_grad_entry over every
// (tangent, unit) from the partial sums of both computations, against the
// naive sum over samples.
// Layouts: tangents only, pairs (with t larger than the indices they use),
// a full Hessian, the collapsed slot over all tangents and over a subset,
// pairs and a collapsed slot together.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "hoderiv/jet_math.h"
#include "check.h"

using hoderiv::jet::Index;
using hoderiv::jet::IndexTable;
using hoderiv::jet::SlotLayout;
using hoderiv::math::Function;
using hoderiv::math::FunctionParams;

namespace {

using hoderiv_test::expect;

// One check for a whole vector: every element within hoderiv_test's
// within_tolerance of want's (in double); a failure names the first element
// that is not, or the two sizes where they differ.
template <typename T>
void expect_close(const std::vector<T>& got, const std::vector<T>& want, double tolerance, const std::string& what) {
  using hoderiv_test::show;
  if (got.size() != want.size()) {
    expect(false, what + ": " + std::to_string(got.size()) + " values, expected " + std::to_string(want.size()));
    return;
  }
  for (size_t k = 0; k < got.size(); ++k) {
    const double g = static_cast<double>(got[k]), w = static_cast<double>(want[k]);
    if (!hoderiv_test::within_tolerance(g, w, tolerance)) {
      expect(false, what + ": element " + std::to_string(k) + " is " + show(g) + ", expected " + show(w));
      return;
    }
  }
  expect(true, what);
}

template <typename T>
void expect_equal(const std::vector<T>& got, const std::vector<T>& want, const std::string& what) {
  expect(got.size() == want.size() && std::memcmp(got.data(), want.data(), sizeof(T) * got.size()) == 0,
         what + " (bitwise)");
}

struct Layout {
  std::string name;
  int64_t t;
  std::vector<Index> pair_i, pair_j, collapsed;
  SlotLayout view() const {
    SlotLayout layout;
    layout.num_tangents = t;
    layout.num_pairs = static_cast<int64_t>(pair_i.size());
    layout.num_collapsed = static_cast<int64_t>(collapsed.size());
    layout.pair_i = pair_i.data();
    layout.pair_j = pair_j.data();
    layout.collapsed = collapsed.data();
    return layout;
  }
  bool in_collapsed(int64_t k) const { return std::find(collapsed.begin(), collapsed.end(), k) != collapsed.end(); }
};

std::vector<Layout> layouts() {
  Layout full{"full hessian", 4, {}, {}, {}};
  for (Index i = 0; i < 4; ++i) {
    for (Index j = i; j < 4; ++j) {
      full.pair_i.push_back(i);
      full.pair_j.push_back(j);
    }
  }
  return {
      {"tangents only", 3, {}, {}, {}},
      // t = 5 while the pairs use tangents 0..2 only; (1, 1) diagonal, (2, 0) and (0, 2) both orders.
      {"pairs", 5, {2, 1, 0, 1}, {0, 1, 2, 0}, {}},
      full,
      // Collapsed lists of odd and even length, out of order (the rows' forward
      // takes two entries per pass, then the odd one).
      {"collapsed all", 3, {}, {}, {2, 0, 1}},
      {"collapsed subset", 5, {}, {}, {3, 1}},
      {"pairs and collapsed", 4, {0, 2, 3}, {3, 2, 1}, {2, 0, 3}},
  };
}

struct Activation {
  const char* name;
  Function function;
  FunctionParams params;
};

std::vector<Activation> activations() {
  return {{"tanh", Function::kTanh, {}},
          {"sin", Function::kSin, {}},
          {"scaled_sin", Function::kScaledSin, {3.0, 0.0}},
          {"softplus", Function::kSoftplus, {2.0, 20.0}},
          {"gelu", Function::kGeluErf, {}},
          {"elu", Function::kELU, {0.7, 0.0}}};
}

template <typename T>
std::vector<T> random_vector(std::mt19937_64& rng, size_t size) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<T> v(size);
  for (T& x : v) x = static_cast<T>(normal(rng));
  return v;
}

// The layout as the CUDA kernels see it: an IndexTable, inline, or with
// every list behind its external pointer (the fallback for long lists).
struct TableLayouts {
  IndexTable inline_table;
  IndexTable external_table;
  explicit TableLayouts(const Layout& owner) {
    const SlotLayout host = owner.view();
    inline_table = hoderiv::jet::index_table_of(host);
    external_table = hoderiv::jet::index_table_of(host);
    external_table.pair_i_external = owner.pair_i.data();
    external_table.pair_j_external = owner.pair_j.data();
    external_table.collapsed_external = owner.collapsed.data();
    // Poison the inline copies: the external lists must be the ones read.
    for (int64_t s = 0; s < IndexTable::kPairCapacity; ++s) external_table.pair_i[s] = external_table.pair_j[s] = -1;
    for (int64_t q = 0; q < IndexTable::kCollapsedCapacity; ++q) external_table.collapsed[q] = -1;
  }
};

// ----- naive formulas, one sample and unit; slot k of a column at column[k * m] -----

template <typename T>
void naive_forward(const Activation& act, const Layout& L, T a, const std::vector<T>& tangent,
                   const std::vector<T>& pair_q, T collapsed_q, T* out, int64_t m) {
  T phi[3];
  hoderiv::math::derivatives<T, 2>(act.function, act.params, a, phi);
  const int64_t t = L.t, p = static_cast<int64_t>(L.pair_i.size());
  out[0] = phi[0];
  for (int64_t k = 0; k < t; ++k) out[(1 + k) * m] = phi[1] * tangent[k];
  for (int64_t s = 0; s < p; ++s) {
    out[(1 + t + s) * m] = phi[1] * pair_q[s] + phi[2] * tangent[L.pair_i[s]] * tangent[L.pair_j[s]];
  }
  if (!L.collapsed.empty()) {
    T squares = T(0);
    for (int64_t k = 0; k < t; ++k) {
      if (L.in_collapsed(k)) squares += tangent[k] * tangent[k];
    }
    out[(1 + t + p) * m] = phi[1] * collapsed_q + phi[2] * squares;
  }
}

// Backward from the formula as written: gT_k with the deltas tested per (k, s).
template <typename T>
void naive_backward(const Activation& act, const Layout& L, T a, const T* in, const T* g, T* grad_in, int64_t m) {
  T phi[4];
  hoderiv::math::derivatives<T, 3>(act.function, act.params, a, phi);
  const int64_t t = L.t, p = static_cast<int64_t>(L.pair_i.size());
  const bool has_c = !L.collapsed.empty();
  const auto T_ = [&](int64_t k) { return in[(1 + k) * m]; };
  const auto gT = [&](int64_t k) { return g[(1 + k) * m]; };
  const auto Q = [&](int64_t s) { return in[(1 + t + s) * m]; };
  const auto gQ = [&](int64_t s) { return g[(1 + t + s) * m]; };
  const T Qc = has_c ? in[(1 + t + p) * m] : T(0);
  const T gQc = has_c ? g[(1 + t + p) * m] : T(0);
  for (int64_t s = 0; s < p; ++s) grad_in[(1 + t + s) * m] = phi[1] * gQ(s);
  if (has_c) grad_in[(1 + t + p) * m] = phi[1] * gQc;
  for (int64_t k = 0; k < t; ++k) {
    T pair_terms = T(0);
    for (int64_t s = 0; s < p; ++s) {
      const T delta_i = L.pair_i[s] == k ? T(1) : T(0);
      const T delta_j = L.pair_j[s] == k ? T(1) : T(0);
      pair_terms += gQ(s) * (delta_i * T_(L.pair_j[s]) + delta_j * T_(L.pair_i[s]));
    }
    const T collapsed_term = L.in_collapsed(k) ? T(2) * phi[2] * gQc * T_(k) : T(0);
    grad_in[(1 + k) * m] = phi[1] * gT(k) + phi[2] * pair_terms + collapsed_term;
  }
  T tangent_sum = T(0), second_sum = T(0), product_sum = T(0), squares = T(0);
  for (int64_t k = 0; k < t; ++k) tangent_sum += gT(k) * T_(k);
  for (int64_t s = 0; s < p; ++s) {
    second_sum += gQ(s) * Q(s);
    product_sum += gQ(s) * T_(L.pair_i[s]) * T_(L.pair_j[s]);
  }
  for (int64_t k = 0; k < t; ++k) {
    if (L.in_collapsed(k)) squares += T_(k) * T_(k);
  }
  grad_in[0] = phi[1] * g[0] + phi[2] * tangent_sum + phi[2] * (second_sum + gQc * Qc) +
               phi[3] * (product_sum + gQc * squares);
}

template <typename T>
void test_steps(const char* type_name, double tolerance) {
  std::mt19937_64 rng(20261122);
  const int64_t n = 3, m = 7;  // odd width: the vector loops' remainders run
  for (const Layout& L : layouts()) {
    const SlotLayout layout = L.view();
    const TableLayouts tables(L);
    const SlotLayout inline_layout = tables.inline_table.layout();
    const SlotLayout external_layout = tables.external_table.layout();
    const int64_t t = L.t, p = layout.num_pairs;
    const int64_t slots = layout.slots();
    expect(slots == 1 + t + p + (L.collapsed.empty() ? 0 : 1), L.name + ": slot count");
    for (const Activation& act : activations()) {
      for (bool with_bias : {false, true}) {
        const std::string what =
            std::string(type_name) + " " + act.name + " " + L.name + (with_bias ? " bias" : " no bias");
        const std::vector<T> in = random_vector<T>(rng, n * slots * m);
        const std::vector<T> grad = random_vector<T>(rng, n * slots * m);
        const std::vector<T> bias_values = random_vector<T>(rng, m);
        const T* bias = with_bias ? bias_values.data() : nullptr;
        const auto bias_of = [&](int64_t unit) { return with_bias ? bias_values[unit] : T(0); };

        // ----- forward -----
        std::vector<T> naive(in.size()), rows(in.size()), columns(in.size()), columns_external(in.size());
        for (int64_t sample = 0; sample < n; ++sample) {
          for (int64_t unit = 0; unit < m; ++unit) {
            const T* column = in.data() + sample * slots * m + unit;
            std::vector<T> tangent(t), pair_q(p);
            for (int64_t k = 0; k < t; ++k) tangent[k] = column[(1 + k) * m];
            for (int64_t s = 0; s < p; ++s) pair_q[s] = column[(1 + t + s) * m];
            const T collapsed_q = L.collapsed.empty() ? T(0) : column[(1 + t + p) * m];
            naive_forward<T>(act, L, column[0] + bias_of(unit), tangent, pair_q, collapsed_q,
                             naive.data() + sample * slots * m + unit, m);
          }
          std::vector<T> phi(3 * m);
          const int64_t offset = sample * slots * m;
          hoderiv::jet::activation_derivatives<T, 2>(in.data() + offset, bias, m, act.function, act.params,
                                                     phi.data());
          hoderiv::jet::forward_columns<T>(in.data() + offset + m, m, in.data() + offset + (1 + t) * m,
                                           rows.data() + offset, m, m, phi.data(), layout);
        }
        for (int64_t c = 0; c < n * m; ++c) {
          hoderiv::jet::forward_column<T>(in.data(), bias, columns.data(), c, slots, m, inline_layout, act.function,
                                          act.params);
          hoderiv::jet::forward_column<T>(in.data(), bias, columns_external.data(), c, slots, m, external_layout,
                                          act.function, act.params);
        }
        expect_close(rows, naive, tolerance, what + ": forward, rows against naive");
        expect_close(columns, naive, tolerance, what + ": forward, columns against naive");
        expect_equal(columns_external, columns, what + ": forward, external index lists as inline");

        // ----- forward with a residual: the step plus the residual jet -----
        const std::vector<T> residual = random_vector<T>(rng, n * slots * m);
        std::vector<T> naive_residual(in.size()), rows_residual(rows), columns_residual(in.size());
        for (size_t e = 0; e < in.size(); ++e) naive_residual[e] = naive[e] + residual[e];
        for (int64_t sample = 0; sample < n; ++sample) {
          const int64_t offset = sample * slots * m;
          hoderiv::jet::add_residual_columns<T>(residual.data() + offset, rows_residual.data() + offset, slots, m, m);
        }
        for (int64_t c = 0; c < n * m; ++c) {
          hoderiv::jet::forward_column<T>(in.data(), bias, columns_residual.data(), c, slots, m, inline_layout,
                                          act.function, act.params, residual.data());
        }
        expect_close(rows_residual, naive_residual, tolerance, what + ": forward with residual, rows against naive");
        expect_close(columns_residual, naive_residual, tolerance,
                     what + ": forward with residual, columns against naive");

        // ----- backward -----
        std::vector<T> naive_grad(in.size()), rows_grad(in.size()), columns_grad(in.size()),
            columns_grad_external(in.size());
        for (int64_t sample = 0; sample < n; ++sample) {
          const int64_t offset = sample * slots * m;
          for (int64_t unit = 0; unit < m; ++unit) {
            naive_backward<T>(act, L, in[offset + unit] + bias_of(unit), in.data() + offset + unit,
                              grad.data() + offset + unit, naive_grad.data() + offset + unit, m);
          }
          std::vector<T> phi(4 * m);
          hoderiv::jet::activation_derivatives<T, 3>(in.data() + offset, bias, m, act.function, act.params,
                                                     phi.data());
          hoderiv::jet::backward_columns<T>(grad.data() + offset, in.data() + offset, rows_grad.data() + offset, m,
                                            m, phi.data(), layout);
        }
        for (int64_t c = 0; c < n * m; ++c) {
          hoderiv::jet::backward_column<T>(grad.data(), in.data(), bias, columns_grad.data(), c, slots, m,
                                           inline_layout, act.function, act.params);
          hoderiv::jet::backward_column<T>(grad.data(), in.data(), bias, columns_grad_external.data(), c, slots, m,
                                           external_layout, act.function, act.params);
        }
        expect_close(rows_grad, naive_grad, tolerance, what + ": backward, rows against naive");
        expect_close(columns_grad, naive_grad, tolerance, what + ": backward, columns against naive");
        expect_equal(columns_grad_external, columns_grad, what + ": backward, external index lists as inline");
      }

      // ----- first layer: tangents from the weight, no second-order input -----
      const std::string what = std::string(type_name) + " " + act.name + " " + L.name + ": first layer";
      const std::vector<T> pre = random_vector<T>(rng, n * m);
      const std::vector<T> weight_t = random_vector<T>(rng, t * m);  // (t, m)
      std::vector<T> naive(n * slots * m), rows(n * slots * m), columns(n * slots * m);
      for (int64_t sample = 0; sample < n; ++sample) {
        for (int64_t unit = 0; unit < m; ++unit) {
          std::vector<T> tangent(t), pair_q(p, T(0));
          for (int64_t k = 0; k < t; ++k) tangent[k] = weight_t[k * m + unit];
          naive_forward<T>(act, L, pre[sample * m + unit], tangent, pair_q, T(0),
                           naive.data() + sample * slots * m + unit, m);
        }
        std::vector<T> phi(3 * m);
        hoderiv::jet::activation_derivatives<T, 2>(pre.data() + sample * m, nullptr, m, act.function, act.params,
                                                   phi.data());
        hoderiv::jet::forward_columns<T>(weight_t.data(), m, nullptr, rows.data() + sample * slots * m, m, m,
                                         phi.data(), layout);
      }
      for (int64_t c = 0; c < n * m; ++c) {
        hoderiv::jet::first_forward_column<T>(pre.data(), weight_t.data(), columns.data(), c, slots, m,
                                              inline_layout, act.function, act.params);
      }
      expect_close(rows, naive, tolerance, what + ", rows against naive");
      expect_close(columns, naive, tolerance, what + ", columns against naive");
    }
  }
}

// First layer's backward: rows (the CPU kernel's call, chunked partial sums),
// per unit over chunks (the CUDA thread's call) and the naive formulas, for
// the gradient with respect to the preactivation and the weight's gradient
// (first_weight_grad_entry over every entry, as the CPU loop and the CUDA
// kernel call it).
template <typename T>
void test_first_backward(const char* type_name, double tolerance) {
  std::mt19937_64 rng(7);
  const int64_t n = 5, m = 7, samples_per_chunk = 2;  // three chunks, the last one short
  const int64_t chunks = (n + samples_per_chunk - 1) / samples_per_chunk;
  for (const Layout& L : layouts()) {
    const SlotLayout layout = L.view();
    const TableLayouts tables(L);
    const SlotLayout inline_layout = tables.inline_table.layout();
    const SlotLayout external_layout = tables.external_table.layout();
    const int64_t t = L.t, p = layout.num_pairs, slots = layout.slots();
    const int64_t sum_rows = hoderiv::jet::first_sum_rows(layout);
    const bool has_c = !L.collapsed.empty();
    expect(sum_rows == t + p + (has_c ? 1 : 0), L.name + ": first_sum_rows");
    for (const Activation& act : activations()) {
      const std::string what = std::string(type_name) + " " + act.name + " " + L.name + ": first backward";
      const std::vector<T> grad = random_vector<T>(rng, n * slots * m);
      const std::vector<T> pre = random_vector<T>(rng, n * m);
      const std::vector<T> weight_t = random_vector<T>(rng, t * m);  // W[unit, k] = weight_t[k * m + unit]
      const auto W = [&](int64_t unit, int64_t k) { return weight_t[k * m + unit]; };

      // naive: the formulas of the op's specification, per sample and unit
      std::vector<T> naive_grad_a(n * m), naive_grad_weight(m * t, T(0));
      for (int64_t unit = 0; unit < m; ++unit) {
        std::vector<T> tangent_sums(t, T(0)), pair_h(p, T(0));
        T collapsed_h = T(0);
        for (int64_t sample = 0; sample < n; ++sample) {
          T phi[4];
          hoderiv::math::derivatives<T, 3>(act.function, act.params, pre[sample * m + unit], phi);
          const T* g = grad.data() + sample * slots * m + unit;
          T ga = phi[1] * g[0];
          for (int64_t k = 0; k < t; ++k) {
            ga += phi[2] * g[(1 + k) * m] * W(unit, k);
            tangent_sums[k] += phi[1] * g[(1 + k) * m];
          }
          T third = T(0);
          for (int64_t s = 0; s < p; ++s) {
            third += g[(1 + t + s) * m] * W(unit, L.pair_i[s]) * W(unit, L.pair_j[s]);
            pair_h[s] += phi[2] * g[(1 + t + s) * m];
          }
          if (has_c) {
            T squares = T(0);
            for (int64_t k = 0; k < t; ++k) {
              if (L.in_collapsed(k)) squares += W(unit, k) * W(unit, k);
            }
            third += g[(1 + t + p) * m] * squares;
            collapsed_h += phi[2] * g[(1 + t + p) * m];
          }
          naive_grad_a[sample * m + unit] = ga + phi[3] * third;
        }
        for (int64_t k = 0; k < t; ++k) {
          T gw = tangent_sums[k];
          for (int64_t s = 0; s < p; ++s) {
            const T delta_i = L.pair_i[s] == k ? T(1) : T(0);
            const T delta_j = L.pair_j[s] == k ? T(1) : T(0);
            gw += pair_h[s] * (delta_i * W(unit, L.pair_j[s]) + delta_j * W(unit, L.pair_i[s]));
          }
          if (L.in_collapsed(k)) gw += T(2) * collapsed_h * W(unit, k);
          naive_grad_weight[unit * t + k] = gw;
        }
      }

      // rows: whole samples, chunked partial sums
      std::vector<T> collapsed_square(m);
      hoderiv::jet::collapsed_square_sum<T>(weight_t.data(), m, m, layout, collapsed_square.data());
      std::vector<T> rows_grad_a(n * m), rows_partial(chunks * sum_rows * m, T(0));
      for (int64_t sample = 0; sample < n; ++sample) {
        std::vector<T> phi(4 * m);
        hoderiv::jet::activation_derivatives<T, 3>(pre.data() + sample * m, nullptr, m, act.function, act.params,
                                                   phi.data());
        hoderiv::jet::first_backward_columns<T>(grad.data() + sample * slots * m, weight_t.data(),
                                                collapsed_square.data(), rows_grad_a.data() + sample * m,
                                                rows_partial.data() + (sample / samples_per_chunk) * sum_rows * m, m,
                                                m, phi.data(), layout);
      }
      // per unit: every (chunk, unit) pair, as the CUDA threads (which zero
      // their column of the sums themselves: start from garbage)
      std::vector<T> unit_grad_a(n * m), unit_partial(chunks * sum_rows * m, std::numeric_limits<T>::quiet_NaN());
      for (int64_t chunk = 0; chunk < chunks; ++chunk) {
        for (int64_t unit = 0; unit < m; ++unit) {
          const int64_t begin = chunk * samples_per_chunk, end = std::min(n, begin + samples_per_chunk);
          hoderiv::jet::first_backward_unit<T>(grad.data(), pre.data(), weight_t.data(), unit_grad_a.data(),
                                               unit_partial.data() + chunk * sum_rows * m, unit, begin, end, slots, m,
                                               inline_layout, act.function, act.params);
        }
      }
      // the weight gradient, every (k, unit) entry from each computation's sums
      const auto weight_grad = [&](const std::vector<T>& partial, const SlotLayout& entry_layout) {
        std::vector<T> gw(m * t);
        for (int64_t k = 0; k < t; ++k) {
          for (int64_t unit = 0; unit < m; ++unit) {
            gw[unit * t + k] = hoderiv::jet::first_weight_grad_entry<T>(partial.data(), chunks, sum_rows * m,
                                                                        weight_t.data(), m, k, unit, entry_layout);
          }
        }
        return gw;
      };
      expect_close(rows_grad_a, naive_grad_a, tolerance, what + ", rows: grad_a");
      expect_close(unit_grad_a, naive_grad_a, tolerance, what + ", per unit: grad_a");
      const std::vector<T> rows_gw = weight_grad(rows_partial, layout);
      const std::vector<T> unit_gw = weight_grad(unit_partial, inline_layout);
      expect_close(rows_gw, naive_grad_weight, tolerance, what + ", rows: grad_weight");
      expect_close(unit_gw, naive_grad_weight, tolerance, what + ", per unit: grad_weight");
      expect_equal(weight_grad(unit_partial, external_layout), unit_gw,
                   what + ", grad_weight with external index lists as inline");
      // The CPU's two steps: the chunks added up row by row (sum_chunks_columns,
      // width m), then the entries from the totals as one chunk: bitwise the
      // entries from all chunks.
      std::vector<T> totals(sum_rows * m);
      for (int64_t row = 0; row < sum_rows; ++row) {
        hoderiv::jet::sum_chunks_columns<T>(rows_partial.data() + row * m, chunks, sum_rows * m, m,
                                            totals.data() + row * m);
      }
      std::vector<T> totals_gw(m * t);
      for (int64_t k = 0; k < t; ++k) {
        for (int64_t unit = 0; unit < m; ++unit) {
          totals_gw[unit * t + k] = hoderiv::jet::first_weight_grad_entry<T>(totals.data(), 1, sum_rows * m,
                                                                             weight_t.data(), m, k, unit, layout);
        }
      }
      expect_equal(totals_gw, rows_gw, what + ", grad_weight from the totals equals from the chunks");
      // The CUDA kernels' two steps: groups of 2 chunks added per (group, row,
      // unit) with width 1, then the entries over the groups.
      const int64_t groups = (chunks + 1) / 2;
      std::vector<T> group_sums(groups * sum_rows * m);
      for (int64_t e = 0; e < groups * sum_rows * m; ++e) {
        const int64_t group = e / (sum_rows * m), within = e - group * sum_rows * m;
        const int64_t count = std::min<int64_t>(2, chunks - 2 * group);
        hoderiv::jet::sum_chunks_columns<T>(unit_partial.data() + 2 * group * sum_rows * m + within, count,
                                            sum_rows * m, 1, group_sums.data() + e);
      }
      std::vector<T> group_gw(m * t);
      for (int64_t k = 0; k < t; ++k) {
        for (int64_t unit = 0; unit < m; ++unit) {
          group_gw[unit * t + k] = hoderiv::jet::first_weight_grad_entry<T>(
              group_sums.data(), groups, sum_rows * m, weight_t.data(), m, k, unit, inline_layout);
        }
      }
      expect_close(group_gw, naive_grad_weight, tolerance, what + ", grad_weight from groups of chunks");
      // The same sums in the same order on both paths: the devices agree bitwise.
      expect_equal(unit_partial, rows_partial, what + ", per-unit partial sums equal the rows'");
      // No samples: zero gradient (the op's N = 0 case runs the entry with no chunks).
      expect(hoderiv::jet::first_weight_grad_entry<T>(rows_partial.data(), 0, sum_rows * m, weight_t.data(), m, 0, 0,
                                                      layout) == T(0) ||
                 t == 0,
             what + ", no chunks: 0");
    }
  }
}

// The index table: counts and inline lists copied, and long lists left to
// the external pointers.
void test_index_table() {
  std::vector<Index> pair_i(IndexTable::kPairCapacity + 1), pair_j(IndexTable::kPairCapacity + 1), collapsed(3);
  for (size_t s = 0; s < pair_i.size(); ++s) {
    pair_i[s] = static_cast<Index>(s % 7);
    pair_j[s] = static_cast<Index>((s * 3) % 7);
  }
  collapsed = {5, 0, 2};
  SlotLayout host;
  host.num_tangents = 7;
  host.num_pairs = IndexTable::kPairCapacity;  // exactly at capacity: inline
  host.num_collapsed = 3;
  host.pair_i = pair_i.data();
  host.pair_j = pair_j.data();
  host.collapsed = collapsed.data();
  expect(IndexTable::pairs_fit(host.num_pairs) && !IndexTable::pairs_fit(host.num_pairs + 1) &&
             IndexTable::collapsed_fits(IndexTable::kCollapsedCapacity) &&
             !IndexTable::collapsed_fits(IndexTable::kCollapsedCapacity + 1),
         "index table capacities");
  const IndexTable table = hoderiv::jet::index_table_of(host);
  const SlotLayout view = table.layout();
  bool same = view.num_tangents == 7 && view.num_pairs == host.num_pairs && view.num_collapsed == 3 &&
              view.pair_i == table.pair_i && view.collapsed == table.collapsed;
  for (int64_t s = 0; s < host.num_pairs; ++s) same &= view.pair_i[s] == pair_i[s] && view.pair_j[s] == pair_j[s];
  for (int64_t q = 0; q < 3; ++q) same &= view.collapsed[q] == collapsed[q];
  expect(same, "index table at capacity: lists inline");
  host.num_pairs = IndexTable::kPairCapacity + 1;
  IndexTable long_table = hoderiv::jet::index_table_of(host);
  long_table.pair_i_external = pair_i.data();
  long_table.pair_j_external = pair_j.data();
  const SlotLayout long_view = long_table.layout();
  expect(long_view.pair_i == pair_i.data() && long_view.pair_j == pair_j.data() &&
             long_view.collapsed == long_table.collapsed && long_view.num_pairs == host.num_pairs,
         "index table over capacity: the external pairs, the inline collapsed list");
}

}  // namespace

int main() {
  test_index_table();
  test_steps<float>("float", 2e-5);
  test_steps<double>("double", 1e-13);
  test_first_backward<float>("float", 2e-5);
  test_first_backward<double>("double", 1e-13);
  return hoderiv_test::report("jet_math");
}
