// C++ test of the shared derivative math (csrc/include/hoderiv/derivative_math.h),
// run by ctest. Needs no torch: the header is plain C++ on the host.
//
// Independent references, so the recurrences are not checked against
// themselves:
//   * order 0 against closed forms written directly with <cmath> in long double;
//   * order k against a central finite difference of order k-1 computed in
//     long double (64-bit mantissa): by induction every order is checked;
//   * stability: float and double results finite for |x| <= 1e4 wherever the
//     true value is finite;
//   * kink conventions (relu, leaky_relu, elu at 0; softplus at threshold);
//   * softplus with a large beta: finite where the true derivative is;
//   * polynomials: the shared table and Horner evaluation against closed
//     forms, one element at a time (a CUDA thread) and in blocks (the CPU
//     loops) bitwise equal.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "hoderiv/derivative_math.h"
#include "check.h"

using hoderiv::math::Function;
using hoderiv::math::FunctionParams;

namespace {

using hoderiv_test::expect;

struct Case {
  const char* name;
  Function function;
  FunctionParams params;
  std::function<long double(long double)> value;  // closed form of order 0
  std::vector<long double> kinks;                 // points where FD is skipped
};

long double sigmoid_ld(long double x) { return 1.0L / (1.0L + std::exp(-x)); }

std::vector<Case> cases() {
  const long double sqrt_2_over_pi = std::sqrt(2.0L / std::acos(-1.0L));
  return {
      {"identity", Function::kIdentity, {}, [](long double x) { return x; }, {}},
      {"tanh", Function::kTanh, {}, [](long double x) { return std::tanh(x); }, {}},
      {"sigmoid", Function::kSigmoid, {}, sigmoid_ld, {}},
      {"softplus", Function::kSoftplus, {2.0, 20.0},
       [](long double x) { return x * 2.0L > 20.0L ? x : std::log1p(std::exp(2.0L * x)) / 2.0L; }, {10.0L}},
      {"sin", Function::kSin, {}, [](long double x) { return std::sin(x); }, {}},
      {"cos", Function::kCos, {}, [](long double x) { return std::cos(x); }, {}},
      {"scaled_sin", Function::kScaledSin, {3.0, 0.0}, [](long double x) { return std::sin(3.0L * x); }, {}},
      {"scaled_sin -0.5", Function::kScaledSin, {-0.5, 0.0}, [](long double x) { return std::sin(-0.5L * x); }, {}},
      {"exp", Function::kExp, {}, [](long double x) { return std::exp(x); }, {}},
      {"silu", Function::kSiLU, {}, [](long double x) { return x * sigmoid_ld(x); }, {}},
      {"gelu", Function::kGeluErf, {},
       [](long double x) { return 0.5L * x * std::erfc(-x / std::sqrt(2.0L)); }, {}},
      {"gelu_tanh", Function::kGeluTanh, {},
       [sqrt_2_over_pi](long double x) {
         return 0.5L * x * (1.0L + std::tanh(sqrt_2_over_pi * (x + 0.044715L * x * x * x)));
       },
       {}},
      {"relu", Function::kReLU, {}, [](long double x) { return x > 0 ? x : 0.0L; }, {0.0L}},
      {"leaky_relu", Function::kLeakyReLU, {0.2, 0.0}, [](long double x) { return x > 0 ? x : 0.2L * x; },
       {0.0L}},
      {"elu", Function::kELU, {0.7, 0.0}, [](long double x) { return x > 0 ? x : 0.7L * std::expm1(x); },
       {0.0L}},
  };
}

constexpr int K = hoderiv::math::kMaxOrder;

void test_values_and_finite_differences() {
  const std::vector<long double> points = {-7.5L, -3.0L, -1.25L, -0.3L, 0.0L, 0.4L, 1.0L, 2.5L, 6.0L};
  for (const Case& c : cases()) {
    for (long double x : points) {
      double d[K + 1];
      hoderiv::math::derivatives<double, K>(c.function, c.params, static_cast<double>(x), d);
      const long double expected = c.value(x);
      expect(std::fabs(d[0] - expected) <= 1e-14L * (1.0L + std::fabs(expected)),
             std::string(c.name) + " value at " + std::to_string(static_cast<double>(x)));
      bool near_kink = false;
      for (long double kink : c.kinks) near_kink |= std::fabs(x - kink) < 1e-3L;
      if (near_kink) continue;
      const long double h = 1e-5L;
      long double plus[K + 1], minus[K + 1];
      hoderiv::math::derivatives<long double, K>(c.function, c.params, x + h, plus);
      hoderiv::math::derivatives<long double, K>(c.function, c.params, x - h, minus);
      for (int k = 1; k <= K; ++k) {
        const long double fd = (plus[k - 1] - minus[k - 1]) / (2.0L * h);
        // O(h^2) truncation (scaled by the next derivative) plus rounding.
        const long double tolerance = 1e-8L * (1.0L + std::fabs(fd)) * (1.0L + std::fabs(d[std::min(k + 1, K)]));
        expect(std::fabs(d[k] - fd) <= tolerance,
               std::string(c.name) + " order " + std::to_string(k) + " at " + std::to_string(static_cast<double>(x)) +
                   ": got " + std::to_string(d[k]) + ", finite difference " + std::to_string(static_cast<double>(fd)));
      }
    }
  }
}

template <typename T>
void test_stable(const char* type_name) {
  const std::vector<T> points = {T(-1e4), T(-500), T(-80), T(-30), T(-10), T(10), T(30), T(80), T(500), T(1e4)};
  for (const Case& c : cases()) {
    if (c.function == Function::kExp) continue;  // e^x overflows where the true value does
    for (T x : points) {
      T d[K + 1];
      hoderiv::math::derivatives<T, K>(c.function, c.params, x, d);
      for (int k = 0; k <= 4; ++k) {
        // gelu's higher derivatives grow like x^k * pdf(x): finite; sin/cos bounded;
        // polynomial-like functions (identity, relu...) are finite.
        expect(std::isfinite(static_cast<double>(d[k])),
               std::string(c.name) + " " + type_name + " order " + std::to_string(k) + " finite at " +
                   std::to_string(static_cast<double>(x)));
      }
    }
  }
  // Tails keep relative accuracy: tanh'(20) = sech^2(20) ~ 1.7e-17, not 0.
  T d[K + 1];
  hoderiv::math::derivatives<T, K>(Function::kTanh, {}, T(20), d);
  const long double expected = 1.0L / (std::cosh(20.0L) * std::cosh(20.0L));
  expect(std::fabs(d[1] - expected) <= 1e-5L * expected, std::string("tanh'(20) relative accuracy ") + type_name);
  hoderiv::math::derivatives<T, K>(Function::kSigmoid, {}, T(-30), d);
  expect(std::fabs(d[0] - sigmoid_ld(-30.0L)) <= 1e-5L * sigmoid_ld(-30.0L),
         std::string("sigmoid(-30) relative accuracy ") + type_name);
}

// Distance from `value` to the long-double `truth`, in units of T's spacing at truth.
template <typename T>
long double ulps(T value, long double truth) {
  const T rounded = static_cast<T>(truth);
  const long double spacing =
      static_cast<long double>(std::nextafter(rounded, std::numeric_limits<T>::infinity())) - rounded;
  return std::fabs(static_cast<long double>(value) - truth) / spacing;
}

// normal_cdf (the GELU's CDF, branch-free in double): within `ulp_bound` ulp of
// long double's erfc at the same rounded argument u = -x / sqrt(2) (the
// function's own rounding of u is not its approximation's error) over
// [-40, 40], dense where the method switches (|u| = 1/2) and where the
// results turn subnormal; subnormal results within 2 subnormal spacings;
// the limits and NaN.
template <typename T>
void test_normal_cdf(const char* type_name, long double ulp_bound) {
  using hoderiv::math::normal_cdf;
  const std::string name = std::string("normal_cdf<") + type_name + "> ";
  const long double denorm = std::numeric_limits<T>::denorm_min();
  const long double smallest_normal = std::numeric_limits<T>::min();
  long double worst = 0, worst_at = 0;
  std::vector<long double> points;
  for (long double x = -40; x <= 40; x += 1.3e-3L) points.push_back(x);
  for (long double x = 0.70710678118654752440L - 1e-4L; x <= 0.70710678118654752440L + 1e-4L; x += 1e-7L) {
    points.push_back(x);
    points.push_back(-x);
  }
  for (const long double point : points) {
    const T x = static_cast<T>(point);
    const double u = -static_cast<double>(x) * 0.70710678118654752440;  // as normal_cdf rounds it
    const long double truth = 0.5L * std::erfc(static_cast<long double>(u));
    const T got = normal_cdf(x);
    if (truth < smallest_normal) {
      expect(std::fabs(static_cast<long double>(got) - truth) <= 2 * denorm,
             name + "subnormal result at x = " + std::to_string(static_cast<double>(x)));
      continue;
    }
    const long double error = ulps(got, truth);
    if (error > worst) {
      worst = error;
      worst_at = x;
    }
  }
  expect(worst <= ulp_bound, name + "worst error " + std::to_string(static_cast<double>(worst)) + " ulp at x = " +
                                 std::to_string(static_cast<double>(worst_at)));
  const T infinity = std::numeric_limits<T>::infinity();
  expect(normal_cdf(infinity) == T(1) && normal_cdf(-infinity) == T(0) && normal_cdf(T(0)) == T(0.5),
         name + "Phi(+inf) = 1, Phi(-inf) = 0, Phi(0) = 1/2");
  expect(std::isnan(normal_cdf(std::numeric_limits<T>::quiet_NaN())), name + "NaN in, NaN out");
}

// exp_nonpositive (the host's branch-free exp): exp(x) and 1 - exp(x) within
// 2 ulp of long-double references over the whole range, subnormal results
// rounded once, and the special values.
template <typename T>
void test_exp_nonpositive(const char* type_name) {
  using hoderiv::math::exp_nonpositive;
  const std::string name = std::string("exp_nonpositive<") + type_name + "> ";
  const long double lowest = std::log(static_cast<long double>(std::numeric_limits<T>::min()));
  long double worst_exp = 0, worst_complement = 0;
  for (long double x = 0; x > lowest; x -= (x > -2 ? 1e-3L : 7e-2L)) {
    const T xt = static_cast<T>(x);
    const auto parts = exp_nonpositive(xt);
    worst_exp = std::max(worst_exp, ulps(parts.exp, std::exp(static_cast<long double>(xt))));
    if (xt < T(0))
      worst_complement = std::max(worst_complement, ulps(parts.one_minus_exp, -std::expm1(static_cast<long double>(xt))));
  }
  expect(worst_exp <= 2, name + "exp within 2 ulp (worst " + std::to_string(static_cast<double>(worst_exp)) + ")");
  expect(worst_complement <= 2,
         name + "1 - exp within 2 ulp (worst " + std::to_string(static_cast<double>(worst_complement)) + ")");
  // A subnormal result: within one subnormal spacing of the truth.
  const T subnormal_at = static_cast<T>(lowest - 5);
  const long double denorm = std::numeric_limits<T>::denorm_min();
  expect(std::fabs(exp_nonpositive(subnormal_at).exp - std::exp(static_cast<long double>(subnormal_at))) <= denorm,
         name + "subnormal result");
  const auto zero = exp_nonpositive(T(0));
  expect(zero.exp == T(1) && zero.one_minus_exp == T(0), name + "exp(0) = 1 exactly");
  const auto tiny = exp_nonpositive(T(-1e-30));
  expect(tiny.one_minus_exp == T(1e-30), name + "1 - exp(-1e-30) = 1e-30 (no cancellation)");
  const auto minus_infinity = exp_nonpositive(-std::numeric_limits<T>::infinity());
  expect(minus_infinity.exp == T(0) && minus_infinity.one_minus_exp == T(1), name + "exp(-inf) = 0");
  const auto huge = exp_nonpositive(T(-1e30));
  expect(huge.exp == T(0) && huge.one_minus_exp == T(1), name + "exp(-1e30) = 0");
  const auto nan = exp_nonpositive(std::numeric_limits<T>::quiet_NaN());
  expect(std::isnan(nan.exp) && std::isnan(nan.one_minus_exp), name + "NaN in, NaN out");
  // tanh and sech^2 on both sides of |u| = 0.55 (2|u| = 1.1, where a library expm1/exp switch would sit).
  for (long double u : {-0.56L, -0.55L, -0.549L, -1e-5L, 1e-5L, 0.3L, 0.549L, 0.55L, 0.56L, 3.0L}) {
    const auto parts = hoderiv::math::tanh_parts(static_cast<T>(u));
    const long double ut = static_cast<T>(u);
    expect(ulps(parts.tanh, std::tanh(ut)) <= 4 && ulps(parts.sech_squared, 1 / (std::cosh(ut) * std::cosh(ut))) <= 4,
           name + "tanh_parts within 4 ulp at " + std::to_string(static_cast<double>(u)));
  }
}

// sin_cos (the branch-free sin and cos of the sin/cos activations): against
// long double's sinl/cosl on random points of |x| <= 1e6, float correctly
// rounded, double within 1.5 ulp and 1.2e-16 absolute; near the zeros (x the
// double nearest k pi/2) an absolute error below 1e-20 relative to k; NaN for
// NaN, the infinities and |x| > 2^50.
template <typename T>
void test_sin_cos(const char* type_name, long double ulp_bound) {
  const std::string name = std::string("sin_cos ") + type_name + ": ";
  uint64_t state = 12345;
  long double worst = 0, worst_absolute = 0;
  for (int i = 0; i < 400000; ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    const double unit = static_cast<double>(state >> 11) / 9007199254740992.0;  // [0, 1)
    const double scale = i % 3 == 0 ? 4.0 : (i % 3 == 1 ? 200.0 : 1e6);
    const T x = static_cast<T>((2 * unit - 1) * scale);
    T s, c;
    hoderiv::math::sin_and_cos(x, s, c);
    const long double xl = x, true_sin = std::sin(xl), true_cos = std::cos(xl);
    worst = std::max({worst, ulps(s, true_sin), ulps(c, true_cos)});
    worst_absolute = std::max({worst_absolute, std::fabs(s - true_sin), std::fabs(c - true_cos)});
  }
  expect(worst <= ulp_bound, name + "worst error " + std::to_string(static_cast<double>(worst)) + " ulp");
  expect(worst_absolute <= (sizeof(T) == 4 ? 6e-8L : 1.2e-16L),
         name + "worst absolute error " + std::to_string(static_cast<double>(worst_absolute)));
  const long double half_pi = std::acos(-1.0L) / 2;
  for (long k = 1; k < 100000; k += 13) {
    const T x = static_cast<T>(k * half_pi);
    T s, c;
    hoderiv::math::sin_and_cos(x, s, c);
    const long double xl = x;
    const long double error = std::max(std::fabs(s - std::sin(xl)), std::fabs(c - std::cos(xl)));
    if (!(error <= (sizeof(T) == 4 ? 6e-8L : 1.2e-16L))) {
      expect(false, name + "near k pi/2, k = " + std::to_string(k));
      break;
    }
  }
  for (const T bad : {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                      -std::numeric_limits<T>::infinity(), T(1e16)}) {
    T s, c;
    hoderiv::math::sin_and_cos(bad, s, c);
    expect(std::isnan(s) && std::isnan(c), name + "NaN for NaN, the infinities and |x| > 2^50");
  }
  T s0, c0;
  hoderiv::math::sin_and_cos(T(0), s0, c0);
  expect(s0 == T(0) && c0 == T(1), name + "sin 0 = 0, cos 0 = 1 exactly");
}

// log1p_unit_interval (the host's branch-free log1p on [0, 1], softplus'
// value): within 1 ulp of long double's log1p over the whole interval, on
// both sides of the switch at 1/2, for subnormal inputs, and NaN in, NaN out.
// The softplus value built from it: within 2 ulp over a wide range of z.
template <typename T>
void test_log1p_unit_interval(const char* type_name) {
  const std::string name = std::string("log1p_unit_interval ") + type_name + ": ";
  long double worst = 0;
  T worst_at = 0;
  const auto check = [&](T e) {
    const long double error = ulps(hoderiv::math::log1p_unit_interval(e), std::log1p(static_cast<long double>(e)));
    if (error > worst) worst = error, worst_at = e;
  };
  for (int i = 0; i <= 200000; ++i) check(static_cast<T>(i) / T(200000));
  for (T e = T(1); e > T(0); e *= T(0.5)) check(e * T(0.7)), check(e);  // down to the subnormals (exact halving)
  for (T e : {T(0.5), std::nextafter(T(0.5), T(0)), std::nextafter(T(0.5), T(1)), T(1), std::nextafter(T(1), T(0)),
              std::numeric_limits<T>::denorm_min(), std::numeric_limits<T>::min()}) {
    check(e);
  }
  expect(worst <= 1, name + "worst error " + std::to_string(static_cast<double>(worst)) + " ulp at " +
                         std::to_string(static_cast<double>(worst_at)));
  expect(hoderiv::math::log1p_unit_interval(T(0)) == T(0), name + "log1p(0) = 0 exactly");
  expect(std::isnan(hoderiv::math::log1p_unit_interval(std::numeric_limits<T>::quiet_NaN())), name + "NaN in, NaN out");

  long double worst_softplus = 0;
  T worst_z = 0;
  for (int i = -4000; i <= 4000; ++i) {
    const T z = static_cast<T>(i) / T(100);  // -40 .. 40
    T d[3];
    hoderiv::math::derivatives<T, 2>(Function::kSoftplus, {1.0, 1e30}, z, d);
    const long double zl = z;
    const long double truth = (zl > 0 ? zl : 0.0L) + std::log1p(std::exp(-std::fabs(zl)));
    const long double error = ulps(d[0], truth);
    if (error > worst_softplus) worst_softplus = error, worst_z = z;
  }
  expect(worst_softplus <= 2, std::string("softplus value ") + type_name + ": worst error " +
                                  std::to_string(static_cast<double>(worst_softplus)) + " ulp at z = " +
                                  std::to_string(static_cast<double>(worst_z)));
}

void test_kinks() {
  double d[K + 1];
  hoderiv::math::derivatives<double, K>(Function::kReLU, {}, 0.0, d);
  expect(d[0] == 0.0 && d[1] == 0.0 && d[2] == 0.0, "relu at 0: 0, 0, 0");
  hoderiv::math::derivatives<double, K>(Function::kLeakyReLU, {0.2, 0.0}, 0.0, d);
  expect(d[1] == 0.2 && d[2] == 0.0, "leaky_relu at 0: slope, 0");
  hoderiv::math::derivatives<double, K>(Function::kELU, {0.5, 0.0}, 0.0, d);
  expect(d[0] == 0.0 && d[1] == 0.5 && d[2] == 0.0 && d[3] == 0.0, "elu at 0: 0, alpha, 0, 0");
  hoderiv::math::derivatives<double, K>(Function::kSoftplus, {1.0, 20.0}, 20.0, d);
  expect(std::fabs(d[1] - 0.9999999979388464) < 1e-15 && d[2] == 0.0, "softplus at threshold: sigmoid, 0");
  hoderiv::math::derivatives<double, K>(Function::kSoftplus, {1.0, 20.0}, 25.0, d);
  expect(d[0] == 25.0 && d[1] == 1.0 && d[2] == 0.0, "softplus above threshold is linear");
}

// Softplus(beta) for a large beta: y^(k)(x) = beta^(k-1) sigmoid^(k-1)(beta x).
// beta^7 = 1e42 overflows float; at z = beta x = -10 the product with
// sigmoid^(7)(z) ~ 4.5e-5 is ~4.5e37 and must come out finite. The reference
// forms it in long double.
template <typename T>
void test_softplus_large_beta(const char* type_name, long double tolerance) {
  const double beta = 1e6, threshold = 20.0;
  for (double x_value : {-1e-5, -1.5e-5, 1.2e-5, 2e-6, 0.0}) {
    const T x = static_cast<T>(x_value);
    T d[K + 1];
    hoderiv::math::derivatives<T, K>(Function::kSoftplus, {beta, threshold}, x, d);
    const T z = static_cast<T>(beta) * x;  // as the kernel rounds it
    long double sigmoid[K + 1];
    hoderiv::math::derivatives<long double, K>(Function::kSigmoid, {}, static_cast<long double>(z), sigmoid);
    for (int k = 1; k <= K; ++k) {
      const long double want = std::pow(static_cast<long double>(beta), k - 1) * sigmoid[k - 1];
      const std::string where = std::string("softplus beta 1e6 ") + type_name + " order " + std::to_string(k) +
                                " at " + std::to_string(x_value);
      if (std::fabs(want) > static_cast<long double>(std::numeric_limits<T>::max())) {
        expect(std::isinf(d[k]), where + ": overflows as the true value does");  // near z = 0 at order 8 in float
        continue;
      }
      expect(std::isfinite(static_cast<double>(d[k])), where + ": finite");
      expect(std::fabs(d[k] - want) <= tolerance * std::fabs(want) + 1e-30L,
             where + ": got " + std::to_string(static_cast<double>(d[k])) + ", expected " +
                 std::to_string(static_cast<double>(want)));
    }
  }
}

// The polynomial derivative table, as both devices build it.
template <typename T>
std::vector<T> polynomial_table(const T* coefficients, int64_t num, int max_order) {
  std::vector<T> table((max_order + 1) * num);
  for (int64_t e = 0; e < static_cast<int64_t>(table.size()); ++e) {
    hoderiv::math::polynomial_table_entry<T>(coefficients, num, table.data(), e);
  }
  return table;
}

template <typename T>
T polynomial_at(const std::vector<T>& table, int64_t num, int k, T x) {
  T value;
  hoderiv::math::polynomial_horner<T>(table.data(), num, k, &x, 1, &value);
  return value;
}

void test_polynomial() {
  // p(x) = 3 + 2x - x^2 + 0.5 x^4
  const double coefficients[] = {3.0, 2.0, -1.0, 0.0, 0.5};
  const std::vector<double> table = polynomial_table(coefficients, 5, 6);
  for (double x : {-2.0, -0.5, 0.0, 1.5, 3.0}) {
    const double expected[] = {3 + 2 * x - x * x + 0.5 * x * x * x * x, 2 - 2 * x + 2 * x * x * x, -2 + 6 * x * x,
                               12 * x, 12.0, 0.0, 0.0};
    for (int k = 0; k <= 6; ++k) {
      const double got = polynomial_at(table, 5, k, x);
      expect(std::fabs(got - expected[k]) <= 1e-12 * (1 + std::fabs(expected[k])),
             "polynomial order " + std::to_string(k) + " at " + std::to_string(x));
    }
  }
  // The table's entries: b_{k,j} = a_j j!/(j-k)!, 0 for j < k.
  expect(table[2 * 5 + 4] == 0.5 * 12 && table[3 * 5 + 4] == 0.5 * 24 && table[4 * 5 + 4] == 0.5 * 24 &&
             table[4 * 5 + 3] == 0.0 && table[1 * 5 + 2] == -2.0,
         "polynomial table entries");
  // A block of points (the CPU loops) and the same points one at a time (a
  // CUDA thread each): one function, bitwise equal results.
  const int64_t count = 37;
  std::vector<double> points(count), block(count), single(count);
  for (int64_t i = 0; i < count; ++i) points[i] = -3.0 + 0.17 * static_cast<double>(i);
  for (int k = 0; k <= 6; ++k) {
    hoderiv::math::polynomial_horner<double>(table.data(), 5, k, points.data(), count, block.data());
    for (int64_t i = 0; i < count; ++i) single[i] = polynomial_at(table, 5, k, points[i]);
    expect(std::memcmp(block.data(), single.data(), sizeof(double) * count) == 0,
           "polynomial block and per-element evaluation bitwise equal, order " + std::to_string(k));
  }
  // A long float polynomial: j!/(j-8)! overflows float for j ~ 1e5, the
  // coefficients b = a_j j (j-1) ... do not, and zero coefficients stay 0.
  const int64_t num = 100001;
  std::vector<float> long_coefficients(num, 0.0f);
  long_coefficients[0] = 1.0f;
  long_coefficients[num - 1] = 1e-35f;
  const std::vector<float> long_table = polynomial_table(long_coefficients.data(), num, K);
  bool all_finite = true;
  for (float b : long_table) all_finite &= std::isfinite(b);
  expect(all_finite, "long float polynomial: every table entry finite (no inf, no 0 * inf)");
  const long double want = 1e-35L * std::pow(1e5L, 8);  // ~ a_j j^8 for j = 1e5
  expect(std::fabs(long_table[K * num + num - 1] - want) <= 1e-3L * want, "long float polynomial: b_{8,j}");
}

// The per-element functions the CUDA elementwise kernels run (one call per
// thread), over every element of a small batch, against the math they wrap:
// planes of n elements, the orders asked for and no others written, and the
// weighted sums of the backward with every (m, shift).
void test_elements() {
  const int64_t n = 5;
  const double x[n] = {-2.0, -0.4, 0.0, 0.7, 3.1};
  const Function function = Function::kTanh;
  const FunctionParams params{};
  const double sentinel = -12345.0;
  for (int order = 0; order <= K; ++order) {
    std::vector<double> out((K + 1) * n, sentinel);
    for (int64_t i = 0; i < n; ++i) {
      hoderiv::math::derivative_planes_at<double, K>(function, params, x, out.data(), n, i, order);
    }
    for (int64_t i = 0; i < n; ++i) {
      double d[K + 1];
      hoderiv::math::derivatives<double, K>(function, params, x[i], d);
      for (int k = 0; k <= K; ++k) {
        const double want = k <= order ? d[k] : sentinel;
        expect(out[k * n + i] == want, "derivative_planes_at order " + std::to_string(order) + " plane " +
                                           std::to_string(k) + " element " + std::to_string(i));
      }
    }
  }
  // p(x) = 3 + 2x - x^2 + 0.5 x^4
  const double coefficients[] = {3.0, 2.0, -1.0, 0.0, 0.5};
  const std::vector<double> table = polynomial_table(coefficients, 5, K);
  for (int m = 0; m <= 3; ++m) {
    for (int shift = 0; m + shift <= K; ++shift) {
      std::vector<double> weights((m + 1) * n);
      for (size_t k = 0; k < weights.size(); ++k) weights[k] = 0.25 * static_cast<double>(k % 7) - 0.6;
      for (int64_t i = 0; i < n; ++i) {
        double d[K + 1];
        hoderiv::math::derivatives<double, K>(function, params, x[i], d);
        double want = 0.0, want_polynomial = 0.0;
        for (int k = 0; k <= m; ++k) {
          want += weights[k * n + i] * d[k + shift];
          want_polynomial += weights[k * n + i] * polynomial_at(table, 5, k + shift, x[i]);
        }
        const std::string where = " m " + std::to_string(m) + " shift " + std::to_string(shift) + " element " +
                                  std::to_string(i);
        const double got =
            hoderiv::math::weighted_derivatives_at<double, K>(function, params, x, weights.data(), n, i, m, shift);
        expect(std::fabs(got - want) <= 1e-14 * (1 + std::fabs(want)), "weighted_derivatives_at" + where);
        const double got_polynomial =
            hoderiv::math::weighted_polynomial_at<double>(table.data(), 5, x, weights.data(), n, i, m, shift);
        expect(std::fabs(got_polynomial - want_polynomial) <= 1e-14 * (1 + std::fabs(want_polynomial)),
               "weighted_polynomial_at" + where);
      }
    }
  }
  for (int order = 0; order <= 6; ++order) {
    std::vector<double> out(7 * n, sentinel);
    for (int64_t i = 0; i < n; ++i) {
      hoderiv::math::polynomial_planes_at<double>(table.data(), 5, x, out.data(), n, i, order);
    }
    for (int64_t i = 0; i < n; ++i) {
      for (int k = 0; k <= 6; ++k) {
        const double want = k <= order ? polynomial_at(table, 5, k, x[i]) : sentinel;
        expect(out[k * n + i] == want, "polynomial_planes_at order " + std::to_string(order) + " plane " +
                                           std::to_string(k) + " element " + std::to_string(i));
      }
    }
  }
}

}  // namespace

int main() {
  test_values_and_finite_differences();
  test_stable<float>("float");
  test_stable<double>("double");
  test_exp_nonpositive<float>("float");
  test_exp_nonpositive<double>("double");
  test_normal_cdf<float>("float", 1.0L);
  test_normal_cdf<double>("double", 5.0L);
  test_sin_cos<float>("float", 0.5L);
  test_sin_cos<double>("double", 1.5L);
  test_log1p_unit_interval<float>("float");
  test_log1p_unit_interval<double>("double");
  test_kinks();
  test_softplus_large_beta<float>("float", 1e-4L);
  test_softplus_large_beta<double>("double", 1e-12L);
  test_polynomial();
  test_elements();
  return hoderiv_test::report("derivative_math");
}
