// The check helpers shared by the C++ math tests (csrc/tests/test_*_math.cpp):
// one pair of counters, expect / expect_close, and the summary line that ends
// each test's main. Header-only, plain C++17, no torch.
//
// Every helper counts one check per call (a test's own variants, such as
// test_jet_math's expect_close over vectors, count through expect as well) and
// prints each failure to stderr as "FAIL: <what>..." on one line; the run goes
// on after a failure, and report() turns the counts into the exit code.
#pragma once

#include <cmath>
#include <cstdio>
#include <string>

namespace hoderiv_test {

inline int failures = 0;
inline int checks = 0;

// One check: passes when ok is true; otherwise counts a failure and prints
// "FAIL: <what>".
inline void expect(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  }
}

// A double with every digit that tells it apart: printf's %.17g.
inline std::string show(double value) {
  char buffer[40];
  std::snprintf(buffer, sizeof(buffer), "%.17g", value);
  return buffer;
}

// The tolerance rule of expect_close, in double:
//   |got - want| <= tolerance * (1 + |want|),
// a relative tolerance for |want| >> 1 and an absolute one for |want| << 1
// (tolerance 0 asks for equality). A NaN in got or want never passes (the
// comparison is false). An infinite got never passes against a finite want,
// nor against an infinite want of its own sign (inf - inf is NaN); the rule
// is meant for a finite want: against want = +-inf with tolerance > 0 the
// bound is inf, and any got but NaN and want itself passes.
inline bool within_tolerance(double got, double want, double tolerance) {
  return std::fabs(got - want) <= tolerance * (1.0 + std::fabs(want));
}

// One check of got against want under within_tolerance; a failure prints
// "FAIL: <what>: <got>, expected <want>" (both %.17g).
inline void expect_close(double got, double want, double tolerance, const std::string& what) {
  ++checks;
  if (!within_tolerance(got, want, tolerance)) {
    ++failures;
    std::fprintf(stderr, "FAIL: %s: %.17g, expected %.17g\n", what.c_str(), got, want);
  }
}

// The last line of a test: prints "<suite>: N checks, M failures" to stdout and
// returns main's exit code, 0 when no check failed, else 1.
inline int report(const char* suite) {
  std::printf("%s: %d checks, %d failures\n", suite, checks, failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace hoderiv_test
