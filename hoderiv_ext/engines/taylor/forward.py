"""Forward Taylor mode: value, tangents and the request's second-order slots in one forward sweep.

Cost: every GEMM carries S = 1 + d + s columns per sample (s second-order
slots of the request, :mod:`hoderiv_ext.engines.taylor.slots`), every
activation one fused kernel over the jet. Serves every request and any number
of outputs.
"""

from __future__ import annotations

from torch import Tensor

from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.engines.taylor.plan import TaylorPlan
from hoderiv_ext.engines.taylor.slots import layout_for, second_from_slots
from hoderiv_ext.engines.taylor.sweep import forward_sweep


def run_forward(plan: TaylorPlan, x: Tensor, request: HessianRequest) -> Canonical:
    """Canonical (value (N, o), jacobian (N, o, d), second) for x (N, d)."""
    d = x.shape[1]
    jet = forward_sweep(plan, x, layout_for(request, d))
    return jet.value, jet.tangents.transpose(1, 2), second_from_slots(jet.second, request, d)
