// C++ test of the bi-Laplacian's extra-slot step (csrc/include/hoderiv/bilaplacian_math.h),
// run by ctest. Needs no torch and no GPU.
//
// On random jets, for several (t, dims) and functions:
//   * naive   -- the forward formulas of the header comment written out per
//                column with the full symmetric matrix A (the reference);
//   * rows    -- forward_columns / backward_columns over a whole sample (width m,
//                one block), as the CPU kernels call them;
//   * columns -- forward_column / backward_column over every column c, as each
//                CUDA thread calls them, with the layout taken from a DimsTable
//                (the CUDA kernels' by-value argument) and a sample stride wider
//                than the jet (a narrowed view).
// The backward is checked against central differences of the naive forward
// (the adjoint identity <grad, J v> = <J^T grad, v> for random v), and rows
// against columns.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "hoderiv/bilaplacian_math.h"
#include "check.h"

using hoderiv::bilaplacian::DimsTable;
using hoderiv::bilaplacian::ExtraLayout;
using hoderiv::jet::Index;
using hoderiv::math::Function;
using hoderiv::math::FunctionParams;

namespace {

using hoderiv_test::expect_close;

struct Case {
  int64_t t;
  std::vector<Index> dims;
  ExtraLayout view() const { return {t, static_cast<int64_t>(dims.size()), dims.data()}; }
};

// The naive forward of one column: jet[s] (S slots), extra[k] (p + 1), bias b.
std::vector<double> naive_forward(const Case& cs, const std::vector<double>& jet, const std::vector<double>& extra,
                                  double bias, Function function, const FunctionParams& params) {
  const ExtraLayout layout = cs.view();
  const int64_t p = layout.num_dims;
  double phi[5];
  hoderiv::math::derivatives<double, 4>(function, params, jet[0] + bias, phi);
  std::vector<double> g(p), a(p * p);
  for (int64_t i = 0; i < p; ++i) {
    g[i] = jet[1 + cs.dims[i]];
    for (int64_t j = 0; j < p; ++j) a[i * p + j] = jet[layout.pair_slot(i, j)];
  }
  double G = 0, L = 0, Q = 0, F = 0, P = 0;
  std::vector<double> H(p, 0.0);
  for (int64_t i = 0; i < p; ++i) {
    G += g[i] * g[i];
    L += a[i * p + i];
    P += g[i] * extra[i];
    for (int64_t j = 0; j < p; ++j) {
      H[i] += a[i * p + j] * g[j];
      F += a[i * p + j] * a[i * p + j];
    }
  }
  for (int64_t i = 0; i < p; ++i) Q += g[i] * H[i];
  std::vector<double> out(p + 1);
  for (int64_t i = 0; i < p; ++i) {
    out[i] = phi[3] * g[i] * G + 2 * phi[2] * H[i] + phi[2] * g[i] * L + phi[1] * extra[i];
  }
  out[p] = phi[4] * G * G + 2 * phi[3] * L * G + 4 * phi[3] * Q + phi[2] * (2 * F + L * L + 4 * P) + phi[1] * extra[p];
  return out;
}

void run_case(const Case& cs, Function function, const FunctionParams& params, const std::string& name) {
  const ExtraLayout layout = cs.view();
  const DimsTable table = hoderiv::bilaplacian::dims_table_of(layout);
  const ExtraLayout table_layout = table.layout();
  const int64_t n = 3, m = 5, p = layout.num_dims, S = layout.jet_slots(), E = layout.extra_slots();
  const int64_t jet_sample_stride = (S + 2) * m;  // a narrowed view of a wider (N, S + 2, m) tensor
  std::mt19937_64 rng(42 + S);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> jet(n * jet_sample_stride), extra(n * E * m), bias(m), grad(n * E * m);
  for (double& x : jet) x = normal(rng);
  for (double& x : extra) x = normal(rng);
  for (double& x : bias) x = normal(rng);
  for (double& x : grad) x = normal(rng);

  // rows: width m per sample.
  std::vector<double> rows_out(n * E * m), rows_grad_jet(n * S * m), rows_grad_extra(n * E * m);
  std::vector<double> phi(6 * m);
  constexpr int64_t kBlock = 8;  // m <= kBlock: one block per sample
  for (int64_t s = 0; s < n; ++s) {
    const double* j = jet.data() + s * jet_sample_stride;
    hoderiv::jet::activation_derivatives<double, 4>(j, bias.data(), m, function, params, phi.data());
    hoderiv::bilaplacian::forward_columns<double, kBlock>(j, extra.data() + s * E * m, rows_out.data() + s * E * m,
                                                          m, m, phi.data(), layout);
    hoderiv::jet::activation_derivatives<double, 5>(j, bias.data(), m, function, params, phi.data());
    hoderiv::bilaplacian::backward_columns<double, kBlock>(grad.data() + s * E * m, j, extra.data() + s * E * m,
                                                           rows_grad_jet.data() + s * S * m,
                                                           rows_grad_extra.data() + s * E * m, m, m, phi.data(),
                                                           layout);
  }
  // columns: width 1, the DimsTable's layout.
  std::vector<double> col_out(n * E * m), col_grad_jet(n * S * m), col_grad_extra(n * E * m);
  for (int64_t c = 0; c < n * m; ++c) {
    hoderiv::bilaplacian::forward_column<double>(jet.data(), jet_sample_stride, bias.data(), extra.data(), E * m,
                                                 col_out.data(), c, m, table_layout, function, params);
    hoderiv::bilaplacian::backward_column<double>(grad.data(), jet.data(), jet_sample_stride, bias.data(),
                                                  extra.data(), E * m, col_grad_jet.data(), col_grad_extra.data(), c,
                                                  m, table_layout, function, params);
  }
  for (size_t k = 0; k < rows_out.size(); ++k) expect_close(col_out[k], rows_out[k], 1e-14, name + ": columns out");
  for (size_t k = 0; k < rows_grad_jet.size(); ++k) {
    expect_close(col_grad_jet[k], rows_grad_jet[k], 1e-14, name + ": columns grad_jet");
  }
  for (size_t k = 0; k < rows_grad_extra.size(); ++k) {
    expect_close(col_grad_extra[k], rows_grad_extra[k], 1e-14, name + ": columns grad_extra");
  }

  // naive forward and the adjoint identity, per column.
  for (int64_t s = 0; s < n; ++s) {
    for (int64_t u = 0; u < m; ++u) {
      std::vector<double> cj(S), ce(E), vj(S), ve(E);
      for (int64_t k = 0; k < S; ++k) cj[k] = jet[s * jet_sample_stride + k * m + u];
      for (int64_t k = 0; k < E; ++k) ce[k] = extra[(s * E + k) * m + u];
      const std::vector<double> want = naive_forward(cs, cj, ce, bias[u], function, params);
      for (int64_t k = 0; k < E; ++k) {
        expect_close(rows_out[(s * E + k) * m + u], want[k], 1e-13, name + ": rows against naive");
      }
      for (double& x : vj) x = normal(rng);
      for (double& x : ve) x = normal(rng);
      const double h = 1e-5;
      std::vector<double> jp(cj), jm(cj), ep(ce), em(ce);
      for (int64_t k = 0; k < S; ++k) { jp[k] += h * vj[k]; jm[k] -= h * vj[k]; }
      for (int64_t k = 0; k < E; ++k) { ep[k] += h * ve[k]; em[k] -= h * ve[k]; }
      const std::vector<double> fp = naive_forward(cs, jp, ep, bias[u], function, params);
      const std::vector<double> fm = naive_forward(cs, jm, em, bias[u], function, params);
      double directional = 0, adjoint = 0;
      for (int64_t k = 0; k < E; ++k) directional += grad[(s * E + k) * m + u] * (fp[k] - fm[k]) / (2 * h);
      for (int64_t k = 0; k < S; ++k) adjoint += rows_grad_jet[(s * S + k) * m + u] * vj[k];
      for (int64_t k = 0; k < E; ++k) adjoint += rows_grad_extra[(s * E + k) * m + u] * ve[k];
      expect_close(adjoint, directional, 1e-6, name + ": backward against central differences");
    }
  }
  (void)p;
}

}  // namespace

int main() {
  const std::vector<Case> cases = {{3, {0, 1, 2}}, {3, {2, 0}}, {2, {1}}, {5, {4, 1, 3}}};
  struct Activation {
    const char* name;
    Function function;
    FunctionParams params;
  };
  const std::vector<Activation> activations = {{"tanh", Function::kTanh, {}},
                                               {"sin", Function::kSin, {}},
                                               {"scaled_sin", Function::kScaledSin, {3.0, 0.0}},
                                               {"softplus", Function::kSoftplus, {2.0, 20.0}},
                                               {"gelu", Function::kGeluErf, {}}};
  for (const Case& cs : cases) {
    for (const Activation& act : activations) {
      std::string name = std::string(act.name) + " t=" + std::to_string(cs.t) + " dims=";
      for (Index d : cs.dims) name += std::to_string(d);
      run_case(cs, act.function, act.params, name);
    }
  }
  return hoderiv_test::report("bilaplacian_math");
}
