"""Univariate Taylor mode: the Taylor coefficients of f along R directions, to order K, in one forward sweep.

Along a direction v the coefficients c_k = (1/k!) d^k/dt^k h(x + t v) at t = 0
of every hidden value h propagate exactly through the layers:

* Linear h' = W h + b: c'_k = W c_k for k >= 1 (the bias enters c_0 only);
* phi h' = phi(a): with s_j = phi^(j)(a_0) / j! (the fused elementwise op
  gives phi^(0..K) in one pass) and delta = sum_{k>=1} a_k t^k,
  phi(a_0 + delta) = sum_j s_j delta^j, evaluated by Horner's rule in
  truncated power-series arithmetic (Faa di Bruno): y = delta (s_1 + delta
  (s_2 + ... + delta s_K)).

The jet is one tensor (N, S, m) with S = 1 + d + R K: the value, the d unit
tangents (the gradient comes from the same sweep) and the R K coefficients,
so a Linear layer stays ONE GEMM on all of them. This serves
``directional_derivatives`` (R = 1, K = order) and the randomized bi-Laplacian
from fourth-order coefficients along r Gaussian directions. Cost per
activation: O(K^2) elementwise products per direction over (N, m).
Differentiable by ordinary autograd through the elementwise op (to order 8,
so order-8 coefficients are not differentiable again).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.engines.taylor.plan import LinearStep, TaylorPlan
from hoderiv_ext.ops import elementwise as elementwise_ops


def _series_product(a: Tensor, b: Tensor, order: int) -> Tensor:
    """Truncated product of power series along axis -2: a, b (..., order + 1, m) (index = power of t)."""
    terms = [sum(a[..., i, :] * b[..., k - i, :] for i in range(k + 1)) for k in range(order + 1)]
    return torch.stack(terms, dim=-2)


def _compose(scaled: Tensor, coefficients: Tensor, order: int) -> Tensor:
    """sum_{j=1..K} s_j delta^j, orders 1..K: scaled (K + 1, N, 1, m) holds s_j; coefficients (N, R, K, m)."""
    n, r, _, m = coefficients.shape
    zero = coefficients.new_zeros((n, r, 1, m))
    delta = torch.cat([zero, coefficients], dim=2)  # orders 0..K, order 0 = 0
    horner = scaled[order].unsqueeze(2).expand(n, r, 1, m)  # the constant series s_K
    horner = torch.cat([horner, coefficients.new_zeros((n, r, order, m))], dim=2)
    for j in range(order - 1, 0, -1):
        horner = _series_product(delta, horner, order)
        horner = torch.cat([horner[:, :, :1] + scaled[j].unsqueeze(2), horner[:, :, 1:]], dim=2)
    return _series_product(delta, horner, order)[:, :, 1:]


def univariate_sweep(plan: TaylorPlan, x: Tensor, directions: Tensor, order: int) -> tuple[Tensor, Tensor, Tensor]:
    """(value (N, o), gradient tangents (N, d, o), coefficients (N, R, K, o)) along directions (R, d) or (N, R, d).

    Coefficient k - 1 along direction r is (1/k!) d^k/dt^k f(x + t v_r) at t = 0.
    """
    n, d = x.shape
    r = directions.shape[-2]
    along = directions if directions.dim() == 3 else directions.unsqueeze(0).expand(n, r, d)
    unit = torch.eye(d, dtype=x.dtype, device=x.device).unsqueeze(0).expand(n, d, d)
    # The input's jet: value x, unit tangents, first-order coefficients v_r, higher ones 0.
    higher = x.new_zeros((n, r * (order - 1), d))
    jet = torch.cat([x.unsqueeze(1), unit, torch.cat([along.unsqueeze(2), higher.reshape(n, r, order - 1, d)], 2)
                     .reshape(n, r * order, d)], dim=1)
    pending_bias: Tensor | None = None
    for step in plan.steps:
        if isinstance(step, LinearStep):
            if pending_bias is not None:
                jet = torch.cat([(jet[:, 0] + pending_bias).unsqueeze(1), jet[:, 1:]], dim=1)
            jet = F.linear(jet, step.weight)
            pending_bias = step.bias
            continue
        a = jet[:, 0] if pending_bias is None else jet[:, 0] + pending_bias
        pending_bias = None
        phi = elementwise_ops.elementwise_derivatives(a, step.function.name, step.function.params, order)
        scaled = torch.stack([phi[j] / math.factorial(j) for j in range(order + 1)]).unsqueeze(2)  # (K+1, N, 1, m)
        m = a.shape[1]
        coefficients = jet[:, 1 + d :].reshape(n, r, order, m)
        composed = _compose(scaled, coefficients, order).reshape(n, r * order, m)
        jet = torch.cat([phi[0].unsqueeze(1), phi[1].unsqueeze(1) * jet[:, 1 : 1 + d], composed], dim=1)
    value = jet[:, 0] if pending_bias is None else jet[:, 0] + pending_bias
    o = value.shape[1]
    return value, jet[:, 1 : 1 + d], jet[:, 1 + d :].reshape(n, r, order, o)


def run_univariate(plan: TaylorPlan, x: Tensor, request: HessianRequest, directions: Tensor | None) -> Canonical:
    """Canonical (value (N, o), jacobian (N, o, d), bi-Laplacian estimate (N, o)) for a randomized bi-Laplacian.

    The Gaussian ``directions`` (N, d, r) v_k: E[D^4 f[v, v, v, v]] = 3 Δ²f, so the estimate is
    (1 / 3r) Σ_k D^4 f[v_k]. (The exact bi-Laplacian is the ``bilaplacian`` algorithm.)
    """
    if request.kind != "bilaplacian" or directions is None:
        raise ValueError("the univariate algorithm serves the randomized bi-Laplacian (Bilaplacian(samples=r)); "
                         "the exact one is the bilaplacian algorithm")
    along = directions.transpose(1, 2)  # (N, r, d)
    value, tangents, coefficients = univariate_sweep(plan, x, along, 4)
    fourth = 24 * coefficients[:, :, 3].sum(1) / (3 * along.shape[1])  # D^4 f[v] = 4! c_4
    return value, tangents.transpose(1, 2), fourth
