// The one source of truth for the derivative math of hoderiv_ext.
//
// Everything here is __host__ __device__ and header-only: the CPU kernels
// (csrc/cpu), the CUDA kernels (csrc/cuda) and the C++ test
// (csrc/tests/test_derivative_math.cpp) all include this file and run the
// same source, with no host- or device-only branch: the three can never
// disagree about a formula. exp and log1p on [0, 1] are plain arithmetic
// here (exp_nonpositive, log1p_unit_interval), so they too are the same code
// everywhere. Results can still differ in the last bits between devices
// where a compiler contracts a * b + c into a fused multiply-add (nvcc does
// by default; gcc may in the FMA builds of the CPU loops) and in the
// functions taken from each platform's math library: exp of a positive
// argument (kExp), and the order-0 values (with exp, sqrt,
// pow, tan, sinh, cosh where a coefficient needs them) of the elementary
// functions log, log1p, expm1, sqrt, rsqrt, pow, erf, atan, tan, sinh, cosh.
// sin and cos are plain arithmetic too (sin_cos), and so is the GELU's
// normal CDF (normal_cdf_in_double).
//
// Method: truncated Taylor arithmetic. For a function phi and a point x we
// compute the normalised Taylor coefficients c_k = phi^(k)(x) / k! for
// k = 0..K from the ODE each function satisfies (tanh' = 1 - tanh^2,
// phi_gauss' = -x phi_gauss, ...), then scale by k! to get derivatives.
// Every recurrence is written so that no coefficient of order >= 1 is formed
// by cancellation of O(1) quantities: for |x| large, derivatives that are
// tiny stay accurate to a few ulp instead of collapsing to 0 or NaN. The
// order-0 terms use the numerically stable forms (sigmoid through exp(-|x|),
// 1 + tanh(u) through 2*sigmoid(2u), softplus through log1p(exp(-|z|))).
//
// At the kinks of piecewise functions (relu, leaky_relu, elu and abs at 0,
// softplus at its threshold) and at the edges of the domains (sqrt, rsqrt,
// log, reciprocal and pow at +-0, log and log1p below their domain, pow with
// an integer exponent >= 0 above its degree) derivatives follow torch's
// autograd conventions exactly, so the kernel and autograd paths agree
// everywhere.
#pragma once

#include <cmath>
#include <cfloat>
#include <cstdint>
#include <type_traits>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define HODERIV_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
// Force inlining on the host so a compile-time function (see
// dispatch_function in order_dispatch.h) folds the switch in every loop.
#define HODERIV_HD inline __attribute__((always_inline))
#else
#define HODERIV_HD inline
#endif

// Loop unrolling hint understood by both nvcc and gcc (a plain
// `#pragma unroll` makes gcc warn).
#if defined(__CUDACC__) || defined(__HIPCC__)
#define HODERIV_UNROLL _Pragma("unroll")
#elif defined(__GNUC__) && !defined(__clang__)
#define HODERIV_UNROLL _Pragma("GCC unroll 16")
#elif defined(__clang__)
#define HODERIV_UNROLL _Pragma("unroll")
#else
#define HODERIV_UNROLL
#endif

namespace hoderiv {
namespace math {

// Highest derivative order the compiled kernels serve. The backward of an
// order-k result needs order k+1, so results up to kMaxOrder - 1 are
// differentiable through the kernels; beyond that the Python layer refuses.
constexpr int kMaxOrder = 8;

// Elementwise functions served by the kernels, in the order of the table
// hoderiv/functions.def. The numbering is internal; the Python layer and the
// op schemas speak in names (parsed by csrc/ops/functions.cpp).
enum class Function : int32_t {
#define HODERIV_FUNCTION(ENUM, NAME, NUM_PARAMS, PARAM_NAMES) ENUM,
#include "hoderiv/functions.def"
};

// Number of functions in the table.
constexpr int kNumFunctions = 0
#define HODERIV_FUNCTION(ENUM, NAME, NUM_PARAMS, PARAM_NAMES) +1
#include "hoderiv/functions.def"
    ;

// Most scalar parameters a function of the table takes.
constexpr int kMaxParams = 2;

// Scalar parameters of a function, in the order of functions.def (unused
// entries are ignored).
struct FunctionParams {
  double p0 = 0.0;
  double p1 = 0.0;
};

// ---------------------------------------------------------------------------
// Stable scalar building blocks.
// ---------------------------------------------------------------------------

// exp(x) and 1 - exp(x) for x <= 0, both to a few ulp, from one range
// reduction and no branch or library call, so the host compiler vectorises
// the loops that call it (glibc's exp/expm1 are scalar calls: they made the
// tanh-family activations cost ~17 ns per element) and the device runs the
// very same arithmetic. Method (Cody-Waite):
//   x = k ln2 + r, |r| <= ln2 / 2,  p = expm1(r) by its Taylor polynomial
//   (degree 7 for float, 13 for double: truncation below 1/4 ulp),
//   exp(x) = 2^k (1 + p),  1 - exp(x) = (1 - 2^k) - 2^k p.
// Neither is formed by cancellation: for k = 0 the second is -p, for k <= -1
// its two terms have the same sign. x below the underflow range is clamped
// (the result is then 0 / 1, as exp gives); 2^k is applied as two factors so
// results in the subnormal range round once. NaN propagates through p.
// Round-to-nearest is assumed (the default); -ffast-math must not be used.
template <typename T>
struct ExpConstants;
template <>
struct ExpConstants<float> {
  using Bits = uint32_t;
  static constexpr int kMantissaBits = 23;
  static constexpr int kExponentBias = 127;
  static constexpr int kDegree = 7;
  static constexpr float kLowest = -104.0f;  // exp(-104) < half the smallest subnormal
  static constexpr float kShifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  static constexpr float kLn2High = 0.693359375f;  // few mantissa bits: k * kLn2High is exact
  static constexpr float kLn2Low = -2.12194440e-4f;
};
template <>
struct ExpConstants<double> {
  using Bits = uint64_t;
  static constexpr int kMantissaBits = 52;
  static constexpr int kExponentBias = 1023;
  static constexpr int kDegree = 13;
  static constexpr double kLowest = -746.0;
  static constexpr double kShifter = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double kLn2High = 6.93147180369123816490e-01;  // fdlibm's split of ln 2
  static constexpr double kLn2Low = 1.90821492927058770002e-10;
};

template <typename T>
struct ExpAndComplement {
  T exp;             // exp(x)
  T one_minus_exp;   // 1 - exp(x)
};

// 1/j!: the Taylor coefficients of exp (j! is exact in double for j <= 22,
// so this is the correctly rounded 1/j!). Evaluated at compile time only
// (exp_taylor_horner): no table, since a namespace-scope array is not
// visible in device code.
HODERIV_HD constexpr double inverse_factorial(int j) {
  double factorial = 1.0;
  for (int i = 2; i <= j; ++i) factorial *= i;
  return 1.0 / factorial;
}

// Horner's rule for the exp series: acc = acc * r + 1/j! for j = J down to 1,
// each coefficient a compile-time constant.
template <typename T, int J>
HODERIV_HD T exp_taylor_horner(T acc, T r) {
  if constexpr (J < 1) {
    return acc;
  } else {
    constexpr double coefficient = inverse_factorial(J);
    return exp_taylor_horner<T, J - 1>(acc * r + T(coefficient), r);
  }
}

// 2^k for an integer k with kExponentBias + k >= 1 (a normal number).
template <typename T>
HODERIV_HD T power_of_two(typename ExpConstants<T>::Bits biased_exponent) {
  using C = ExpConstants<T>;
  const typename C::Bits bits = biased_exponent << C::kMantissaBits;
  T value;
  static_assert(sizeof(T) == sizeof(bits), "bit cast between types of one size");
  __builtin_memcpy(&value, &bits, sizeof(T));
  return value;
}

template <typename T>
HODERIV_HD ExpAndComplement<T> exp_nonpositive(T x) {
  using C = ExpConstants<T>;
  using Bits = typename C::Bits;
  x = x < C::kLowest ? C::kLowest : x;  // NaN compares false and stays NaN
  const T x_finite = x == x ? x : T(0);  // k from a number, r (hence p) from x: NaN in, NaN out
  const T k = (x_finite * T(1.44269504088896340736) + C::kShifter) - C::kShifter;  // round(x log2 e)
  const T r = (x - k * C::kLn2High) - k * C::kLn2Low;
  constexpr double leading = inverse_factorial(C::kDegree);
  const T acc = exp_taylor_horner<T, C::kDegree - 1>(T(leading), r);
  const T p = acc * r;  // expm1(r)
  // k in [kLowest / ln 2 - 1, 0]: applied as 2^half * 2^rest, each a normal number.
  const int32_t k_int = static_cast<int32_t>(k);
  const int32_t half = k_int / 2;
  const T scale_half = power_of_two<T>(static_cast<Bits>(half + C::kExponentBias));
  const T scale_rest = power_of_two<T>(static_cast<Bits>(k_int - half + C::kExponentBias));
  const T two_to_k = scale_half * scale_rest;
  return {((T(1) + p) * scale_half) * scale_rest, (T(1) - two_to_k) - two_to_k * p};
}

// exp(x) and 1 - exp(x) for x <= 0 from the math library, with expm1 where
// 1 - exp(x) would cancel (x > -1.1): for the types exp_nonpositive has no
// constants for (long double, which only the host tests use).
template <typename T>
HODERIV_HD ExpAndComplement<T> exp_nonpositive_library(T x) {
  if (x > T(-1.1)) {
    const T em1 = std::expm1(x);
    return {T(1) + em1, -em1};
  }
  const T e = std::exp(x);
  return {e, T(1) - e};
}

// exp(x) and 1 - exp(x) for x <= 0: exp_nonpositive for float and double
// (every kernel, host and device alike), the library otherwise.
template <typename T>
HODERIV_HD ExpAndComplement<T> exp_parts_nonpositive(T x) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    return exp_nonpositive(x);
  } else {
    return exp_nonpositive_library(x);
  }
}

// tanh(u), sech^2(u) and e = exp(-2|u|) from one transcendental:
//   tanh(|u|) = (1 - e) / (1 + e),  sech^2(u) = 4 e / (1 + e)^2,
// with e and 1 - e from exp_parts_nonpositive, so 1 - e is not formed by
// cancellation when |u| is small.
// sigmoid(2u) = 1 / (1 + e) for u >= 0 and e / (1 + e) otherwise, so the
// sigmoid-based functions reuse e as well.
template <typename T>
struct TanhParts {
  T tanh;
  T sech_squared;
  T e;  // exp(-2|u|)
};

template <typename T>
HODERIV_HD TanhParts<T> tanh_parts(T u) {
  const T au = std::fabs(u);
  const ExpAndComplement<T> exp_parts = exp_parts_nonpositive(T(-2) * au);
  const T e = exp_parts.exp;
  const T one_plus_e = T(1) + e;
  const T magnitude = exp_parts.one_minus_exp / one_plus_e;
  return {u < T(0) ? -magnitude : magnitude, T(4) * e / (one_plus_e * one_plus_e), e};
}

// sigmoid(2u) from tanh_parts(u).e.
template <typename T>
HODERIV_HD T sigmoid_of_double(T u, T e) {
  return u >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

// log1p(e) for e in [0, 1], branch-free (vectorisable on the host, the same
// arithmetic on the device), after fdlibm's log1p: 1 + e = 2^k (1 + f) with
//   k = 0, f = e             for e <= 1/2,
//   k = 1, f = (e - 1) / 2   for e >  1/2 (exact: Sterbenz, then a halving),
// so f is in (-1/4, 1/2] and carries no rounding. With s = f / (2 + f)
// (|s| <= 1/5), hfsq = f^2 / 2 and R = sum_{j>=1} 2 s^(2j) / (2j + 1),
//   log1p(f) = 2 atanh(s) = f - (hfsq - s (hfsq + R)),
// whose leading term f is exact; the sum is cut where it stops mattering for
// T (5 terms in float, 11 in double). log1p(e) = k ln 2 + log1p(f), ln 2 in two
// parts (ExpConstants). Within 1 ulp (test_derivative_math checks it). NaN in, NaN out.
template <typename T>
HODERIV_HD T log1p_unit_interval(T e) {
  constexpr int kTerms = sizeof(T) <= 4 ? 5 : 11;
  const bool upper = e > T(0.5);
  const T f = upper ? (e - T(1)) * T(0.5) : e;
  const T k = upper ? T(1) : T(0);
  const T s = f / (T(2) + f);
  const T z = s * s;
  T acc = T(2) / T(2 * kTerms + 1);
HODERIV_UNROLL
  for (int j = kTerms - 1; j >= 1; --j) acc = acc * z + T(2) / T(2 * j + 1);
  const T r = z * acc;
  const T hfsq = T(0.5) * f * f;
  // ln 2 split as for exp_nonpositive: the high part has trailing zero bits.
  return k * ExpConstants<T>::kLn2High - ((hfsq - (s * (hfsq + r) + k * ExpConstants<T>::kLn2Low)) - f);
}

// softplus(z) = log(1 + exp(z)) = max(z, 0) + log1p(e), e = exp(-|z|).
// float/double (every kernel): log1p_unit_interval; other types (the host
// tests' long double): the math library.
template <typename T>
HODERIV_HD T softplus_from_exp(T z, T e) {
  const T positive_part = z > T(0) ? z : T(0);
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    return positive_part + log1p_unit_interval(e);
  } else {
    return positive_part + std::log1p(e);
  }
}

// The standard normal CDF Phi(x) = erfc(u) / 2, u = -x / sqrt(2), branch-free
// (vectorised on the host, the same arithmetic on the device), in double
// precision for float and double alike (a float result is the double one
// rounded once; glibc's erfc is a scalar call, which made the exact GELU the
// costliest activation of the jet kernels, about 10x tanh). Method:
//   |u| < 1/2:  erf(u) = u sum_n c_n u^(2n), c_n = (2/sqrt(pi)) (-1)^n / (n! (2n + 1))
//               (the Taylor series, cut below 1e-19 for double), Phi = (1 - erf(u)) / 2;
//   |u| >= 1/2: erfc(|u|) = exp(-u^2) f(s) / (1 + 2|u|), f(s) = (1 + 2|u|) exp(u^2) erfc(|u|)
//               as a Chebyshev series in s = (|u| - 4) / (|u| + 3) in [-1, 1) (the map
//               t = (|u| - 3) / (|u| + 3) of [1/2, inf) onto [-5/7, 1), rescaled), on which f
//               is smooth and within [1.12, 1.34]: its coefficients fall below 2e-17 at 24 terms
//               (14 for float). The coefficients were computed for this file in 50-digit
//               arithmetic (mpmath) from Gauss-Chebyshev nodes, the series evaluated by
//               Clenshaw's recurrence. exp(-u^2) = exp(-p) (1 - e) with p = u^2 rounded and
//               e = fma(u, u, -p) its exact rounding error (|e| <= 4e-14 where it matters),
//               exp(-p) from exp_nonpositive. Phi = erfc(|u|) / 2 for u > 0, 1 - that for u < 0.
// Accuracy (test_derivative_math, against long double erfc at the same rounded u, x in
// [-40, 40]): double within 5 ulp (3.95 the worst measured, at x = -32, where the rounding
// of u itself moves Phi by ~500 ulp, as it did with the library's erfc), float within
// 1 ulp (0.5003 measured: correctly rounded but for rare ties). NaN propagates;
// Phi(-inf) = 0, Phi(+inf) = 1.
// Horner's rule acc = acc * z + c[n] for n = N - 1 down to 0, unrolled at compile time.
template <int N>
HODERIV_HD double cdf_horner(const double* c, double acc, double z) {
  if constexpr (N < 1) {
    return acc;
  } else {
    return cdf_horner<N - 1>(c, acc * z + c[N - 1], z);
  }
}

// Clenshaw's recurrence b_n = c[n] + two_s b_{n+1} - b_{n+2} for n = N down to 1 (b_{N+1} = b_{N+2} = 0 on
// entry), unrolled at compile time; leaves b1 = b_1, b2 = b_2.
template <int N>
HODERIV_HD void cdf_clenshaw(const double* c, double two_s, double& b1, double& b2) {
  if constexpr (N >= 1) {
    const double b0 = c[N] + two_s * b1 - b2;
    b2 = b1;
    b1 = b0;
    cdf_clenshaw<N - 1>(c, two_s, b1, b2);
  }
}

template <int ChebyshevTerms, int TaylorTerms>
HODERIV_HD double normal_cdf_in_double(double x) {
  static_assert(ChebyshevTerms >= 2 && ChebyshevTerms <= 24 && TaylorTerms >= 1 && TaylorTerms <= 14,
                "normal_cdf_in_double: the tables hold 24 Chebyshev and 14 Taylor coefficients");
  constexpr double kChebyshev[24] = {
      1.2131177209271748,     -0.07225473646563542,   -0.02632189276459184,   0.019186588533428105,
      -0.006682350310928109,  0.0015522847050575515,  -0.00023571658348154882, 1.5690562205135226e-05,
      2.153875719667181e-06,  -6.012574627859283e-07, 1.3854950323746626e-08,  1.3575814484993745e-08,
      -1.3070972098097831e-09, -3.06373327557849e-10, 5.062873791614194e-11,   8.050230187118965e-12,
      -1.74987484220058e-12,  -2.6365750400882025e-13, 5.909950702659242e-14,  1.0548914766564293e-14,
      -1.9235530211488676e-15, -4.764157943707682e-16, 5.502036001020429e-17,  2.2407847347890268e-17};
  constexpr double kTaylor[14] = {
      1.1283791670955126,     -0.37612638903183754,   0.11283791670955126,    -0.026866170645131252,
      0.005223977625442188,   -0.0008548327023450853, 0.00012055332981789664, -1.492565035840625e-05,
      1.6462114365889248e-06, -1.6365844691234924e-07, 1.4807192815879218e-08, -1.2290555301717928e-09,
      9.422759064650411e-11,  -6.7113668551641105e-12};
  const double u = -x * 0.70710678118654752440;
  const double au = std::fabs(u);
  // |u| < 1/2: the Taylor series of erf (z <= 1/4). The loops are unrolled by templates
  // (cdf_horner, cdf_clenshaw), not pragmas: a loop left inside the element loop (the
  // 24 terms exceed gcc's unroll 16) stops the host compiler from vectorising it.
  const double z = u * u;
  const double series = cdf_horner<TaylorTerms - 1>(kTaylor, kTaylor[TaylorTerms - 1], z);
  const double near_zero = 0.5 - 0.5 * (u * series);
  // |u| >= 1/2: Clenshaw's recurrence for f(s); |u| capped at 40, where erfc is 0 already (exp(-1600)
  // underflows) and u^2 is still finite.
  const double a = au < 40.0 ? au : 40.0;  // NaN compares false: capped too, and the select below keeps NaN
  const double s = (a - 4.0) / (a + 3.0);
  double b1 = 0.0, b2 = 0.0;
  cdf_clenshaw<ChebyshevTerms - 1>(kChebyshev, 2.0 * s, b1, b2);  // b1, b2 = b_1, b_2
  const double f = kChebyshev[0] + s * b1 - b2;
  const double p = a * a;
  const double e = std::fma(a, a, -p);  // a^2 = p + e exactly
  const double exp_minus_p = exp_nonpositive(-p).exp;
  const double tail = 0.5 * (exp_minus_p - exp_minus_p * e) * (f / (1.0 + 2.0 * a));  // erfc(|u|) / 2
  const double far = u > 0.0 ? tail : 1.0 - tail;
  return au < 0.5 ? near_zero : (au == au ? far : u);
}

// Standard normal CDF (normal_cdf_in_double for float and double, every kernel; the
// math library's erfc otherwise, for the host tests' long double) and density (exp
// of a non-positive argument: exp_parts_nonpositive).
template <typename T>
HODERIV_HD T normal_cdf(T x) {
  if constexpr (std::is_same_v<T, double>) {
    return normal_cdf_in_double<24, 14>(x);
  } else if constexpr (std::is_same_v<T, float>) {
    return static_cast<float>(normal_cdf_in_double<14, 8>(static_cast<double>(x)));
  } else {
    return T(0.5) * std::erfc(-x * T(0.70710678118654752440));
  }
}
template <typename T>
HODERIV_HD T normal_pdf(T x) {
  return T(0.39894228040143267794) * exp_parts_nonpositive(T(-0.5) * x * x).exp;
}

// sin(x) and cos(x) from one range reduction, branch-free (vectorised on the
// host, the same arithmetic on the device), in double precision for float and
// double alike (a float result is the double one rounded once: glibc's sinf
// and cosf are scalar calls, which made sin the costliest activation of the
// jet kernels). Method (Cody-Waite, then fdlibm's kernels):
//   k = round(x 2/pi),  r = x - k pi/2 in four steps with pi/2 split into four
//   26-bit parts (each k * part is exact for |k| < 2^27, the tail below
//   pi/2 is 1.5e-33), |r| <= pi/4 (a hair more from rounding);
//   sin r = r + r^3 P(r^2), cos r = 1 - r^2/2 + r^4 Q(r^2) (fdlibm's
//   __kernel_sin / __kernel_cos coefficients, the 1 - r^2/2 compensated);
//   the quadrant k mod 4 picks +-sin r or +-cos r.
// k and the quadrant come from the shifter trick (adding 1.5 * 2^52 rounds to
// an integer in the low mantissa bits), so no float-to-integer conversion.
// Accuracy for |x| < 2^27 pi/2 (test_derivative_math checks |x| <= 1e6):
// float results correctly rounded (0.5 ulp), double results within 1.5 ulp
// away from the zeros of sin and cos and an absolute error below 1.2e-16
// everywhere. Beyond, the products k * part round: the results are sin and
// cos of a point within an ulp or so of x (the input's own rounding is as
// large). For |x| > 2^50 (where the shifter stops giving the nearest integer)
// and for infinities and NaN both are NaN. sin(-0) is +0.
struct SinCos {
  double sin;
  double cos;
};

HODERIV_HD SinCos sin_cos(double x) {
  constexpr double kTwoOverPi = 6.36619772367581382433e-01;
  constexpr double kShifter = 6755399441055744.0;  // 1.5 * 2^52
  constexpr double kPart1 = 0x1.921fb58000000p+0;  // pi/2 = kPart1 + kPart2 + kPart3 + kPart4 + 1.5e-33
  constexpr double kPart2 = -0x1.dde9740000000p-27;
  constexpr double kPart3 = 0x1.1a62630000000p-54;
  constexpr double kPart4 = 0x1.8a2e038000000p-81;
  constexpr double kLargest = 1125899906842624.0;  // 2^50
  const bool in_range = std::fabs(x) <= kLargest;  // false for NaN and the infinities
  const double xr = in_range ? x : 0.0;
  const double shifted = xr * kTwoOverPi + kShifter;
  const double k = shifted - kShifter;
  uint64_t bits;
  __builtin_memcpy(&bits, &shifted, sizeof(bits));
  const uint64_t quadrant = bits & 3;  // k mod 4 (two's complement: right for negative k too)
  const double r = (((xr - k * kPart1) - k * kPart2) - k * kPart3) - k * kPart4;
  const double z = r * r;
  const double sin_tail =
      8.33333333332248946124e-03 +
      z * (-1.98412698298579493134e-04 +
           z * (2.75573137070700676789e-06 + z * (-2.50507602534068634195e-08 + z * 1.58969099521155010221e-10)));
  const double sin_r = r + (z * r) * (-1.66666666666666324348e-01 + z * sin_tail);
  const double cos_tail =
      z * (4.16666666666666019037e-02 +
           z * (-1.38888888888741095749e-03 +
                z * (2.48015872894767294178e-05 +
                     z * (-2.75573143513906633035e-07 +
                          z * (2.08757232129817482790e-09 + z * -1.13596475577881948265e-11)))));
  const double half_z = 0.5 * z;
  const double w = 1.0 - half_z;
  const double cos_r = w + (((1.0 - w) - half_z) + z * cos_tail);
  // Quadrant q: sin x = (sin r, cos r, -sin r, -cos r)[q], cos x = (cos r, -sin r, -cos r, sin r)[q].
  const bool swap = (quadrant & 1) != 0;
  const double sin_magnitude = swap ? cos_r : sin_r;
  const double cos_magnitude = swap ? sin_r : cos_r;
  const double sin_x = (quadrant & 2) != 0 ? -sin_magnitude : sin_magnitude;
  const double cos_x = ((quadrant + 1) & 2) != 0 ? -cos_magnitude : cos_magnitude;
  const uint64_t nan_bits = 0x7ff8000000000000ULL;  // a quiet NaN
  double nan;
  __builtin_memcpy(&nan, &nan_bits, sizeof(nan));
  return {in_range ? sin_x : nan, in_range ? cos_x : nan};
}

// sin and cos of x: sin_cos for float and double (every kernel), the math
// library otherwise (the host tests' long double).
template <typename T>
HODERIV_HD void sin_and_cos(T x, T& sin_x, T& cos_x) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    const SinCos both = sin_cos(static_cast<double>(x));
    sin_x = static_cast<T>(both.sin);
    cos_x = static_cast<T>(both.cos);
  } else {
    sin_x = std::sin(x);
    cos_x = std::cos(x);
  }
}

// ---------------------------------------------------------------------------
// Taylor-coefficient recurrences. Arrays hold normalised coefficients
// c[k] = f^(k)(x) / k!, k = 0..K.
// ---------------------------------------------------------------------------

// f of a polynomial input series u (degree <= 3, u[0] the point itself) for
// the two Riccati functions f' = 1 + Sign f^2: tanh (Sign = -1) and tan
// (Sign = +1). With g = f(u) and s = f'(u) = 1 + Sign g^2,  g' = s u':
//   k g_k = sum_j j u_j s_{k-j},   s_k = Sign sum_{j=0}^{k} g_j g_{k-j}  (k >= 1).
// The caller sets g[0] and passes s_0 in its stable form (sech^2 for tanh,
// where 1 - tanh^2 would cancel; 1 + tan^2 for tan, a sum of positives).
// No O(1) cancellation for tan: tan^(k)(x) = P_k(tan x) with P_k of
// non-negative coefficients, so for a fixed k every product g_j g_{k-j}
// has the sign of (sign x)^k.
template <typename T, int K, int Sign>
HODERIV_HD void riccati_series(const T (&u)[4], T s0, T (&g)[K + 1]) {
  static_assert(Sign == 1 || Sign == -1, "riccati_series: Sign is +1 (tan) or -1 (tanh)");
  T s[K + 1];
  s[0] = s0;
HODERIV_UNROLL
  for (int k = 1; k <= K; ++k) {
    T acc = T(0);
HODERIV_UNROLL
    for (int j = 1; j <= 3; ++j) {
      if (j <= k) acc += T(j) * u[j] * s[k - j];
    }
    g[k] = acc / T(k);
    T sk = T(0);
HODERIV_UNROLL
    for (int j = 0; j <= K; ++j) {
      if (j <= k) sk += g[j] * g[k - j];
    }
    s[k] = Sign > 0 ? sk : -sk;
  }
}

// tanh of a polynomial input series u (riccati_series with Sign = -1),
// s_0 = sech^2(u_0) from tanh_parts.
// Returns e = exp(-2|u[0]|) for callers that need sigmoid(2 u[0]).
template <typename T, int K>
HODERIV_HD T tanh_series(const T (&u)[4], T (&g)[K + 1]) {
  const TanhParts<T> parts = tanh_parts(u[0]);
  g[0] = parts.tanh;
  riccati_series<T, K, -1>(u, parts.sech_squared, g);
  return parts.e;
}

// sigmoid(x + h) = (1 + tanh(x/2 + h/2)) / 2; the order-0 term is computed
// directly because 1 + tanh cancels for x << 0.
// Returns e = exp(-|x|), for softplus.
template <typename T, int K>
HODERIV_HD T sigmoid_series(T x, T (&c)[K + 1]) {
  const T u[4] = {T(0.5) * x, T(0.5), T(0), T(0)};
  const T e = tanh_series<T, K>(u, c);
  c[0] = sigmoid_of_double(u[0], e);
HODERIV_UNROLL
  for (int k = 1; k <= K; ++k) c[k] *= T(0.5);
  return e;
}

// The Gaussian density's series: p = pdf, p' = -(x + h) p
//   => k p_k = -(x p_{k-1} + p_{k-2}).
template <typename T, int K>
HODERIV_HD void normal_pdf_series(T x, T (&p)[K + 1]) {
  p[0] = normal_pdf(x);
HODERIV_UNROLL
  for (int k = 1; k <= K; ++k) {
    T acc = x * p[k - 1];
    if (k >= 2) acc += p[k - 2];
    p[k] = -acc / T(k);
  }
}

// log(x + h) - log(x) and log1p: with r = 1 / x (log) or 1 / (1 + x) (log1p),
//   c_k = (-1)^(k-1) r^k / k  (k >= 1),
// r^k by repeated multiplication. No sum, so no cancellation; signed zeros
// and x < 0 follow the formula as torch's autograd does (log'(-2) = -1/2
// although log(-2) is NaN; r = -inf at x = -0).
template <typename T, int K>
HODERIV_HD void log_series(T value, T r, T (&c)[K + 1]) {
  c[0] = value;
  T power = T(1);
HODERIV_UNROLL
  for (int k = 1; k <= K; ++k) {
    power *= r;
    c[k] = (k & 1 ? power : -power) / T(k);
  }
}

// (x + h)^a for a = 1/2 (sqrt) and a = -1/2 (rsqrt) from t = 1 / sqrt(x):
//   c_k = binom(a, k) x^(a - k) = c_{k-1} (a - k + 1) / k * t^2,
// with c_1 = a t (sqrt) or c_1 = a t^3 (rsqrt), i.e. c_0 = sqrt(x) or t.
// t^2 stands for 1/x so that x = +-0 gives torch's signed infinities
// (sqrt'(-0) = 1 / (2 sqrt(-0)) = -inf) where c_0 * (1/x) would be 0 * inf.
// A product of factors: no cancellation. x < 0: NaN at every order, as torch.
template <typename T, int K>
HODERIV_HD void half_power_series(T value, T first, T t, T a, T (&c)[K + 1]) {
  c[0] = value;
  if (K >= 1) c[1] = first;
  const T t2 = t * t;
HODERIV_UNROLL
  for (int k = 2; k <= K; ++k) c[k] = c[k - 1] * ((a - T(k - 1)) / T(k)) * t2;
}

// The smallest normal and the largest finite value of T (the <cfloat>
// macros: literals, usable in device code where std::numeric_limits is not).
template <typename T>
HODERIV_HD constexpr T smallest_normal() {
  if constexpr (std::is_same_v<T, float>) return FLT_MIN;
  else if constexpr (std::is_same_v<T, double>) return DBL_MIN;
  else return LDBL_MIN;
}
template <typename T>
HODERIV_HD constexpr T largest_finite() {
  if constexpr (std::is_same_v<T, float>) return FLT_MAX;
  else if constexpr (std::is_same_v<T, double>) return DBL_MAX;
  else return LDBL_MAX;
}

// (x + h)^p for a scalar p, as torch's pow and its autograd:
//   c_k = binom(p, k) x^(p - k),
// binom(p, k) = binom(p, k-1) (p - k + 1) / k by products. torch's
// pow_backward masks the gradient to 0 where the exponent is 0, so for an
// integer p >= 0 the derivatives above order p are exactly 0 (x**2 at 0:
// 0, 0, 2, 0, ...; no 0 * inf): binom(p, k) is exactly 0 there and selects 0.
// x^(p-k) = x^(p-k+1) / x, one rounding per order, where x is finite and
// non-zero and x^p normal: |x|^(p-k) is monotone in k, so no step over- or
// underflows unless its own result does. Elsewhere (x = +-0, inf, NaN, or
// x^p outside the normal range) every power comes from pow itself, so the
// signs and infinities are pow's (x**-2 at 0: inf, -inf, inf, ...; x**0.5
// at 0: 0, inf, -inf, ...; x < 0 with a non-integer p: NaN).
template <typename T, int K>
HODERIV_HD void power_series(T x, T p, T (&c)[K + 1]) {
  const T value = std::pow(x, p);
  c[0] = value;
  const T magnitude = std::fabs(value);
  const bool by_division = x != T(0) && std::fabs(x) <= largest_finite<T>() &&
                           magnitude >= smallest_normal<T>() && magnitude <= largest_finite<T>();
  T binomial = T(1), power = value;
HODERIV_UNROLL
  for (int k = 1; k <= K; ++k) {
    binomial *= (p - T(k - 1)) / T(k);
    power = by_division ? power / x : std::pow(x, p - T(k));
    c[k] = binomial == T(0) ? T(0) : binomial * power;
  }
}

// erf(x + h): erf' = (2 / sqrt(pi)) g with g = exp(-(x + h)^2), and
// g' = -2 (x + h) g  =>  k g_k = -2 (x g_{k-1} + g_{k-2}),
//   c_k = (2 / sqrt(pi)) g_{k-1} / k  (k >= 1),
// g_0 from exp_parts_nonpositive (as normal_pdf): the same code on both
// devices, and 0 (not NaN) far in the tails. As normal_pdf_series: the two
// terms only cancel near the zeros of the Hermite polynomial in c_k itself.
template <typename T, int K>
HODERIV_HD void erf_series(T x, T (&c)[K + 1]) {
  T g[K + 1];
  g[0] = exp_parts_nonpositive(-(x * x)).exp;
HODERIV_UNROLL
  for (int k = 1; k <= K; ++k) {
    T acc = x * g[k - 1];
    if (k >= 2) acc += g[k - 2];
    g[k] = T(-2) * acc / T(k);
  }
  c[0] = std::erf(x);
HODERIV_UNROLL
  for (int k = 1; k <= K; ++k) c[k] = T(1.12837916709551257390) * g[k - 1] / T(k);
}

// atan(x + h): atan' = w = 1 / q(h), q(h) = 1 + (x + h)^2 = q0 + 2x h + h^2,
// and w q = 1 gives, with w_0 = 1 / q0,
//   w_k = -(2x w_{k-1} + w_{k-2}) w_0,   c_k = w_{k-1} / k  (k >= 1).
// For |x| large the two terms have opposite signs but magnitudes ~2k and
// ~(k-1) times |w_k q0|: no O(1) cancellation (measured within 2e-15 of a
// long-double evaluation for |x| up to 1e8; the closed form
// (-1)^(k-1) Im((x - i)^(-k)) / k by complex powers measured the same).
// At x = 0 the coefficients are exact (0 at even orders). q0 overflows for
// |x| > sqrt(max), where every c_k with k >= 1 underflows anyway.
template <typename T, int K>
HODERIV_HD void atan_series(T x, T (&c)[K + 1]) {
  T w[K + 1];
  w[0] = T(1) / (T(1) + x * x);
HODERIV_UNROLL
  for (int k = 1; k <= K; ++k) {
    T acc = T(2) * x * w[k - 1];
    if (k >= 2) acc += w[k - 2];
    w[k] = -acc * w[0];
  }
  c[0] = std::atan(x);
HODERIV_UNROLL
  for (int k = 1; k <= K; ++k) c[k] = w[k - 1] / T(k);
}

// Normalised Taylor coefficients of `fn` at x, k = 0..K.
template <typename T, int K>
HODERIV_HD void taylor_coefficients(Function fn, const FunctionParams& params, T x,
                                    T (&c)[K + 1]) {
HODERIV_UNROLL
  for (int k = 0; k <= K; ++k) c[k] = T(0);
  switch (fn) {
    case Function::kIdentity: {
      c[0] = x;
      if (K >= 1) c[1] = T(1);
      break;
    }
    case Function::kTanh: {
      const T u[4] = {x, T(1), T(0), T(0)};
      tanh_series<T, K>(u, c);
      break;
    }
    case Function::kSigmoid: {
      sigmoid_series<T, K>(x, c);
      break;
    }
    case Function::kSoftplus: {
      // y(x) = softplus(beta x) / beta, linear above the threshold exactly as
      // torch.nn.Softplus: y^(k)(x) = beta^(k-1) sigmoid^(k-1)(beta x).
      // Computed for every z and then selected, with no early exit, so the
      // host's loops over elements vectorise.
      // beta^(k-1) is never formed on its own: it overflows for large beta
      // (1e6^7 in float) where the product with the small sigmoid
      // coefficient is finite. The coefficient is multiplied by beta one
      // factor at a time instead; for |beta| >= 1 the partial products grow
      // monotonically to the final coefficient, so none overflows unless the
      // result does (and c_k = y^(k) / k! is no larger than y^(k)).
      const T beta = T(params.p0);
      const T threshold = T(params.p1);
      const T z = beta * x;
      const bool linear = z > threshold;
      // At the kink z == threshold torch's autograd takes the smooth branch
      // for the first derivative but 0 for the second and beyond (its double
      // backward masks with z < threshold); mirror it so both paths agree.
      const bool smooth_beyond_first = z < threshold;
      T sig[K + 1];
      const T e = sigmoid_series<T, K>(z, sig);  // e = exp(-|z|)
      c[0] = linear ? x : softplus_from_exp(z, e) / beta;
HODERIV_UNROLL
      for (int k = 1; k <= K; ++k) {
        T smooth = sig[k - 1] / T(k);
HODERIV_UNROLL
        for (int j = 1; j < k; ++j) smooth *= beta;  // beta^(k-1) sig_{k-1} / k
        if (k == 1) {
          c[k] = linear ? T(1) : smooth;
        } else {
          c[k] = smooth_beyond_first ? smooth : T(0);
        }
      }
      break;
    }
    case Function::kSin:
    case Function::kCos: {
      T s, co;
      sin_and_cos(x, s, co);
      // sin: s, c, -s, -c, ...   cos: c, -s, -c, s, ...
      const T cycle[4] = {s, co, -s, -co};
      const int offset = fn == Function::kSin ? 0 : 1;
      T inverse_factorial = T(1);
HODERIV_UNROLL
      for (int k = 0; k <= K; ++k) {
        if (k > 0) inverse_factorial /= T(k);
        c[k] = cycle[(k + offset) & 3] * inverse_factorial;
      }
      break;
    }
    case Function::kScaledSin: {
      // sin(w (x + h)) = sin(w x + w h): the coefficients of sin at w x times
      // w^k. The argument is rounded as torch rounds sin(w * x); w^k is built
      // one factor at a time with the factorial (w^k / k!, no w^k on its own).
      const T w = T(params.p0);
      T s, co;
      sin_and_cos(w * x, s, co);
      const T cycle[4] = {s, co, -s, -co};
      T scale = T(1);
HODERIV_UNROLL
      for (int k = 0; k <= K; ++k) {
        if (k > 0) scale = scale * w / T(k);
        c[k] = cycle[k & 3] * scale;
      }
      break;
    }
    case Function::kExp: {
      const T e = std::exp(x);
      T inverse_factorial = T(1);
HODERIV_UNROLL
      for (int k = 0; k <= K; ++k) {
        if (k > 0) inverse_factorial /= T(k);
        c[k] = e * inverse_factorial;
      }
      break;
    }
    case Function::kSiLU: {
      // (x + h) sigmoid(x + h): y_k = x s_k + s_{k-1}.
      T sig[K + 1];
      sigmoid_series<T, K>(x, sig);
      c[0] = x * sig[0];
HODERIV_UNROLL
      for (int k = 1; k <= K; ++k) c[k] = x * sig[k] + sig[k - 1];
      break;
    }
    case Function::kGeluErf: {
      // (x + h) Phi(x + h), Phi_k = p_{k-1} / k.
      T p[K + 1];
      normal_pdf_series<T, K>(x, p);
      T cdf[K + 1];
      cdf[0] = normal_cdf(x);
HODERIV_UNROLL
      for (int k = 1; k <= K; ++k) cdf[k] = p[k - 1] / T(k);
      c[0] = x * cdf[0];
HODERIV_UNROLL
      for (int k = 1; k <= K; ++k) c[k] = x * cdf[k] + cdf[k - 1];
      break;
    }
    case Function::kGeluTanh: {
      // 0.5 (x + h) (1 + tanh(u(x + h))), u(x) = b (x + a x^3).
      const T a = T(0.044715);
      const T b = T(0.79788456080286535588);  // sqrt(2 / pi)
      const T x2 = x * x;
      const T u[4] = {b * (x + a * x2 * x), b * (T(1) + T(3) * a * x2), T(3) * a * b * x, a * b};
      T w[K + 1];
      const T e = tanh_series<T, K>(u, w);
      w[0] = T(2) * sigmoid_of_double(u[0], e);  // 1 + tanh(u0) without cancellation
      c[0] = T(0.5) * x * w[0];
HODERIV_UNROLL
      for (int k = 1; k <= K; ++k) c[k] = T(0.5) * (x * w[k] + w[k - 1]);
      break;
    }
    case Function::kReLU: {
      // Derivatives as torch defines them: relu'(0) = 0.
      if (x > T(0)) {
        c[0] = x;
        if (K >= 1) c[1] = T(1);
      }
      break;
    }
    case Function::kLeakyReLU: {
      const T slope = x > T(0) ? T(1) : T(params.p0);
      c[0] = slope * x;
      if (K >= 1) c[1] = slope;
      break;
    }
    case Function::kELU: {
      if (x > T(0)) {
        c[0] = x;
        if (K >= 1) c[1] = T(1);
        break;
      }
      const T alpha = T(params.p0);
      const ExpAndComplement<T> exp_parts = exp_parts_nonpositive(x);  // x <= 0 here
      const T e = exp_parts.exp;
      c[0] = alpha * (T(0) - exp_parts.one_minus_exp);  // alpha expm1(x), +0 at x = 0 as torch
      // At x == 0 torch's autograd gives elu'(0) = alpha but elu''(0) = 0
      // (its double backward masks with x < 0); mirror it.
      const int highest = x < T(0) ? K : 1;
      T inverse_factorial = T(1);
HODERIV_UNROLL
      for (int k = 1; k <= K; ++k) {
        inverse_factorial /= T(k);
        if (k <= highest) c[k] = alpha * e * inverse_factorial;
      }
      break;
    }
    case Function::kLog: {
      log_series<T, K>(std::log(x), T(1) / x, c);
      break;
    }
    case Function::kLog1p: {
      log_series<T, K>(std::log1p(x), T(1) / (T(1) + x), c);
      break;
    }
    case Function::kExpm1: {
      // expm1 at order 0 (no cancellation near 0), exp(x) / k! above.
      const T e = std::exp(x);
      c[0] = std::expm1(x);
      T inverse_factorial = T(1);
HODERIV_UNROLL
      for (int k = 1; k <= K; ++k) {
        inverse_factorial /= T(k);
        c[k] = e * inverse_factorial;
      }
      break;
    }
    case Function::kSqrt: {
      const T root = std::sqrt(x);
      const T t = T(1) / root;
      half_power_series<T, K>(root, T(0.5) * t, t, T(0.5), c);
      break;
    }
    case Function::kRsqrt: {
      const T t = T(1) / std::sqrt(x);
      half_power_series<T, K>(t, T(-0.5) * t * t * t, t, T(-0.5), c);
      break;
    }
    case Function::kReciprocal: {
      // 1 / (x + h) = sum_k (-1)^k r^(k+1) h^k, r = 1 / x.
      const T r = T(1) / x;
      T power = r;
      c[0] = r;
HODERIV_UNROLL
      for (int k = 1; k <= K; ++k) {
        power *= r;
        c[k] = k & 1 ? -power : power;
      }
      break;
    }
    case Function::kSquare: {
      // (x + h)^2 = x^2 + 2x h + h^2: exact.
      c[0] = x * x;
      if (K >= 1) c[1] = T(2) * x;
      if (K >= 2) c[2] = T(1);
      break;
    }
    case Function::kPow: {
      power_series<T, K>(x, T(params.p0), c);
      break;
    }
    case Function::kErf: {
      erf_series<T, K>(x, c);
      break;
    }
    case Function::kAtan: {
      atan_series<T, K>(x, c);
      break;
    }
    case Function::kTan: {
      // riccati_series with Sign = +1: tan' = 1 + tan^2.
      const T t = std::tan(x);
      const T u[4] = {x, T(1), T(0), T(0)};
      c[0] = t;
      riccati_series<T, K, 1>(u, T(1) + t * t, c);
      break;
    }
    case Function::kSinh:
    case Function::kCosh: {
      // sinh: sh, ch, sh, ch, ...   cosh: ch, sh, ch, ...  (over k!)
      const T sh = std::sinh(x);
      const T ch = std::cosh(x);
      const bool sinh_first = fn == Function::kSinh;
      T inverse_factorial = T(1);
HODERIV_UNROLL
      for (int k = 0; k <= K; ++k) {
        if (k > 0) inverse_factorial /= T(k);
        c[k] = (((k & 1) == 0) == sinh_first ? sh : ch) * inverse_factorial;
      }
      break;
    }
    case Function::kAbs: {
      // |x|, sign(x) with sign(0) = 0 (torch's abs backward: grad * sgn(x)), then 0.
      c[0] = std::fabs(x);
      if (K >= 1) c[1] = x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
      break;
    }
    default:
      break;
  }
}

// Derivatives phi^(k)(x), k = 0..K (the coefficients scaled by k!).
template <typename T, int K>
HODERIV_HD void derivatives(Function fn, const FunctionParams& params, T x, T (&d)[K + 1]) {
  taylor_coefficients<T, K>(fn, params, x, d);
  T factorial = T(1);
HODERIV_UNROLL
  for (int k = 2; k <= K; ++k) {
    factorial *= T(k);
    d[k] *= factorial;
  }
}

// ---------------------------------------------------------------------------
// Polynomials p(x) = sum_j a_j x^j (ascending coefficients).
// p^(k)(x) = sum_{j >= k} b_{k,j} x^(j-k) with b_{k,j} = a_j j!/(j-k)!, by
// Horner's rule. Both devices build the same table b (one row per order,
// polynomial_derivative_coefficient per entry) and evaluate it with the same
// function, polynomial_horner: the CPU over a block of elements, a CUDA
// thread over one.
// ---------------------------------------------------------------------------

// b_{k,j} = a_j j (j-1) ... (j-k+1), for j >= k (0 below). a_j is multiplied
// by one factor at a time (no falling factorial formed on its own: it would
// overflow float for large j where a_j is small, or give inf * 0 = NaN).
template <typename T>
HODERIV_HD T polynomial_derivative_coefficient(const T* coefficients, int64_t j, int64_t k) {
  if (j < k) return T(0);
  T b = coefficients[j];
  for (int64_t i = 0; i < k; ++i) b *= T(j - i);
  return b;
}

// The table's entry (k, j) lives at table[k * num_coefficients + j], k = 0..max_order.
template <typename T>
HODERIV_HD void polynomial_table_entry(const T* coefficients, int64_t num_coefficients, T* table, int64_t entry) {
  const int64_t k = entry / num_coefficients, j = entry - k * num_coefficients;
  table[entry] = polynomial_derivative_coefficient<T>(coefficients, j, k);
}

// p^(k) at `count` points x[0..count) into value[0..count): Horner over row k
// of the table, the loop over points innermost (vectorised on the host).
template <typename T>
HODERIV_HD void polynomial_horner(const T* __restrict__ table, int64_t num_coefficients, int64_t k,
                                  const T* __restrict__ x, int64_t count, T* __restrict__ value) {
  for (int64_t i = 0; i < count; ++i) value[i] = T(0);
  const T* row = table + k * num_coefficients;
  for (int64_t j = num_coefficients - 1; j >= k; --j) {
    const T b = row[j];
    for (int64_t i = 0; i < count; ++i) value[i] = value[i] * x[i] + b;
  }
}

// ---------------------------------------------------------------------------
// One element i of the elementwise ops over n elements: a CUDA thread's work
// (csrc/cuda/elementwise_cuda.cu; the CPU loops call the same derivatives and
// polynomial_horner over vectorised blocks).
// Outputs and weights are planes of n elements: plane k holds order k.
// Tested on the host by csrc/tests/test_derivative_math.cpp.
// ---------------------------------------------------------------------------

// out[k * n + i] = y^(k)(x[i]) for k = 0..order, order <= K.
template <typename T, int K>
HODERIV_HD void derivative_planes_at(Function fn, const FunctionParams& params, const T* x, T* out, int64_t n,
                                     int64_t i, int order) {
  T d[K + 1];
  derivatives<T, K>(fn, params, x[i], d);
  HODERIV_UNROLL
  for (int k = 0; k <= K; ++k) {
    if (k <= order) out[k * n + i] = d[k];
  }
}

// sum_{k = 0..m} weights[k * n + i] y^(k + shift)(x[i]), m + shift <= K.
template <typename T, int K>
HODERIV_HD T weighted_derivatives_at(Function fn, const FunctionParams& params, const T* x, const T* weights,
                                     int64_t n, int64_t i, int m, int shift) {
  T d[K + 1];
  derivatives<T, K>(fn, params, x[i], d);
  T acc = T(0);
  HODERIV_UNROLL
  for (int k = 0; k <= K; ++k) {
    if (k <= m && k + shift <= K) acc += weights[k * n + i] * d[k + shift];
  }
  return acc;
}

// out[k * n + i] = p^(k)(x[i]) for k = 0..order, from the table of
// polynomial_table_entry (rows 0..order at least).
template <typename T>
HODERIV_HD void polynomial_planes_at(const T* table, int64_t num_coefficients, const T* x, T* out, int64_t n,
                                     int64_t i, int order) {
  for (int k = 0; k <= order; ++k) polynomial_horner<T>(table, num_coefficients, k, x + i, 1, out + k * n + i);
}

// sum_{k = 0..m} weights[k * n + i] p^(k + shift)(x[i]), from the table (rows
// 0..m + shift at least).
template <typename T>
HODERIV_HD T weighted_polynomial_at(const T* table, int64_t num_coefficients, const T* x, const T* weights,
                                    int64_t n, int64_t i, int m, int shift) {
  T acc = T(0);
  for (int k = 0; k <= m; ++k) {
    T value;
    polynomial_horner<T>(table, num_coefficients, k + shift, x + i, 1, &value);
    acc += weights[k * n + i] * value;
  }
  return acc;
}

}  // namespace math
}  // namespace hoderiv
