"""Value and gradient of a scalar-output MLP by one forward and one reverse sweep (no tangents).

For a request without second derivatives the gradient of a scalar output is
cheapest in reverse mode: the forward sweep keeps phi'(a_l) at every
activation (the fused elementwise op computes phi and phi' in one pass), and
the reverse sweep forms delta = df/dh back to the input,

    Linear  h' = W h + b:  delta <- delta W        phi  h' = phi(a):  delta <- delta * phi'(a)

Cost: one forward and one reverse GEMM column per sample and layer, against
1 + d columns for forward Taylor mode. Differentiable by ordinary autograd
(the elementwise op's backward is its fused kernel). Scalar outputs only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.engines.taylor.plan import LinearStep, TaylorPlan
from hoderiv_ext.ops import elementwise as elementwise_ops


def run_reverse(plan: TaylorPlan, x: Tensor, request: HessianRequest) -> Canonical:
    """Canonical (value (N, 1), jacobian (N, 1, d), None) for a scalar-output network."""
    if request.kind != "none":
        raise ValueError(f"the reverse algorithm serves hessian=None requests, got {request.kind!r}")
    value = x
    slopes: list[Tensor] = []  # phi'(a_l) per activation
    for step in plan.steps:
        if isinstance(step, LinearStep):
            value = F.linear(value, step.weight, step.bias)
            continue
        phi = elementwise_ops.elementwise_derivatives(value, step.function.name, step.function.params, 1)
        value = phi[0]
        slopes.append(phi[1])
    delta = torch.ones((x.shape[0], 1), dtype=x.dtype, device=x.device)
    for step in reversed(plan.steps):
        delta = delta @ step.weight if isinstance(step, LinearStep) else delta * slopes.pop()
    return value, delta.unsqueeze(1), None
