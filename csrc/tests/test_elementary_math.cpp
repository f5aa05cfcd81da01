// C++ test of the recurrences of the elementary functions of the table
// (log, log1p, expm1, sqrt, rsqrt, reciprocal, square, pow, erf, atan, tan,
// sinh, cosh, abs in csrc/include/hoderiv/derivative_math.h), run by ctest.
// Needs no torch.
//
// Every order 0..8 in double against a closed form evaluated in long double
// that does not share the kernel's recurrence:
//   log, log1p, reciprocal, sqrt, rsqrt, pow: falling factorials times powl;
//   expm1, sinh, cosh: the library's functions;
//   erf: physicists' Hermite polynomials as integer coefficient arrays;
//   atan: (k-1)! (1 + x^2)^(-k/2) sin(k (pi/2 - atan x)) (trigonometric form);
//   tan: P_k(tan x) with P_0 = t, P_{k+1} = P_k' (1 + t^2) (integer coefficients).
// Each function on its own domain, tails included (atan and log at 1e8,
// erf at 10 where erf' ~ 1e-44, pow where x^p under- or overflows but lower
// orders do not), with a relative tolerance; where a derivative has a
// polynomial zero (erf, atan for |x| < 10) the tolerance is relative to the
// sum of the absolute values of its terms. Exact checks at the points where
// torch's autograd conventions decide (pow with integer exponents at 0,
// abs at 0, the signed infinities of sqrt, rsqrt, log, reciprocal at +-0),
// and float results finite over each domain.
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "hoderiv/derivative_math.h"
#include "check.h"

using hoderiv::math::Function;
using hoderiv::math::FunctionParams;

namespace {

using hoderiv_test::expect;
using hoderiv_test::show;

constexpr int K = hoderiv::math::kMaxOrder;
using Reference = std::function<void(long double, long double (&)[K + 1], long double (&)[K + 1])>;

struct Case {
  std::string name;
  Function function;
  FunctionParams params;
  std::vector<long double> points;
  // Fills the derivatives d_k (k = 0..K) and, for each, a magnitude the
  // error is measured against (|d_k| where no term cancels).
  Reference reference;
};

long double falling(long double a, int k) {
  long double product = 1.0L;
  for (int i = 0; i < k; ++i) product *= a - i;
  return product;
}

long double factorial(int k) { return falling(static_cast<long double>(k), k); }

// d_k = falling(a, k) * scale * x^(a - k): powers and their derivatives.
Reference power_reference(long double a, long double offset = 0.0L) {
  return [a, offset](long double x, long double (&d)[K + 1], long double (&m)[K + 1]) {
    for (int k = 0; k <= K; ++k) {
      const long double f = falling(a, k);
      d[k] = f == 0.0L ? 0.0L : f * std::pow(x + offset, a - k);
      m[k] = std::fabs(d[k]);
    }
  };
}

// d_k of log(x + offset): log at 0, (-1)^(k-1) (k-1)! (x + offset)^(-k).
Reference log_reference(long double offset) {
  return [offset](long double x, long double (&d)[K + 1], long double (&m)[K + 1]) {
    d[0] = offset == 1.0L ? std::log1p(x) : std::log(x + offset);
    for (int k = 1; k <= K; ++k) d[k] = (k % 2 ? 1.0L : -1.0L) * factorial(k - 1) * std::pow(x + offset, -k);
    for (int k = 0; k <= K; ++k) m[k] = std::fabs(d[k]);
  };
}

// Polynomials as ascending integer coefficients (exact in long double for these degrees).
using Poly = std::vector<long double>;

long double evaluate(const Poly& p, long double x) {
  long double value = 0.0L;
  for (size_t j = p.size(); j-- > 0;) value = value * x + p[j];
  return value;
}

long double evaluate_absolute(const Poly& p, long double x) {
  long double value = 0.0L;
  for (size_t j = p.size(); j-- > 0;) value = value * std::fabs(x) + std::fabs(p[j]);
  return value;
}

// H_0 .. H_n: H_{n+1} = 2x H_n - 2n H_{n-1}.
std::vector<Poly> hermite(int n) {
  std::vector<Poly> h = {{1.0L}, {0.0L, 2.0L}};
  for (int k = 1; k < n; ++k) {
    Poly next(k + 2, 0.0L);
    for (size_t j = 0; j < h[k].size(); ++j) next[j + 1] += 2.0L * h[k][j];
    for (size_t j = 0; j < h[k - 1].size(); ++j) next[j] -= 2.0L * k * h[k - 1][j];
    h.push_back(next);
  }
  return h;
}

// erf^(k)(x) = (2 / sqrt(pi)) (-1)^(k-1) H_{k-1}(x) exp(-x^2).
void erf_reference(long double x, long double (&d)[K + 1], long double (&m)[K + 1]) {
  const std::vector<Poly> h = hermite(K);
  const long double density = 2.0L / std::sqrt(std::acos(-1.0L)) * std::exp(-x * x);
  d[0] = std::erf(x);
  m[0] = std::fabs(d[0]);
  for (int k = 1; k <= K; ++k) {
    d[k] = (k % 2 ? 1.0L : -1.0L) * evaluate(h[k - 1], x) * density;
    m[k] = evaluate_absolute(h[k - 1], x) * density;
  }
}

// atan^(k)(x) = (-1)^(k-1) (k-1)! Im (x - i)^(-k) = (-1)^(k-1) (k-1)! q^(-k/2) sin(k atan2(1, x)),
// q = 1 + x^2: arg (x - i)^(-k) = k atan2(1, x), evaluated by the library's trigonometry.
void atan_reference(long double x, long double (&d)[K + 1], long double (&m)[K + 1]) {
  d[0] = std::atan(x);
  m[0] = std::fabs(d[0]);
  // At |x|: atan2(1, -|x|) = pi - small would lose the small angle to pi's rounding. atan is odd,
  // so atan^(k)(-x) = (-1)^(k+1) atan^(k)(x).
  const long double angle = std::atan2(1.0L, std::fabs(x));
  const long double q = 1.0L + x * x;
  for (int k = 1; k <= K; ++k) {
    const long double envelope = factorial(k - 1) * std::pow(q, -0.5L * k);
    const long double parity = x < 0 && k % 2 == 0 ? -1.0L : 1.0L;
    d[k] = parity * (k % 2 ? 1.0L : -1.0L) * envelope * std::sin(k * angle);
    // For |x| >= 10, k angle < pi: no zero nearby, so the error is measured relative to d_k itself.
    m[k] = std::fabs(x) >= 10.0L ? std::fabs(d[k]) : envelope;
  }
}

// tan^(k)(x) = P_k(tan x), P_0 = t, P_{k+1} = P_k' (1 + t^2): non-negative coefficients.
void tan_reference(long double x, long double (&d)[K + 1], long double (&m)[K + 1]) {
  const long double t = std::tan(x);
  Poly p = {0.0L, 1.0L};
  for (int k = 0; k <= K; ++k) {
    d[k] = evaluate(p, t);
    m[k] = evaluate_absolute(p, t);
    Poly derivative(p.size() + 1, 0.0L);
    for (size_t j = 1; j < p.size(); ++j) {
      derivative[j - 1] += j * p[j];
      derivative[j + 1] += j * p[j];
    }
    p = derivative;
  }
}

Reference cycle_reference(bool sinh_first) {
  return [sinh_first](long double x, long double (&d)[K + 1], long double (&m)[K + 1]) {
    for (int k = 0; k <= K; ++k) {
      d[k] = ((k % 2 == 0) == sinh_first) ? std::sinh(x) : std::cosh(x);
      m[k] = std::fabs(d[k]);
    }
  };
}

void expm1_reference(long double x, long double (&d)[K + 1], long double (&m)[K + 1]) {
  d[0] = std::expm1(x);
  for (int k = 1; k <= K; ++k) d[k] = std::exp(x);
  for (int k = 0; k <= K; ++k) m[k] = std::fabs(d[k]);
}

std::vector<Case> cases() {
  const std::vector<long double> positive = {1e-6L, 1e-3L, 0.3L, 1.0L, 2.5L, 40.0L, 1e4L, 1e8L};
  const std::vector<long double> nonzero = {-1e4L, -7.0L, -2.0L, -0.3L, 0.3L, 1.0L, 2.5L, 1e3L};
  const std::vector<long double> everywhere = {-30.0L, -7.5L, -2.0L, -0.3L, 0.0L, 0.4L, 1.0L, 2.5L, 6.0L, 30.0L};
  std::vector<Case> list = {
      {"log", Function::kLog, {}, positive, log_reference(0.0L)},
      {"log1p", Function::kLog1p, {}, {-0.999L, -0.9L, -0.3L, 0.0L, 1e-9L, 0.5L, 3.0L, 1e5L, 1e8L},
       log_reference(1.0L)},
      {"expm1", Function::kExpm1, {}, {-30.0L, -1.0L, -1e-8L, 0.0L, 1e-8L, 0.7L, 5.0L, 40.0L}, expm1_reference},
      {"sqrt", Function::kSqrt, {}, positive, power_reference(0.5L)},
      {"rsqrt", Function::kRsqrt, {}, positive, power_reference(-0.5L)},
      {"reciprocal", Function::kReciprocal, {}, nonzero, power_reference(-1.0L)},
      {"square", Function::kSquare, {}, everywhere, power_reference(2.0L)},
      {"erf", Function::kErf, {}, {-6.0L, -2.0L, -0.5L, 0.0L, 0.3L, 0.82L, 1.5L, 4.0L, 10.0L}, erf_reference},
      {"atan", Function::kAtan, {}, {-1e8L, -30.0L, -2.0L, -1.0L, -0.4L, 0.0L, 0.3L, 1.0L, 3.0L, 10.0L, 1e4L, 1e8L},
       atan_reference},
      {"tan", Function::kTan, {}, {-1.5L, -1.0L, -0.4L, 0.0L, 0.2L, 0.9L, 1.4L, 1.57L, 4.0L}, tan_reference},
      {"sinh", Function::kSinh, {}, everywhere, cycle_reference(true)},
      {"cosh", Function::kCosh, {}, everywhere, cycle_reference(false)},
  };
  // pow: integer exponents everywhere (0 and the tails where x^p itself under- or overflows
  // but the lower-order derivatives are finite), other exponents on x > 0.
  const std::vector<long double> integer_points = {-3.0L, -0.5L, 0.0L, 1e-3L, 0.7L, 2.0L, 1e-200L, 1e100L};
  for (double p : {0.0, 1.0, 2.0, 3.0, 4.0, 7.0}) {
    list.push_back({"pow " + std::to_string(p), Function::kPow, {p, 0.0}, integer_points,
                    power_reference(static_cast<long double>(p))});
  }
  for (double p : {-2.0, -1.0}) {
    list.push_back({"pow " + std::to_string(p), Function::kPow, {p, 0.0}, nonzero,
                    power_reference(static_cast<long double>(p))});
  }
  for (double p : {0.5, 2.5, -1.5, 0.3, 11.25}) {
    list.push_back({"pow " + std::to_string(p), Function::kPow, {p, 0.0}, positive,
                    power_reference(static_cast<long double>(p))});
  }
  return list;
}

void test_against_references() {
  for (const Case& c : cases()) {
    for (long double point : c.points) {
      const double x = static_cast<double>(point);  // the reference at the very point the kernel sees
      long double want[K + 1], magnitude[K + 1];
      c.reference(x, want, magnitude);
      double got[K + 1];
      hoderiv::math::derivatives<double, K>(c.function, c.params, x, got);
      for (int k = 0; k <= K; ++k) {
        const std::string where = c.name + " order " + std::to_string(k) + " at " + show(x) + ": got " +
                                  show(got[k]) + ", want " + show(static_cast<double>(want[k]));
        const bool representable = std::fabs(want[k]) <= 1.7e308L && magnitude[k] <= 1.7e308L;
        if (!representable) {  // the true value overflows double: the kernel must say inf, not NaN
          expect(std::isinf(got[k]) && (got[k] > 0) == (want[k] > 0), where);
          continue;
        }
        // double's eps, times the recurrence's depth (an ulp or so per step) with room.
        const long double tolerance = 64.0L * 2.2e-16L * magnitude[k] + 1e-300L;
        expect(std::fabs(got[k] - want[k]) <= tolerance, where);
      }
    }
  }
}

// Equal, NaN to NaN; the sign is compared for infinities and where -0 is wanted (torch's sqrt(-0)).
bool same(double got, double want) {
  if (std::isnan(want)) return std::isnan(got);
  return got == want && (std::signbit(got) == std::signbit(want) || (want == 0.0 && !std::signbit(want)));
}

// The values torch's autograd gives (nested torch.autograd.grad), exactly, signs of zeros and
// infinities included.
void expect_exactly(const std::string& name, Function function, FunctionParams params, double x,
                    const std::vector<double>& want) {
  double got[K + 1];
  hoderiv::math::derivatives<double, K>(function, params, x, got);
  for (size_t k = 0; k < want.size(); ++k) {
    expect(same(got[k], want[k]),
           name + " at " + show(x) + " order " + std::to_string(k) + ": got " + show(got[k]) + ", want " + show(want[k]));
  }
}

void test_torch_conventions() {
  const double inf = INFINITY, nan = NAN;
  expect_exactly("pow 2", Function::kPow, {2.0, 0.0}, 0.0, {0, 0, 2, 0, 0, 0, 0, 0, 0});
  expect_exactly("pow 3", Function::kPow, {3.0, 0.0}, 0.0, {0, 0, 0, 6, 0, 0, 0, 0, 0});
  expect_exactly("pow 0", Function::kPow, {0.0, 0.0}, 0.0, {1, 0, 0, 0, 0});
  expect_exactly("pow 0", Function::kPow, {0.0, 0.0}, -3.0, {1, 0, 0, 0, 0});
  expect_exactly("pow 1", Function::kPow, {1.0, 0.0}, 0.0, {0, 1, 0, 0, 0});
  expect_exactly("pow 2 large", Function::kPow, {2.0, 0.0}, 1e200, {inf, 2e200, 2, 0, 0, 0});
  expect_exactly("pow -2", Function::kPow, {-2.0, 0.0}, 0.0, {inf, -inf, inf, -inf, inf});
  expect_exactly("pow -1", Function::kPow, {-1.0, 0.0}, 0.0, {inf, -inf, inf, -inf, inf});
  expect_exactly("pow 0.5", Function::kPow, {0.5, 0.0}, 0.0, {0, inf, -inf, inf, -inf});
  expect_exactly("pow 1.5", Function::kPow, {1.5, 0.0}, 0.0, {0, 0, inf, -inf, inf});
  expect_exactly("pow 1.5", Function::kPow, {1.5, 0.0}, -2.0, {nan, nan, nan, nan, nan});
  expect_exactly("sqrt", Function::kSqrt, {}, 0.0, {0, inf, -inf, inf, -inf, inf});
  expect_exactly("sqrt", Function::kSqrt, {}, -0.0, {-0.0, -inf, inf, -inf, inf, -inf});
  expect_exactly("sqrt", Function::kSqrt, {}, -2.0, {nan, nan, nan, nan, nan});
  expect_exactly("rsqrt", Function::kRsqrt, {}, 0.0, {inf, -inf, inf, -inf, inf});
  expect_exactly("rsqrt", Function::kRsqrt, {}, -0.0, {-inf, inf, -inf, inf, -inf});
  expect_exactly("log", Function::kLog, {}, 0.0, {-inf, inf, -inf, inf, -inf});
  expect_exactly("log", Function::kLog, {}, -0.0, {-inf, -inf, -inf, -inf, -inf});
  expect_exactly("log", Function::kLog, {}, -2.0, {nan, -0.5, -0.25, -0.25, -0.375, -0.75});
  expect_exactly("log1p", Function::kLog1p, {}, -2.0, {nan, -1, -1, -2, -6, -24});
  expect_exactly("reciprocal", Function::kReciprocal, {}, 0.0, {inf, -inf, inf, -inf, inf});
  expect_exactly("reciprocal", Function::kReciprocal, {}, -0.0, {-inf, -inf, -inf, -inf, -inf});
  expect_exactly("abs", Function::kAbs, {}, 0.0, {0, 0, 0, 0, 0, 0, 0, 0, 0});
  expect_exactly("abs", Function::kAbs, {}, -2.0, {2, -1, 0, 0, 0});
  expect_exactly("abs", Function::kAbs, {}, 3.0, {3, 1, 0, 0, 0});
  expect_exactly("square", Function::kSquare, {}, -3.0, {9, -6, 2, 0, 0, 0, 0, 0, 0});
  expect_exactly("atan", Function::kAtan, {}, 0.0, {0, 1, 0, -2, 0, 24, 0, -720, 0});
  expect_exactly("tan", Function::kTan, {}, 0.0, {0, 1, 0, 2, 0, 16, 0, 272, 0});
}

// float and double finite over each function's domain wherever the true value is (no 0 * inf, no
// overflow of an intermediate).
template <typename T>
void test_finite(const char* type_name) {
  struct Domain {
    const char* name;
    Function function;
    FunctionParams params;
    std::vector<T> points;
  };
  const std::vector<T> wide = {T(-1e4), T(-500), T(-30), T(-1), T(1), T(30), T(500), T(1e4)};
  const std::vector<T> positive = {T(1e-3), T(1), T(30), T(500), T(1e4), T(1e6)};
  const std::vector<Domain> domains = {
      {"log", Function::kLog, {}, positive},        {"log1p", Function::kLog1p, {}, positive},
      {"sqrt", Function::kSqrt, {}, positive},      {"rsqrt", Function::kRsqrt, {}, positive},
      {"reciprocal", Function::kReciprocal, {}, wide}, {"square", Function::kSquare, {}, wide},
      {"pow 3", Function::kPow, {3.0, 0.0}, wide},   {"pow 2.5", Function::kPow, {2.5, 0.0}, positive},
      {"erf", Function::kErf, {}, wide},            {"atan", Function::kAtan, {}, wide},
      {"abs", Function::kAbs, {}, wide},            {"expm1", Function::kExpm1, {}, {T(-1e4), T(-30), T(1), T(30)}},
      {"tan", Function::kTan, {}, {T(-1.5), T(-0.5), T(0.5), T(1.5)}},
      {"sinh", Function::kSinh, {}, {T(-30), T(-1), T(1), T(30)}},
      {"cosh", Function::kCosh, {}, {T(-30), T(-1), T(1), T(30)}},
  };
  for (const Domain& domain : domains) {
    for (T x : domain.points) {
      T d[K + 1];
      hoderiv::math::derivatives<T, K>(domain.function, domain.params, x, d);
      for (int k = 0; k <= 4; ++k) {
        expect(std::isfinite(static_cast<double>(d[k])), std::string(domain.name) + " " + type_name + " order " +
                                                              std::to_string(k) + " finite at " +
                                                              std::to_string(static_cast<double>(x)));
      }
    }
  }
  // Tails keep relative accuracy: erf'(9) = 2/sqrt(pi) e^-81 ~ 7e-36, atan'(1e4) ~ 1e-8.
  T d[K + 1];
  hoderiv::math::derivatives<T, K>(Function::kErf, {}, T(9), d);
  const long double erf_first = 2.0L / std::sqrt(std::acos(-1.0L)) * std::exp(-81.0L);
  expect(std::fabs(d[1] - erf_first) <= 1e-4L * erf_first, std::string("erf'(9) relative accuracy ") + type_name);
  hoderiv::math::derivatives<T, K>(Function::kAtan, {}, T(1e4), d);
  const long double atan_third = (6.0L * 1e8L - 2.0L) / std::pow(1.0L + 1e8L, 3);
  expect(std::fabs(d[3] - atan_third) <= 1e-4L * atan_third, std::string("atan'''(1e4) relative accuracy ") + type_name);
}

}  // namespace

int main() {
  test_against_references();
  test_torch_conventions();
  test_finite<float>("float");
  test_finite<double>("double");
  return hoderiv_test::report("elementary_math");
}
