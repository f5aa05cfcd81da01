"""Partial, weighted and randomized Laplacians of a scalar-output MLP: forward along the directions only,
the gradient by one reverse sweep.

For tr(sigma sigma^T H) = sum_k sigma_k^T H sigma_k the forward Taylor jet
needs only the r tangents along the columns sigma_k and one collapsed slot
(S = 2 + r); forward Taylor mode adds the d unit tangents for the gradient
(S = 2 + d + r). Here the gradient comes from the reverse sweep over the same
forward pass instead (delta <- delta W, delta <- delta phi'(a)): one reverse
column per layer. A partial Laplacian over the inputs D is the same with the
unit vectors of D as sigma (S = 2 + |D|). Scalar outputs only (o outputs would
need o reverse sweeps).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.engines.taylor.plan import TaylorPlan
from hoderiv_ext.engines.taylor.sweep import forward_sweep, reverse_sweep
from hoderiv_ext.ops.indexing import take
from hoderiv_ext.ops.layout import JetLayout


def run_collapsed_reverse(plan: TaylorPlan, x: Tensor, request: HessianRequest, directions: Tensor | None) -> Canonical:
    """Canonical (value (N, 1), jacobian (N, 1, d), Laplacian (N, 1)) for a partial or weighted Laplacian request.

    ``directions``: sigma (d, r) or (N, d, r) of a weighted / randomized Laplacian; None for a partial one.
    """
    if request.kind != "laplacian" or (directions is None and request.dims is None):
        raise ValueError("the collapsed_reverse algorithm serves partial, weighted and randomized Laplacians")
    if directions is None:
        along = take(torch.eye(x.shape[1], dtype=x.dtype, device=x.device), 0, request.dims)  # (p, d)
    else:
        along = directions.transpose(-1, -2)  # (r, d) or (N, r, d)
    r = along.shape[-2]
    jet = forward_sweep(plan, x, JetLayout(r, collapsed=tuple(range(r))), along, record=True)
    adjoint = reverse_sweep(plan, jet.inputs, x, directional=False)
    return jet.value, adjoint.gradient.unsqueeze(1), jet.second[:, 0]
