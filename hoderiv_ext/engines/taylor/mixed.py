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
would need o reverse sweeps). The per-sample products T diag(c) T^T are one
op, ``weighted_gram`` (:mod:`hoderiv_ext.ops.gram`); under torch.compile, for
d <= 8, a broadcast product summed over units (inductor fuses it into one
loop; COMPILED_REDUCTION_MAX_D), above that a batched matrix product. The
first layer's tangents are the same for every sample: its term is one matrix
product (:func:`_shared_term`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.engines.taylor.plan import TaylorPlan
from hoderiv_ext.engines.taylor.sweep import ActivationInput, forward_sweep, reverse_sweep
from hoderiv_ext.ops.gram import shared_weighted_gram, weighted_gram
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


# Under torch.compile, the per-sample products T diag(c) T^T of inputs up to this width are written as a
# broadcast product summed over units, which inductor fuses into one loop, instead of a batched matrix
# product of (d, m) by (m, d) per sample. Measured with inductor on CPU (one thread, N = 1024, m = 32,
# 2026-12-04): 22 / 49 / 176 us against the bmm's 59 / 173 / 309 us at d = 2 / 4 / 8, and 690 against
# 567 us at d = 16. Eagerly the bmm is faster at every d (the broadcast product is materialised). On CUDA the
# same rule applies, not measured yet.
COMPILED_REDUCTION_MAX_D = 8


def _contract(
    inputs: tuple[ActivationInput, ...], curvatures: tuple[Tensor, ...], request: HessianRequest, n: int, d: int,
    x: Tensor,
) -> Tensor:
    """sum_l T_l diag(c_l) T_l^T restricted to the request: (N, d, d), (N, k, d), (N, d) or (N,)."""
    total: Tensor | None = None
    for recorded, curvature in zip(inputs, curvatures):
        tangents = recorded.tangents  # (N, d, m) or (d, m)
        if tangents.dim() == 2:  # the first layer's tangents, the same for every sample
            term = _shared_term(tangents, curvature, request)
            total = term if total is None else total + term
            continue
        if request.kind in ("full", "rows"):
            rows = tangents if request.kind == "full" else tangents[:, list(request.rows)]  # (N, k, m)
            if not torch.compiler.is_compiling():  # one pass, no per-sample matrix products (ops/gram.py)
                term = weighted_gram(rows, curvature, tangents)  # (N, k, d)
            elif d <= COMPILED_REDUCTION_MAX_D:  # one fused loop over (N, k, d, m), nothing materialised
                term = ((rows * curvature.unsqueeze(1)).unsqueeze(2) * tangents.unsqueeze(1)).sum(-1)
            else:
                term = (rows * curvature.unsqueeze(1)) @ tangents.transpose(-1, -2)
            total = term if total is None else total + term
            continue
        scaled = tangents * curvature.unsqueeze(1)  # (N, d, m)
        if request.kind == "diagonal":
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


def _shared_term(tangents: Tensor, curvature: Tensor, request: HessianRequest) -> Tensor:
    """T diag(c) T^T for tangents T (d, m) shared by every sample and curvatures c (N, m), restricted to the request.

    Entry (i, j) is sum_u c_u T_iu T_ju: ONE matrix product of c with products of T's rows
    (:func:`~hoderiv_ext.ops.gram.shared_weighted_gram`; squares for the diagonal and the
    Laplacian), instead of the per-sample tangents (N, d, m) made and multiplied sample by sample.
    """
    if request.kind in ("full", "rows"):
        left = tangents if request.kind == "full" else tangents[list(request.rows)]  # (k, m)
        return shared_weighted_gram(left, curvature, tangents)  # (N, k, d)
    squares = tangents * tangents  # (d, m)
    if request.kind == "diagonal":
        return curvature @ squares.t()  # (N, d)
    if request.dims is not None:  # partial laplacian
        squares = squares[list(request.dims)]
    return curvature @ squares.sum(0)  # (N,)
