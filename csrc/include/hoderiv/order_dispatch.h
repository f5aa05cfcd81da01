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

}  // namespace hoderiv
