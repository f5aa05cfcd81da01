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
from hoderiv_ext.engines.taylor.sweep import forward_sweep, network_jet_sweep
from hoderiv_ext.ops import jet as jet_ops
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
        return _canonical(jet.value, jet.tangents, jet.second, request, d)
    r = directions.shape[-1]
    unit = torch.eye(d, dtype=x.dtype, device=x.device)
    if directions.dim() == 2:
        along = torch.cat([unit, directions.t()], dim=0)  # (d + r, d)
    else:
        along = torch.cat([unit.unsqueeze(0).expand(n, d, d), directions.transpose(1, 2)], dim=1)  # (N, d + r, d)
    jet = forward_sweep(plan, x, JetLayout(d + r, collapsed=tuple(range(d, d + r))), along)
    return jet.value, jet.tangents[:, :d].transpose(1, 2), jet.second[:, 0]


def _canonical(value: Tensor, tangents: Tensor, second: Tensor, request: HessianRequest, d: int) -> Canonical:
    """Canonical (value (N, o), jacobian (N, o, d), second) from a jet's value, tangents (N, d, o) and slots."""
    return value, tangents.transpose(1, 2), second_from_slots(second, request, d)


class PreparedForward:
    """Forward Taylor mode of one plan for one request and input width, its op arguments made once.

    :func:`hoderiv_ext.engines.select.choose_engine` keeps one with its choice on the plan when it
    chooses forward Taylor mode for a plain network (the choice does not depend on the batch), and
    :func:`hoderiv_ext.engines.select.remembered_choice` hands it to later calls with the same request,
    width, dtype, device and backend while the plan is current. It holds the plan, the request, the jet
    layout and the plan's one-op arguments (the network's own parameters: no tensor made in one mode
    reaches a later call). :meth:`run` computes exactly what :func:`run_forward` computes, through the
    same op (tested).
    """

    algorithm = "forward"

    def __init__(self, plan: TaylorPlan, request: HessianRequest, d: int) -> None:
        network = plan.network_jet_arguments()
        if network is None:
            raise ValueError("PreparedForward needs a plan with an activation (network_jet)")
        self.plan, self.request, self.d = plan, request, d
        self.layout = layout_for(request, d)
        self.operands = jet_ops.network_jet_operands(network, self.layout)

    def run(self, x: Tensor) -> Canonical:
        """Canonical (value (N, o), jacobian (N, o, d), second) for x (N, d); grad mode as the caller set it."""
        jet = network_jet_sweep(x, self.operands, self.layout)
        return _canonical(jet.value, jet.tangents, jet.second, self.request, self.d)
