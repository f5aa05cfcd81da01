// Chooses the compile-time Taylor order K (the size of the per-element
// coefficient arrays) for a runtime order: the smallest of 2, 4, 8 that
// covers it. Three instantiations keep the binaries and the CUDA compile
// small while low orders (the common y, y', y'') use the smallest arrays.
#pragma once

#include <type_traits>

#include "hoderiv/derivative_math.h"

namespace hoderiv {

template <typename Body>
void dispatch_taylor_order(int needed_order, Body&& body) {
  if (needed_order <= 2) {
    body(std::integral_constant<int, 2>{});
  } else if (needed_order <= 4) {
    body(std::integral_constant<int, 4>{});
  } else {
    static_assert(math::kMaxOrder == 8, "update dispatch_taylor_order");
    body(std::integral_constant<int, 8>{});
  }
}

// Calls body(std::integral_constant<math::Function, F>{}) for the runtime
// function, so host loops see a constant and the derivative switch folds
// away (one specialisation per entry of functions.def; the CUDA kernels keep
// the runtime switch to hold their compile time down, and there the switch
// is uniform across a warp).
template <typename Body>
void dispatch_function(math::Function function, Body&& body) {
  using F = math::Function;
  switch (function) {
#define HODERIV_FUNCTION(ENUM, NAME, NUM_PARAMS, PARAM_NAMES) \
  case F::ENUM:                                               \
    body(std::integral_constant<F, F::ENUM>{});               \
    return;
#include "hoderiv/functions.def"
  }
  body(std::integral_constant<F, F::kIdentity>{});  // unreachable: parse_function validated the name
}

}  // namespace hoderiv
