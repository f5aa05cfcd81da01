// C++ test of the jet activation step (csrc/include/hoderiv/jet_math.h), run
// by ctest. Needs no torch and no GPU.
//
// Three computations of the same step are compared on random jets:
//   * naive   -- the formulas of jet_math.h's header comment, written out here
//                per sample, unit and slot (the independent reference);
//   * rows    -- the row functions over a whole sample (width m), as the CPU
//                kernels call them;
//   * columns -- forward_column / backward_column / first_forward_column over
//                every column c of the batch, as each CUDA thread calls them
//                (first_backward_unit over every (chunk, unit) for the first
//                layer's backward).
// The columns check is what tests the CUDA kernels' indexing on a machine
// without a GPU: the kernels are grid-stride loops around these functions.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "hoderiv/jet_math.h"

using hoderiv::jet::SlotLayout;
using hoderiv::math::Function;
using hoderiv::math::FunctionParams;

namespace {

int failures = 0;
int checks = 0;

template <typename T>
void expect_close(const std::vector<T>& got, const std::vector<T>& want, double tolerance, const std::string& what) {
  ++checks;
  if (got.size() != want.size()) {
    ++failures;
    std::fprintf(stderr, "FAIL: %s: %zu values, expected %zu\n", what.c_str(), got.size(), want.size());
    return;
  }
  for (size_t k = 0; k < got.size(); ++k) {
    const double g = static_cast<double>(got[k]), w = static_cast<double>(want[k]);
    if (!(std::fabs(g - w) <= tolerance * (1.0 + std::fabs(w)))) {
      ++failures;
      std::fprintf(stderr, "FAIL: %s: element %zu is %.17g, expected %.17g\n", what.c_str(), k, g, w);
      return;
    }
  }
}

struct Layout {
  std::string name;
  bool collapsed;
  std::vector<int64_t> pair_i, pair_j;
  SlotLayout view(int64_t d) const {
    return {d, collapsed ? 1 : static_cast<int64_t>(pair_i.size()), collapsed, pair_i.data(), pair_j.data()};
  }
};

std::vector<Layout> layouts(int64_t d) {
  Layout full{"full", false, {}, {}};
  for (int64_t i = 0; i < d; ++i) {
    for (int64_t j = i; j < d; ++j) {
      full.pair_i.push_back(i);
      full.pair_j.push_back(j);
    }
  }
  return {{"laplacian", true, {}, {}}, full, {"rows", false, {2, 0, 1, 2}, {2, 2, 0, 1}}};
}

struct Activation {
  const char* name;
  Function function;
  FunctionParams params;
};

std::vector<Activation> activations() {
  return {{"tanh", Function::kTanh, {}},
          {"sin", Function::kSin, {}},
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

// Naive forward of one sample and unit. t(i) reads tangent i, q(s) second-order slot s.
template <typename T, typename Tangent, typename Second>
void naive_forward(const Activation& act, T a, Tangent t, Second q, const SlotLayout& layout, T* out, int64_t m) {
  T phi[3];
  hoderiv::math::derivatives<T, 2>(act.function, act.params, a, phi);
  const int64_t d = layout.num_inputs;
  out[0] = phi[0];
  for (int64_t i = 0; i < d; ++i) out[(1 + i) * m] = phi[1] * t(i);
  if (layout.collapsed) {
    T sum = T(0);
    for (int64_t i = 0; i < d; ++i) sum += t(i) * t(i);
    out[(1 + d) * m] = phi[1] * q(0) + phi[2] * sum;
    return;
  }
  for (int64_t s = 0; s < layout.num_second; ++s) {
    out[(1 + d + s) * m] = phi[1] * q(s) + phi[2] * t(layout.pair_i[s]) * t(layout.pair_j[s]);
  }
}

// Naive backward of one sample and unit: g(k) reads the output gradient's slot k.
template <typename T>
void naive_backward(const Activation& act, T a, const T* in, const T* g, const SlotLayout& layout, T* grad_in,
                    int64_t m) {
  T phi[4];
  hoderiv::math::derivatives<T, 3>(act.function, act.params, a, phi);
  const int64_t d = layout.num_inputs;
  const auto t = [&](int64_t i) { return in[(1 + i) * m]; };
  const auto gt = [&](int64_t i) { return g[(1 + i) * m]; };
  T grad_a = phi[1] * g[0];
  for (int64_t k = 0; k < d; ++k) {
    grad_a += phi[2] * gt(k) * t(k);
    grad_in[(1 + k) * m] = phi[1] * gt(k);
  }
  const int64_t s_count = layout.collapsed ? 1 : layout.num_second;
  for (int64_t s = 0; s < s_count; ++s) {
    const T gq = g[(1 + d + s) * m];
    grad_in[(1 + d + s) * m] = phi[1] * gq;
    grad_a += phi[2] * gq * in[(1 + d + s) * m];
    if (layout.collapsed) {
      for (int64_t k = 0; k < d; ++k) {
        grad_in[(1 + k) * m] += T(2) * phi[2] * gq * t(k);
        grad_a += phi[3] * gq * t(k) * t(k);
      }
    } else {
      const int64_t i = layout.pair_i[s], j = layout.pair_j[s];
      grad_in[(1 + i) * m] += phi[2] * gq * t(j);
      grad_in[(1 + j) * m] += phi[2] * gq * t(i);
      grad_a += phi[3] * gq * t(i) * t(j);
    }
  }
  grad_in[0] = grad_a;
}

template <typename T>
void test_steps(const char* type_name, double tolerance) {
  std::mt19937_64 rng(20261122);
  const int64_t n = 3, d = 3, m = 7;  // odd width: the vector loops' remainders run
  for (const Layout& layout_owner : layouts(d)) {
    const SlotLayout layout = layout_owner.view(d);
    const int64_t slots = 1 + d + layout.num_second;
    for (const Activation& act : activations()) {
      for (bool with_bias : {false, true}) {
        const std::string what = std::string(type_name) + " " + act.name + " " + layout_owner.name +
                                 (with_bias ? " bias" : " no bias");
        const std::vector<T> in = random_vector<T>(rng, n * slots * m);
        const std::vector<T> grad = random_vector<T>(rng, n * slots * m);
        const std::vector<T> bias_values = random_vector<T>(rng, m);
        const T* bias = with_bias ? bias_values.data() : nullptr;
        const auto bias_of = [&](int64_t unit) { return with_bias ? bias_values[unit] : T(0); };

        // ----- forward -----
        std::vector<T> naive(in.size()), rows(in.size()), columns(in.size());
        for (int64_t sample = 0; sample < n; ++sample) {
          for (int64_t unit = 0; unit < m; ++unit) {
            const T* column = in.data() + sample * slots * m + unit;
            naive_forward<T>(
                act, column[0] + bias_of(unit), [&](int64_t i) { return column[(1 + i) * m]; },
                [&](int64_t s) { return column[(1 + d + s) * m]; }, layout,
                naive.data() + sample * slots * m + unit, m);
          }
          std::vector<T> phi(3 * m);
          const int64_t offset = sample * slots * m;
          hoderiv::jet::activation_derivatives<T, 2>(in.data() + offset, bias, m, act.function, act.params,
                                                     phi.data());
          hoderiv::jet::forward_columns<T>(in.data() + offset + m, m, in.data() + offset + (1 + d) * m,
                                           rows.data() + offset, m, m, phi.data(), layout);
        }
        for (int64_t c = 0; c < n * m; ++c) {
          hoderiv::jet::forward_column<T>(in.data(), bias, columns.data(), c, slots, m, layout, act.function,
                                          act.params);
        }
        expect_close(rows, naive, tolerance, what + ": forward, rows against naive");
        expect_close(columns, naive, tolerance, what + ": forward, columns against naive");

        // ----- backward -----
        std::vector<T> naive_grad(in.size()), rows_grad(in.size()), columns_grad(in.size());
        for (int64_t sample = 0; sample < n; ++sample) {
          const int64_t offset = sample * slots * m;
          for (int64_t unit = 0; unit < m; ++unit) {
            naive_backward<T>(act, in[offset + unit] + bias_of(unit), in.data() + offset + unit,
                              grad.data() + offset + unit, layout, naive_grad.data() + offset + unit, m);
          }
          std::vector<T> phi(4 * m);
          hoderiv::jet::activation_derivatives<T, 3>(in.data() + offset, bias, m, act.function, act.params,
                                                     phi.data());
          hoderiv::jet::backward_columns<T>(grad.data() + offset, in.data() + offset, rows_grad.data() + offset, m,
                                            m, phi.data(), layout);
        }
        for (int64_t c = 0; c < n * m; ++c) {
          hoderiv::jet::backward_column<T>(grad.data(), in.data(), bias, columns_grad.data(), c, slots, m, layout,
                                           act.function, act.params);
        }
        expect_close(rows_grad, naive_grad, tolerance, what + ": backward, rows against naive");
        expect_close(columns_grad, naive_grad, tolerance, what + ": backward, columns against naive");
      }

      // ----- first layer: tangents from the weight, no second-order input -----
      const std::string what = std::string(type_name) + " " + act.name + " " + layout_owner.name + ": first layer";
      const std::vector<T> pre = random_vector<T>(rng, n * m);
      const std::vector<T> weight_t = random_vector<T>(rng, d * m);  // (d, m)
      std::vector<T> naive(n * slots * m), rows(n * slots * m), columns(n * slots * m);
      for (int64_t sample = 0; sample < n; ++sample) {
        for (int64_t unit = 0; unit < m; ++unit) {
          naive_forward<T>(
              act, pre[sample * m + unit], [&](int64_t i) { return weight_t[i * m + unit]; },
              [](int64_t) { return T(0); }, layout, naive.data() + sample * slots * m + unit, m);
        }
        std::vector<T> phi(3 * m);
        hoderiv::jet::activation_derivatives<T, 2>(pre.data() + sample * m, nullptr, m, act.function, act.params,
                                                   phi.data());
        hoderiv::jet::forward_columns<T>(weight_t.data(), m, nullptr, rows.data() + sample * slots * m, m, m,
                                         phi.data(), layout);
      }
      for (int64_t c = 0; c < n * m; ++c) {
        hoderiv::jet::first_forward_column<T>(pre.data(), weight_t.data(), columns.data(), c, slots, m, layout,
                                              act.function, act.params);
      }
      expect_close(rows, naive, tolerance, what + ", rows against naive");
      expect_close(columns, naive, tolerance, what + ", columns against naive");
    }
  }
}

// First layer's backward: rows (the CPU kernel's call, chunked partial sums),
// per unit over chunks (the CUDA thread's call) and the naive formulas, for
// the gradient with respect to the preactivation and the weight's two sums.
template <typename T>
void test_first_backward(const char* type_name, double tolerance) {
  std::mt19937_64 rng(7);
  const int64_t n = 5, d = 3, m = 7, samples_per_chunk = 2;  // three chunks, the last one short
  const int64_t chunks = (n + samples_per_chunk - 1) / samples_per_chunk;
  for (const Layout& layout_owner : layouts(d)) {
    const SlotLayout layout = layout_owner.view(d);
    const int64_t slots = 1 + d + layout.num_second, rows_of_sums = d + layout.num_second;
    for (const Activation& act : activations()) {
      const std::string what = std::string(type_name) + " " + act.name + " " + layout_owner.name + ": first backward";
      const std::vector<T> grad = random_vector<T>(rng, n * slots * m);
      const std::vector<T> pre = random_vector<T>(rng, n * m);
      const std::vector<T> weight_t = random_vector<T>(rng, d * m);
      std::vector<T> pair_products(layout.num_second * m);
      for (int64_t unit = 0; unit < m; ++unit) {
        if (layout.collapsed) {
          T sum = T(0);
          for (int64_t i = 0; i < d; ++i) sum += weight_t[i * m + unit] * weight_t[i * m + unit];
          pair_products[unit] = sum;
        } else {
          for (int64_t s = 0; s < layout.num_second; ++s) {
            pair_products[s * m + unit] = weight_t[layout.pair_i[s] * m + unit] * weight_t[layout.pair_j[s] * m + unit];
          }
        }
      }
      // naive: per sample and unit, the formulas of first_backward_columns' comment
      std::vector<T> naive_grad_a(n * m), naive_sums(rows_of_sums * m, T(0));
      for (int64_t sample = 0; sample < n; ++sample) {
        for (int64_t unit = 0; unit < m; ++unit) {
          T phi[4];
          hoderiv::math::derivatives<T, 3>(act.function, act.params, pre[sample * m + unit], phi);
          const T* g = grad.data() + sample * slots * m + unit;
          T ga = phi[1] * g[0];
          for (int64_t i = 0; i < d; ++i) {
            ga += phi[2] * g[(1 + i) * m] * weight_t[i * m + unit];
            naive_sums[i * m + unit] += phi[1] * g[(1 + i) * m];
          }
          for (int64_t s = 0; s < layout.num_second; ++s) {
            ga += phi[3] * g[(1 + d + s) * m] * pair_products[s * m + unit];
            naive_sums[(d + s) * m + unit] += phi[2] * g[(1 + d + s) * m];
          }
          naive_grad_a[sample * m + unit] = ga;
        }
      }
      // rows: whole samples, chunked partial sums, summed over the chunks afterwards
      std::vector<T> rows_grad_a(n * m), rows_partial(chunks * rows_of_sums * m, T(0));
      for (int64_t sample = 0; sample < n; ++sample) {
        std::vector<T> phi(4 * m);
        hoderiv::jet::activation_derivatives<T, 3>(pre.data() + sample * m, nullptr, m, act.function, act.params,
                                                   phi.data());
        hoderiv::jet::first_backward_columns<T>(grad.data() + sample * slots * m, weight_t.data(),
                                                pair_products.data(), rows_grad_a.data() + sample * m,
                                                rows_partial.data() + (sample / samples_per_chunk) * rows_of_sums * m,
                                                m, m, phi.data(), layout);
      }
      // per unit: every (chunk, unit) pair, as the CUDA threads
      std::vector<T> unit_grad_a(n * m), unit_partial(chunks * rows_of_sums * m, T(0));
      for (int64_t chunk = 0; chunk < chunks; ++chunk) {
        for (int64_t unit = 0; unit < m; ++unit) {
          const int64_t begin = chunk * samples_per_chunk, end = std::min(n, begin + samples_per_chunk);
          hoderiv::jet::first_backward_unit<T>(grad.data(), pre.data(), weight_t.data(), pair_products.data(),
                                               unit_grad_a.data(), unit_partial.data() + chunk * rows_of_sums * m,
                                               unit, begin, end, slots, m, layout, act.function, act.params);
        }
      }
      const auto chunk_sum = [&](const std::vector<T>& partial) {
        std::vector<T> total(rows_of_sums * m, T(0));
        for (int64_t chunk = 0; chunk < chunks; ++chunk) {
          for (int64_t k = 0; k < rows_of_sums * m; ++k) total[k] += partial[chunk * rows_of_sums * m + k];
        }
        return total;
      };
      expect_close(rows_grad_a, naive_grad_a, tolerance, what + ", rows: grad_a");
      expect_close(unit_grad_a, naive_grad_a, tolerance, what + ", per unit: grad_a");
      expect_close(chunk_sum(rows_partial), naive_sums, tolerance, what + ", rows: sums");
      expect_close(chunk_sum(unit_partial), naive_sums, tolerance, what + ", per unit: sums");
    }
  }
}

}  // namespace

int main() {
  test_steps<float>("float", 2e-5);
  test_steps<double>("double", 1e-13);
  test_first_backward<float>("float", 2e-5);
  test_first_backward<double>("double", 1e-13);
  std::printf("%d checks, %d failures\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
