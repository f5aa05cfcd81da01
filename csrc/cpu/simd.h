// Host SIMD for the CPU kernels.
//
// The row loops of the CPU kernels are written so the compiler vectorises
// them (no branches or library calls for the tanh family: see
// exp_nonpositive in hoderiv/derivative_math.h). A wheel must still run on
// any x86-64 machine, so instead of -march flags each hot loop function is
// compiled three times -- AVX-512, AVX2 + FMA and baseline x86-64 -- and the
// loader picks the best the machine supports (GCC function multiversioning).
// Other compilers and architectures get the baseline build.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(HODERIV_NO_CPU_CLONES)
#define HODERIV_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define HODERIV_CPU_CLONES
#endif
