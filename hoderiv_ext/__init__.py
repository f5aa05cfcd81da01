"""hoderiv_ext: fast, differentiable higher-order derivatives for PyTorch.

Public API:
    elementwise_derivatives(fn, x, order=2, backend="auto") -> (y, y', y'', ...)
    Polynomial(coefficients)  -- an elementwise polynomial the kernels serve
    build_info()              -- what the compiled extension contains
"""

from hoderiv_ext._extension import build_info
from hoderiv_ext import _ops  # noqa: F401  (registers fake kernels and autograd formulas)
from hoderiv_ext import _jet_ops  # noqa: F401  (the same for the Taylor activation-step ops)
from hoderiv_ext.elementwise import elementwise_derivatives
from hoderiv_ext.functions import KERNEL_FUNCTION_NAMES, Polynomial
from hoderiv_ext.derivatives import derivatives
from hoderiv_ext.parameters import hessian_rows, newton_step
from hoderiv_ext.requests import HessianRequest
from hoderiv_ext.results import Derivatives

__version__ = "0.1.0"

__all__ = [
    "build_info",
    "elementwise_derivatives",
    "Polynomial",
    "KERNEL_FUNCTION_NAMES",
    "derivatives",
    "Derivatives",
    "hessian_rows",
    "newton_step",
    "HessianRequest",
    "__version__",
]
