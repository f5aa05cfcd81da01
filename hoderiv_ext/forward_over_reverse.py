"""Selected Hessian rows of a scalar-output MLP by forward-over-reverse: cost grows with k, not d.

Forward Taylor mode and mixed mode carry all d input tangents, so a request
for k << d Hessian rows costs them as much as the whole Hessian. Here the
forward pass carries only the k directional tangents along the unit vectors
e_r (r in the requested rows), and the reverse sweep carries the adjoint
delta = df/dh together with its directional derivatives:

    Linear  h' = W h + b:   delta_in = delta_out W,         dot(delta)_in = dot(delta)_out W
    phi     h' = phi(a):    delta_a  = delta_h * phi'(a),
                            dot(delta)_a = dot(delta)_h * phi'(a) + delta_h * phi''(a) * dot(a)

with dot(a) the tangent of the pre-activation along e_r. At the input,
delta = grad f and dot(delta) = H e_r, the requested rows (H is symmetric).
Cost per layer: (1 + k) forward and (1 + k) reverse GEMM columns -- the same
FLOPs as the seeds' nested autograd (one backward per row), in a few batched
torch ops around the fused elementwise op, differentiable by ordinary
autograd. Scalar outputs only (o outputs would need o reverse sweeps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hoderiv_ext.requests import HessianRequest
from hoderiv_ext.taylor import LinearStep, TaylorPlan


def run_forward_over_reverse(plan: TaylorPlan, x: Tensor, request: HessianRequest, create_graph: bool) -> tuple:
    """Canonical (value (N, 1), jacobian (N, 1, d), rows (N, 1, k, d)) for a scalar-output network."""
    if request.kind != "rows":
        raise ValueError(f"forward-over-reverse serves hessian=[rows] requests, got {request.kind!r}")
    with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
        return _run(plan, x, request)


def _run(plan: TaylorPlan, x: Tensor, request: HessianRequest) -> tuple:
    ops = torch.ops.hoderiv_ext
    n, d = x.shape
    rows = list(request.rows)
    hidden = x
    # Directional tangents (k, m) while the network is affine (the same for every sample), then (N, k, m).
    tangents = torch.eye(d, dtype=x.dtype, device=x.device)[rows]
    saved: list[tuple[Tensor, Tensor, Tensor]] = []  # per activation: phi', phi'', tangents of its input
    for step in plan.steps:
        if isinstance(step, LinearStep):
            hidden = F.linear(hidden, step.weight, step.bias)
            tangents = F.linear(tangents, step.weight)
            continue
        phi = ops.elementwise_derivatives(hidden, step.function.name, list(step.function.params), 2)
        saved.append((phi[1], phi[2], tangents))
        hidden = phi[0]
        tangents = phi[1].unsqueeze(1) * tangents  # (N, k, m); a (k, m) tangent broadcasts

    value = hidden  # (N, 1)
    delta = torch.ones((n, 1), dtype=x.dtype, device=x.device)
    delta_dot: Tensor | None = None  # (N, k, m); None = zero
    activation_index = len(saved)
    for step in reversed(plan.steps):
        if isinstance(step, LinearStep):
            delta = delta @ step.weight
            delta_dot = None if delta_dot is None else delta_dot @ step.weight
            continue
        activation_index -= 1
        first, second, pre_tangents = saved[activation_index]
        curvature = (delta * second).unsqueeze(1) * pre_tangents
        delta_dot = curvature if delta_dot is None else delta_dot * first.unsqueeze(1) + curvature
        delta = delta * first
    if delta_dot is None:  # an affine network: zero second derivatives
        delta_dot = x.new_zeros((n, len(rows), d))
    return value, delta.unsqueeze(1), delta_dot.unsqueeze(1)
