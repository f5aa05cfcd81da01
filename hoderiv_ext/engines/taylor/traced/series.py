"""Truncated power series in torch ops: the univariate jets' unary (composition) and product (Cauchy) rules.

A univariate jet carries, per direction r, the Taylor coefficients c_1..c_K of
h(x + s v_r) as a tensor (B, R, K, *rest) (index k - 1 holds c_k) next to the
value c_0 (:mod:`~hoderiv_ext.engines.taylor.traced.jets`).

* phi(a): with s_j = phi^(j)(a_0) / j! and delta = sum_{k>=1} c_k s^k,
  phi(a_0 + delta) - phi(a_0) = sum_{j=1..K} s_j delta^j mod s^(K+1), by
  Horner's rule (H_K = s_K, H_j = s_j + delta H_{j+1} kept to order K - j,
  result delta H_1): K(K+1)(K+2)/6 multiply-adds per direction and element
  (20 for K = 4, 120 for K = 8), in K(K+1)/2 products of slices -- the math of
  csrc/include/hoderiv/univariate_math.h (``compose``), where the fused op
  ``jet_univariate`` runs it for the functions of the kernel table.
* B(u, w) for a bilinear B (elementwise mul, batched matmul):
  c_k(B(u, w)) = sum_{i=0..k} B(c_i(u), c_{k-i}(w)), K + 1 products of slices.

Every op is differentiable (slices of fresh tensors are accumulated in place,
which autograd records), so results go into training losses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable

from torch import Tensor

Bilinear = Callable[[Tensor, Tensor], Tensor]


def scaled(derivatives: Sequence[Tensor] | Tensor, order: int) -> list[Tensor]:
    """s_j = phi^(j) / j! for j = 0..order from phi^(0..order) (a sequence, or a tensor stacked on axis 0)."""
    return [derivatives[j] if j < 2 else derivatives[j] / math.factorial(j) for j in range(order + 1)]


def compose(taylor: Sequence[Tensor], coefficients: Tensor) -> Tensor:
    """The coefficients (B, R, K, *rest) of phi(a) from those of a and taylor[j] = s_j (B, *rest), j = 1..K."""
    order = coefficients.shape[2]

    def s(j: int) -> Tensor:
        return taylor[j].unsqueeze(1).unsqueeze(2)  # (B, 1, 1, *rest)

    higher: Tensor | None = None  # H_{j+1} minus its constant s_{j+1}: orders 1 .. K - j - 1
    for j in range(order - 1, -1, -1):
        length = order - j  # delta H_{j+1} to order K - j
        product = coefficients[:, :, :length] * s(j + 1)
        if higher is not None:
            for i in range(1, length):  # c_i times the orders 1 .. length - i of H_{j+1}
                product[:, :, i:].add_(coefficients[:, :, i - 1:i] * higher[:, :, :length - i])
        higher = product
    assert higher is not None
    return higher


def cauchy(u0: Tensor, u: Tensor, w0: Tensor, w: Tensor, op: Bilinear) -> Tensor:
    """The coefficients (B, R, K, *rest) of B(u, w) from the values u0, w0 (B, 1, *rest) and the coefficients
    u, w (B, R, K, *rest)."""
    order = u.shape[2]
    out = op(u0.unsqueeze(1), w) + op(u, w0.unsqueeze(1))
    for i in range(1, order):  # c_i(u) c_{k-i}(w) for k = i + 1 .. K
        out[:, :, i:].add_(op(u[:, :, i - 1:i], w[:, :, :order - i]))
    return out
