"""Typed wrappers of the elementwise derivative ops ``torch.ops.hoderiv_ext.*_derivatives*``.

  elementwise_derivatives(x, function, params, order)   -> (order+1, *x.shape): phi^(k)(x), k = 0..order
  elementwise_derivatives_backward(grad, x, ..., shift) -> x.shape: sum_k grad[k] * phi^(k+shift)(x)
  polynomial_derivatives(x, coefficients, order)        -> the same for p(x) = sum_j coefficients[j] x^j
  polynomial_derivatives_backward(grad, x, coefficients, shift)

Autograd: a C++ kernel for elementwise_derivatives (csrc/ops/autograd.cpp), :mod:`hoderiv_ext.ops.formulas`
for the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def elementwise_derivatives(x: Tensor, function: str, params: Sequence[float], order: int) -> Tensor:
    """phi^(k)(x) for k = 0..order, stacked: (order + 1, *x.shape), one pass that reads x once."""
    return torch.ops.hoderiv_ext.elementwise_derivatives(x, function, list(params), order)


def elementwise_derivatives_backward(
    grad: Tensor, x: Tensor, function: str, params: Sequence[float], shift: int
) -> Tensor:
    """sum_k grad[k] * phi^(k + shift)(x) for grad (m + 1, *x.shape)."""
    return torch.ops.hoderiv_ext.elementwise_derivatives_backward(grad, x, function, list(params), shift)


def polynomial_derivatives(x: Tensor, coefficients: Tensor, order: int) -> Tensor:
    """p^(k)(x) for k = 0..order, p(x) = sum_j coefficients[j] x^j: (order + 1, *x.shape)."""
    return torch.ops.hoderiv_ext.polynomial_derivatives(x, coefficients, order)


def polynomial_derivatives_backward(grad: Tensor, x: Tensor, coefficients: Tensor, shift: int) -> Tensor:
    """sum_k grad[k] * p^(k + shift)(x) for grad (m + 1, *x.shape)."""
    return torch.ops.hoderiv_ext.polynomial_derivatives_backward(grad, x, coefficients, shift)
