"""Forward Taylor mode: value, tangents and the request's second-order slots in one forward sweep.

Cost: every GEMM carries S = 1 + d + s columns per sample (s second-order
slots of the request, :mod:`hoderiv_ext.engines.taylor.slots`), every
activation one fused kernel over the jet. Serves every request and any number
of outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.engines.taylor.plan import TaylorPlan
from hoderiv_ext.engines.taylor.slots import layout_for, second_from_slots
from hoderiv_ext.engines.taylor.sweep import forward_sweep
from hoderiv_ext.ops.layout import JetLayout


def run_forward(plan: TaylorPlan, x: Tensor, request: HessianRequest, directions: Tensor | None = None) -> Canonical:
    """Canonical (value (N, o), jacobian (N, o, d), second) for x (N, d).

    ``directions``: sigma (d, r) or (N, d, r) of a weighted Laplacian: the jet
    carries the d unit tangents (for the gradient) and the r columns of sigma,
    whose squares one collapsed slot sums: S = 1 + d + r + 1.
    """
    n, d = x.shape
    if directions is None:
        jet = forward_sweep(plan, x, layout_for(request, d))
        return jet.value, jet.tangents.transpose(1, 2), second_from_slots(jet.second, request, d)
    r = directions.shape[-1]
    unit = torch.eye(d, dtype=x.dtype, device=x.device)
    if directions.dim() == 2:
        along = torch.cat([unit, directions.t()], dim=0)  # (d + r, d)
    else:
        along = torch.cat([unit.unsqueeze(0).expand(n, d, d), directions.transpose(1, 2)], dim=1)  # (N, d + r, d)
    jet = forward_sweep(plan, x, JetLayout(d + r, collapsed=tuple(range(d, d + r))), along)
    return jet.value, jet.tangents[:, :d].transpose(1, 2), jet.second[:, 0]
