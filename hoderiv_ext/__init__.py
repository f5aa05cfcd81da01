"""hoderiv_ext: fast, differentiable higher-order derivatives for PyTorch.

Public API:
    derivatives(f, x, hessian=...)             value, gradient and second derivatives of f per sample
                                               (hessian=Laplacian(...), Bilaplacian(...) for more operators)
    directional_derivatives(f, x, v, order)    d^k/dt^k f(x + t v) at t = 0, k = 0..order
    elementwise_derivatives(fn, x, order=2)    (y, y', y'', ...) of an elementwise function
    hessian_rows(loss, params, rows), newton_step(loss, params)   parameter space
    Polynomial(coefficients)                   an elementwise polynomial the kernels serve
    build_info()                               what the compiled extension contains
    trace_cache_info(), clear_trace_cache()    the traced programs of functions that are no plain network

Layers, top to bottom: api/ (the entry points), engines/ (the choice of engine
and algorithm, the Taylor and autograd engines), ops/ (the compiled ops, their
fake kernels and autograd formulas); core/ holds what they share.
"""

from hoderiv_ext import ops as _ops  # noqa: F401  (registers the ops' fake kernels and autograd formulas)
from hoderiv_ext.api.derivatives import derivatives
from hoderiv_ext.api.directional import directional_derivatives
from hoderiv_ext.api.elementwise import elementwise_derivatives
from hoderiv_ext.api.parameters import ParameterDerivatives, hessian_rows, newton_step
from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.core.functions import KERNEL_FUNCTION_NAMES, Polynomial
from hoderiv_ext.core.operators import Bilaplacian, Laplacian
from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Derivatives
from hoderiv_ext.engines.taylor.traced.capture import clear_trace_cache, trace_cache_info
from hoderiv_ext.ops.library import build_info

__version__ = "0.1.0"

__all__ = [
    "build_info",
    "elementwise_derivatives",
    "Polynomial",
    "KERNEL_FUNCTION_NAMES",
    "derivatives",
    "directional_derivatives",
    "Derivatives",
    "hessian_rows",
    "newton_step",
    "ParameterDerivatives",
    "HessianRequest",
    "Laplacian",
    "Bilaplacian",
    "NotServed",
    "trace_cache_info",
    "clear_trace_cache",
    "__version__",
]
