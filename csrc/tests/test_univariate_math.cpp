// C++ test of the univariate Taylor step (csrc/include/hoderiv/univariate_math.h),
// run by ctest. Needs no torch and no GPU.
//
// On random jets (t = 2 tangents, R = 3 directions), for every order K = 1..8
// and several functions:
//   * naive   -- phi(a + delta) composed directly: the powers delta^j by
//                repeated series products, y_k = sum_j s_j [delta^j]_k (not
//                Horner's rule), s_j = phi^(j)(a) / j! in long double;
//   * rows    -- forward_columns / backward_columns over a whole sample (width
//                m, one block), as the CPU kernels call them;
//   * columns -- forward_column / backward_column over every column c, as each
//                CUDA thread calls them, with a sample stride wider than the
//                jet (a narrowed view).
// Checked: rows against naive (forward), rows against columns (forward and
// backward, K <= 7 for the backward), the backward against central
// differences of the naive forward (the adjoint identity
// <grad, J v> = <J^T grad, v> for random v), and compose against two closed
// forms: exp(delta) by its own recurrence, and the identity.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "hoderiv/univariate_math.h"
#include "check.h"

using hoderiv::math::Function;
using hoderiv::math::FunctionParams;
using hoderiv::univariate::Layout;

namespace {

using hoderiv_test::expect_close;

struct Activation {
  const char* name;
  Function function;
  FunctionParams params;
};

// The naive forward of one column: jet[s] (S slots) with bias b.
template <int K>
std::vector<double> naive_forward(const Layout& layout, const std::vector<double>& jet, double bias,
                                  const Activation& act) {
  long double s[K + 1];
  hoderiv::math::taylor_coefficients<long double, K>(act.function, act.params,
                                                     static_cast<long double>(jet[0]) + bias, s);
  std::vector<double> out(layout.slots());
  out[0] = static_cast<double>(s[0]);
  for (int64_t k = 0; k < layout.num_tangents; ++k) out[1 + k] = static_cast<double>(s[1] * jet[1 + k]);
  for (int64_t r = 0; r < layout.num_directions; ++r) {
    const int64_t first = layout.direction_slot(r);
    long double delta[K + 1] = {0}, power[K + 1] = {0}, y[K + 1] = {0};
    for (int k = 1; k <= K; ++k) delta[k] = jet[first + k - 1];
    power[0] = 1;
    for (int j = 1; j <= K; ++j) {
      long double next[K + 1] = {0};  // power * delta: delta^j
      for (int k = 0; k <= K; ++k) {
        for (int i = 1; i <= k; ++i) next[k] += delta[i] * power[k - i];
      }
      for (int k = 0; k <= K; ++k) {
        power[k] = next[k];
        y[k] += s[j] * power[k];
      }
    }
    for (int k = 1; k <= K; ++k) out[first + k - 1] = static_cast<double>(y[k]);
  }
  return out;
}

template <int K>
void run_case(const Activation& act) {
  const std::string name = std::string(act.name) + " K=" + std::to_string(K);
  const Layout layout{2, 3, K};
  const int64_t n = 3, m = 5, S = layout.slots();
  const int64_t jet_sample_stride = (S + 2) * m;  // a narrowed view of a wider (N, S + 2, m) tensor
  std::mt19937_64 rng(7 + K);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> jet(n * jet_sample_stride), bias(m), grad(n * S * m);
  for (double& x : jet) x = 0.7 * normal(rng);
  for (double& x : bias) x = 0.5 * normal(rng);
  for (double& x : grad) x = normal(rng);

  constexpr int64_t kBlock = 8;  // m <= kBlock: one block per sample
  std::vector<double> rows_out(n * S * m), rows_grad(n * S * m);
  constexpr bool kBackward = K + 1 <= hoderiv::math::kMaxOrder;
  for (int64_t s = 0; s < n; ++s) {
    const double* row = jet.data() + s * jet_sample_stride;
    double taylor[K + 2][kBlock];
    hoderiv::univariate::taylor_columns<double, K + 1, kBlock>(row, bias.data(), m, act.function, act.params,
                                                                taylor);
    hoderiv::univariate::forward_columns<double, K, kBlock>(row, rows_out.data() + s * S * m, m, m, taylor, layout);
    if constexpr (kBackward) {
      hoderiv::univariate::backward_columns<double, K, kBlock>(grad.data() + s * S * m, row,
                                                               rows_grad.data() + s * S * m, m, m, taylor, layout);
    }
  }
  std::vector<double> col_out(n * S * m), col_grad(n * S * m);
  for (int64_t c = 0; c < n * m; ++c) {
    hoderiv::univariate::forward_column<double, K>(jet.data(), jet_sample_stride, bias.data(), col_out.data(), c, m,
                                                   layout, act.function, act.params);
    if constexpr (kBackward) {
      hoderiv::univariate::backward_column<double, K>(grad.data(), jet.data(), jet_sample_stride, bias.data(),
                                                      col_grad.data(), c, m, layout, act.function, act.params);
    }
  }
  for (size_t k = 0; k < rows_out.size(); ++k) expect_close(col_out[k], rows_out[k], 1e-14, name + ": columns out");
  if constexpr (kBackward) {
    for (size_t k = 0; k < rows_grad.size(); ++k) {
      expect_close(col_grad[k], rows_grad[k], 1e-14, name + ": columns grad_jet");
    }
  }

  for (int64_t s = 0; s < n; ++s) {
    for (int64_t u = 0; u < m; ++u) {
      std::vector<double> column(S), v(S);
      for (int64_t k = 0; k < S; ++k) column[k] = jet[s * jet_sample_stride + k * m + u];
      const std::vector<double> want = naive_forward<K>(layout, column, bias[u], act);
      for (int64_t k = 0; k < S; ++k) {
        expect_close(rows_out[(s * S + k) * m + u], want[k], 1e-13, name + ": rows against naive");
      }
      if constexpr (kBackward) {
        for (double& x : v) x = normal(rng);
        const double h = 1e-5;
        std::vector<double> plus(column), minus(column);
        for (int64_t k = 0; k < S; ++k) {
          plus[k] += h * v[k];
          minus[k] -= h * v[k];
        }
        const std::vector<double> fp = naive_forward<K>(layout, plus, bias[u], act);
        const std::vector<double> fm = naive_forward<K>(layout, minus, bias[u], act);
        double directional = 0, adjoint = 0;
        for (int64_t k = 0; k < S; ++k) {
          directional += grad[(s * S + k) * m + u] * (fp[k] - fm[k]) / (2 * h);
          adjoint += rows_grad[(s * S + k) * m + u] * v[k];
        }
        expect_close(adjoint, directional, 1e-6, name + ": backward against central differences");
      }
    }
  }
}

// compose against closed forms: exp(delta) = E with k E_k = sum_{j=1..k} j delta_j E_{k-j},
// and sum_j coef_j delta^j with coef = (0, 1, 0, ...) = delta.
template <int K>
void check_compose_closed_forms() {
  std::mt19937_64 rng(99 + K);
  std::normal_distribution<double> normal(0.0, 1.0);
  double delta[K + 1], exp_coef[K + 1], identity_coef[K + 1] = {0}, out[K + 1], want[K + 1];
  delta[0] = 123.0;  // not read
  for (int k = 1; k <= K; ++k) delta[k] = normal(rng);
  double inverse_factorial = 1;
  for (int j = 0; j <= K; ++j) {
    if (j > 0) inverse_factorial /= j;
    exp_coef[j] = inverse_factorial;
  }
  hoderiv::univariate::compose<double, K>(exp_coef, delta, out);
  want[0] = 1;
  for (int k = 1; k <= K; ++k) {
    double acc = 0;
    for (int j = 1; j <= k; ++j) acc += j * delta[j] * want[k - j];
    want[k] = acc / k;
  }
  for (int k = 0; k <= K; ++k) expect_close(out[k], want[k], 1e-13, "compose exp K=" + std::to_string(K));
  identity_coef[1] = 1;
  hoderiv::univariate::compose<double, K>(identity_coef, delta, out);
  expect_close(out[0], 0, 0, "compose identity K=" + std::to_string(K));
  for (int k = 1; k <= K; ++k) expect_close(out[k], delta[k], 0, "compose identity K=" + std::to_string(K));
}

template <int K>
void run_order(const std::vector<Activation>& activations) {
  check_compose_closed_forms<K>();
  for (const Activation& act : activations) run_case<K>(act);
  if constexpr (K < hoderiv::math::kMaxOrder) run_order<K + 1>(activations);
}

}  // namespace

int main() {
  const std::vector<Activation> activations = {{"identity", Function::kIdentity, {}},
                                               {"tanh", Function::kTanh, {}},
                                               {"sin", Function::kSin, {}},
                                               {"scaled_sin", Function::kScaledSin, {3.0, 0.0}},
                                               {"exp", Function::kExp, {}},
                                               {"softplus", Function::kSoftplus, {2.0, 20.0}},
                                               {"gelu", Function::kGeluErf, {}},
                                               {"silu", Function::kSiLU, {}},
                                               {"elu", Function::kELU, {0.7, 0.0}}};
  run_order<1>(activations);
  return hoderiv_test::report("univariate_math");
}
