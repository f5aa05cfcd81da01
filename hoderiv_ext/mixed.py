"""Mixed-mode second derivatives of a scalar-output MLP: forward tangents + one reverse sweep.

For f = L_K o phi o L_{K-1} o ... o phi o L_1 with pre-activations a_l, their
input Jacobians J_l = da_l/dx (stored as tangents T_l = J_l^T, (N, d, m_l)) from a forward-mode pass, and
delta_l = df/dphi(a_l) (N, m_l) from one reverse sweep,

    H = sum_l J_l^T diag(delta_l * phi''(a_l)) J_l            (N, d, d)

(DESIGN.md, "Mixed mode"). Rows, diagonal and Laplacian are slices / row sums
of the same terms. Cost per layer: (d + 1) forward GEMM columns + one reverse
GEMM + N m d^2 for the contraction, against 1 + d + d(d+1)/2 GEMM columns for
forward Taylor mode: far cheaper for the full Hessian as d grows.

Everything here is torch ops around the fused elementwise op (phi, phi', phi''
in one pass), so results are differentiable to any order by ordinary autograd.
Only scalar outputs (o = 1) are served: o outputs would need o reverse sweeps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hoderiv_ext.requests import HessianRequest
from hoderiv_ext.taylor import LinearStep, TaylorPlan


def run_mixed(plan: TaylorPlan, x: Tensor, request: HessianRequest, create_graph: bool) -> tuple:
    """Canonical (value (N, 1), jacobian (N, 1, d), second) for a scalar-output network."""
    with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
        return _run_mixed(plan, x, request)


def _run_mixed(plan: TaylorPlan, x: Tensor, request: HessianRequest) -> tuple:
    ops = torch.ops.hoderiv_ext
    n, d = x.shape
    hidden = x
    # Tangents dh/dx_i stored as (N, d, m) so a Linear is ONE GEMM on (N*d, m):
    # None = identity, (d, m) while the network is still affine, then (N, d, m).
    tangents: Tensor | None = None
    saved: list[tuple[Tensor, Tensor, Tensor]] = []  # per activation: (tangents of its input a, phi', phi'')
    for step in plan.steps:
        if isinstance(step, LinearStep):
            hidden = F.linear(hidden, step.weight, step.bias)
            tangents = step.weight.t() if tangents is None else F.linear(tangents, step.weight)
            continue
        phi = ops.elementwise_derivatives(hidden, step.function.name, list(step.function.params), 2)
        pre_tangents = tangents if tangents is not None else torch.eye(d, dtype=x.dtype, device=x.device)
        if pre_tangents.dim() == 2:
            pre_tangents = pre_tangents.unsqueeze(0).expand(n, -1, -1)
        saved.append((pre_tangents, phi[1], phi[2]))
        hidden = phi[0]
        tangents = phi[1].unsqueeze(1) * pre_tangents

    value = hidden  # (N, 1)
    if tangents is None:
        tangents = torch.eye(d, dtype=x.dtype, device=x.device)
    if tangents.dim() == 2:
        tangents = tangents.unsqueeze(0).expand(n, -1, -1)
    gradient = tangents[:, :, 0]  # (N, d)

    # Reverse sweep: delta = df/dh for the hidden state after each step.
    delta = torch.ones((n, 1), dtype=x.dtype, device=x.device)
    weights: list[Tensor] = []  # delta_l * phi''(a_l), last activation first
    activation_index = len(saved)
    for step in reversed(plan.steps):
        if isinstance(step, LinearStep):
            delta = delta @ step.weight
        else:
            activation_index -= 1
            _, first, second = saved[activation_index]
            weights.append(delta * second)
            delta = delta * first
    weights.reverse()

    second_order = _contract(saved, weights, request, n, d, x)
    return value, gradient.unsqueeze(1), second_order


def _contract(saved: list, weights: list[Tensor], request: HessianRequest, n: int, d: int, x: Tensor) -> Tensor | None:
    """sum_l T_l diag(c_l) T_l^T (T_l: (N, d, m)), restricted to the request; canonical shape with o = 1."""
    if request.kind == "none":
        return None
    total: Tensor | None = None
    for (pre_tangents, _, _), c in zip(saved, weights):
        scaled = pre_tangents * c.unsqueeze(1)  # (N, d, m)
        if request.kind == "full":
            term = scaled @ pre_tangents.transpose(1, 2)  # (N, d, d)
        elif request.kind == "rows":
            term = scaled[:, list(request.rows)] @ pre_tangents.transpose(1, 2)  # (N, k, d)
        elif request.kind == "diagonal":
            term = (scaled * pre_tangents).sum(2)  # (N, d)
        else:  # laplacian
            term = (scaled * pre_tangents).sum((1, 2))  # (N,)
        total = term if total is None else total + term
    if total is None:  # no activation: an affine network
        shapes = {"full": (n, d, d), "rows": (n, len(request.rows), d), "diagonal": (n, d), "laplacian": (n,)}
        total = x.new_zeros(shapes[request.kind])
    return total.unsqueeze(1)
