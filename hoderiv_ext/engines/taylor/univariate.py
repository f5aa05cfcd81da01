"""Univariate Taylor mode: the Taylor coefficients of f along R directions, to order K, in one forward sweep.

Along a direction v the coefficients c_k = (1/k!) d^k/dt^k h(x + t v) at t = 0
of every hidden value h propagate exactly through the layers:

* Linear h' = W h + b: c'_k = W c_k for k >= 1 (the bias enters c_0 only);
* phi h' = phi(a): with s_j = phi^(j)(a_0) / j! and delta = sum_{k>=1} a_k t^k,
  phi(a_0 + delta) = sum_j s_j delta^j, evaluated by Horner's rule in
  truncated power-series arithmetic (Faa di Bruno): y = delta (s_1 + delta
  (s_2 + ... + delta s_K)).

The jet is one tensor (N, S, m) with S = 1 + d + R K: the value, the d unit
tangents (the gradient comes from the same sweep) and the R K coefficients,
so a Linear layer stays ONE GEMM on all of them. Every activation step is ONE
fused kernel, ``jet_univariate`` (CPU and CUDA, math in
csrc/include/hoderiv/univariate_math.h): it reads the jet once, computes
phi^(0..K) in registers, composes the series (K (K+1) (K+2) / 6
multiply-adds per direction and unit: 20 for K = 4, 120 for K = 8) and
writes the jet once; the bias is folded in. This serves ``directional_derivatives`` (R = 1, K = order) and
the randomized bi-Laplacian from fourth-order coefficients along r Gaussian
directions. Differentiable: the step's gradient is the fused
``jet_univariate_backward`` (it needs phi^(K+1), so to K = 7: order-8
coefficients are not differentiable again), itself differentiable through
its torch-ops twin (:func:`hoderiv_ext.ops.jet_composite.univariate_activation`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.engines.taylor.plan import LinearStep, TaylorPlan
from hoderiv_ext.ops import jet as jet_ops


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
        jet = jet_ops.jet_univariate(jet, pending_bias, step.function.name, step.function.params, d, order)
        pending_bias = None
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
