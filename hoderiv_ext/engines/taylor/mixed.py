"""Mixed-mode second derivatives of a scalar-output MLP: forward tangents + one reverse sweep.

For f = L_K o phi o L_{K-1} o ... o phi o L_1 with pre-activations a_l, their
input tangents T_l = (da_l/dx)^T (N, d, m_l) from a first-order forward sweep,
and the curvatures c_l = delta_l * phi''(a_l) with delta_l = df/dphi(a_l) from
one reverse sweep (:mod:`hoderiv_ext.engines.taylor.sweep`),

    H = sum_l T_l diag(c_l) T_l^T                               (N, d, d)

Rows, diagonal and Laplacian are slices / row sums of the same terms. Cost
per layer: 1 + d forward GEMM columns + one reverse GEMM + N m d^2 for the
contraction, against 1 + d + d(d+1)/2 GEMM columns for forward Taylor mode:
far cheaper for the full Hessian as d grows. Scalar outputs only (o outputs
would need o reverse sweeps).
"""

from __future__ import annotations

from torch import Tensor

from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.engines.taylor.plan import TaylorPlan
from hoderiv_ext.engines.taylor.sweep import ActivationInput, forward_sweep, reverse_sweep
from hoderiv_ext.ops.layout import JetLayout


def run_mixed(plan: TaylorPlan, x: Tensor, request: HessianRequest) -> Canonical:
    """Canonical (value (N, 1), jacobian (N, 1, d), second) for a scalar-output network."""
    n, d = x.shape
    jet = forward_sweep(plan, x, JetLayout(d), record=request.kind != "none")
    gradient = jet.tangents[:, :, 0]  # (N, d)
    second = None
    if request.kind != "none":
        adjoint = reverse_sweep(plan, jet.inputs, x, directional=False)
        second = _contract(jet.inputs, adjoint.curvatures, request, n, d, x).unsqueeze(1)
    return jet.value, gradient.unsqueeze(1), second


def _contract(
    inputs: tuple[ActivationInput, ...], curvatures: tuple[Tensor, ...], request: HessianRequest, n: int, d: int,
    x: Tensor,
) -> Tensor:
    """sum_l T_l diag(c_l) T_l^T restricted to the request: (N, d, d), (N, k, d), (N, d) or (N,)."""
    total: Tensor | None = None
    for recorded, curvature in zip(inputs, curvatures):
        tangents = recorded.tangents  # (N, d, m) or (d, m)
        scaled = tangents * curvature.unsqueeze(1)  # (N, d, m)
        if request.kind == "full":
            term = scaled @ tangents.transpose(-1, -2)  # (N, d, d)
        elif request.kind == "rows":
            term = scaled[:, list(request.rows)] @ tangents.transpose(-1, -2)  # (N, k, d)
        elif request.kind == "diagonal":
            term = (scaled * tangents).sum(2)  # (N, d)
        elif request.dims is None:  # laplacian
            term = (scaled * tangents).sum((1, 2))  # (N,)
        else:  # partial laplacian: the tangents of its dims only
            dims = list(request.dims)
            term = (scaled[:, dims] * tangents[..., dims, :]).sum((1, 2))
        total = term if total is None else total + term
    if total is None:  # no activation: an affine network
        shapes = {"full": (n, d, d), "rows": (n, len(request.rows), d), "diagonal": (n, d), "laplacian": (n,)}
        total = x.new_zeros(shapes[request.kind])
    return total
