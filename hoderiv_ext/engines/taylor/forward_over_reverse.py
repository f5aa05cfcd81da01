"""Selected Hessian rows of a scalar-output MLP by forward-over-reverse: cost grows with k, not d.

Forward Taylor mode and mixed mode carry all d input tangents, so a request
for k << d Hessian rows costs them as much as the whole Hessian. Here the
forward sweep carries only the k tangents along the unit vectors e_r (r in
the requested rows), and the reverse sweep carries the adjoint
delta = df/dh together with its directional derivatives along them
(:mod:`hoderiv_ext.engines.taylor.sweep`). At the input, delta = grad f and
dot(delta) = H e_r, the requested rows (H is symmetric). Cost per layer:
(1 + k) forward and (1 + k) reverse GEMM columns -- the FLOPs of nested
autograd's one backward per row, in a few batched ops. Scalar outputs only
(o outputs would need o reverse sweeps).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.engines.taylor.plan import TaylorPlan
from hoderiv_ext.engines.taylor.sweep import forward_sweep, reverse_sweep
from hoderiv_ext.ops.layout import JetLayout


def run_forward_over_reverse(plan: TaylorPlan, x: Tensor, request: HessianRequest) -> Canonical:
    """Canonical (value (N, 1), jacobian (N, 1, d), rows (N, 1, k, d)) for a scalar-output network."""
    if request.kind != "rows":
        raise ValueError(f"forward-over-reverse serves hessian=[rows] requests, got {request.kind!r}")
    n, d = x.shape
    rows = list(request.rows)
    directions = torch.eye(d, dtype=x.dtype, device=x.device)[rows]  # (k, d)
    jet = forward_sweep(plan, x, JetLayout(len(rows)), directions, record=True)
    adjoint = reverse_sweep(plan, jet.inputs, x, directional=True)
    hessian_rows = adjoint.directional
    if hessian_rows is None:  # an affine network: zero second derivatives
        hessian_rows = x.new_zeros((n, len(rows), d))
    return jet.value, adjoint.gradient.unsqueeze(1), hessian_rows.unsqueeze(1)
