"""The ops layer: the compiled extension, typed wrappers of every ``torch.ops.hoderiv_ext`` op,
their fake kernels and autograd formulas (those of the forward ops elementwise_derivatives,
jet_activation, jet_activation_first, jet_bilaplacian_extra and jet_univariate are C++ autograd kernels,
csrc/ops/autograd.cpp, registered with the ops by the extension; the others are registered here).

  library        loading ``hoderiv_ext._C``; build_info, the function table
  layout         JetLayout: what each slot of a jet holds
  elementwise    wrappers of the elementwise derivative ops
  jet            wrappers of the Taylor activation-step ops (the bi-Laplacian's extra slots, univariate jets)
  jet_composite  the activation step in torch ops (the double backward; the tests' twin)
  gram           weighted_gram: mixed mode's per-sample Hessian terms T_a diag(w) T_b^T
  fake           fake kernels for torch.compile / FakeTensor
  formulas       autograd formulas of the backward ops and the polynomial ops
  register       registers the fake kernels and those formulas with the dispatcher (at import)
"""

from hoderiv_ext.ops import register as _register  # noqa: F401  (registers the fake kernels and formulas)
from hoderiv_ext.ops.library import MAX_KERNEL_ORDER, build_info, extension_loaded, function_table, has_kernels_for

__all__ = ["MAX_KERNEL_ORDER", "build_info", "extension_loaded", "function_table", "has_kernels_for"]
