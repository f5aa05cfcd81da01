"""The exact bi-Laplacian as the forward Laplacian of the forward Laplacian, in one forward sweep.

Δ²f = Σ_{i,j ∈ D} ∂_i²∂_j² f over the chosen inputs D (all d, or ``dims``; p = |D|).
Write g = Σ_{j∈D} ∂_j² h for a hidden value h: Δ²h is the Laplacian of g, so it
needs g's tangents T_i = ∂_i g = Σ_j ∂_i∂_j² h, and those need the Hessian of h
over D. The jet of every hidden value h therefore carries

=====================  =======================================================
slots                  content
=====================  =======================================================
main jet (N, S, m)     value, d tangents h_k (the gradient), the p(p+1)/2
                       pairs h_ij, i <= j in D: the full-Hessian jet over D
extra jet (N, p+1, m)  T_i = Σ_{j∈D} h_ijj for i in D, then B = Σ_{i,j∈D} h_iijj
=====================  =======================================================

S + p + 1 = 2 + d + p + p(p+1)/2 slots, against 1 + d + 4p² for univariate
fourth-order jets along the p² polarisation directions e_i, e_i ± e_j
(11 against 40 for d = p = 3). A Linear is linear in every slot (one GEMM each
for the main and the extra jet, the bias in slot 0 only). An activation
y = φ(a) maps the main jet with the fused kernel (``jet_activation``) and the
extra jet by the chain rule, in a second fused kernel (``jet_bilaplacian_extra``,
whose backward is fused too). With g_i = a_i and A_ij = a_ij over D,

    G = Σ_j g_j²,  L = Σ_j A_jj,  H_i = Σ_j A_ij g_j,  Q = Σ_i g_i H_i,  F = Σ_ij A_ij²,  P = Σ_i g_i T_i
    T_i(y) = φ‴ g_i G + 2φ″ H_i + φ″ g_i L + φ′ T_i
    B(y)   = φ⁗ G² + 2φ‴ L G + 4φ‴ Q + φ″ (2F + L² + 4P) + φ′ B

(φ⁽ᵏ⁾ at a; T_i(y) = ∂_i Σ_j y_jj with y_jj = φ″ g_j² + φ′ A_jj, and B(y) = Σ_i ∂_i T_i(y)).
The first activation reads its tangents from the affine prefix's shared
matrix, where A = T = B = 0: T_i(y) = φ‴ g_i G, B(y) = φ⁗ G² (in torch ops).
Cost per activation: the fused second-order kernel plus one fused kernel doing
O(p²) work per (sample, unit). Differentiable to any order (the kernels'
backward is a fused kernel whose own derivative recomputes the torch-ops twin,
:func:`hoderiv_ext.ops.jet_composite.bilaplacian_extra_step`; φ⁽⁰⁻⁴⁾ there come
from the elementwise op, differentiable to order 8). The twins in
:mod:`hoderiv_ext.ops.jet_composite` take any trailing shape (N, K, *rest), so
the traced engine uses them too.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.engines.taylor.plan import ActivationStep, LinearStep, TaylorPlan
from hoderiv_ext.engines.taylor.sweep import CarriedJet
from hoderiv_ext.ops import elementwise as elementwise_ops
from hoderiv_ext.ops import jet as jet_ops
from hoderiv_ext.ops import jet_composite
from hoderiv_ext.ops.indexing import take
from hoderiv_ext.ops.layout import JetLayout, layout_cache


@layout_cache(64)
def bilaplacian_layout(d: int, dims: tuple[int, ...] | None) -> JetLayout:
    """The main jet's layout: d tangents and the pairs i <= j of D (row-major upper triangle over D).

    Cached: a layout holds only integers.
    """
    chosen = tuple(range(d)) if dims is None else dims
    return JetLayout(d, pairs=tuple((chosen[a], chosen[b]) for a in range(len(chosen)) for b in range(a, len(chosen))))


class _BilaplacianCarried(CarriedJet):
    """The forward sweep's state (:class:`CarriedJet`, the main jet) plus the extra jet (N, p+1, m)."""

    def __init__(self, x: Tensor, dims: tuple[int, ...] | None) -> None:
        d = x.shape[1]
        super().__init__(x, bilaplacian_layout(d, dims), None, "jet", False)
        self.d = d
        self.chosen = tuple(range(d)) if dims is None else dims  # D
        self.p = len(self.chosen)
        self.extra: Tensor | None = None  # (N, p + 1, m) once the first activation has run

    def linear(self, step: LinearStep) -> None:
        if self.extra is not None:  # no bias: the extra slots are derivatives of order 3 and 4
            self.extra = torch.nn.functional.linear(self.extra, step.weight)
        super().linear(step)

    def activation(self, step: ActivationStep) -> None:
        name, params = step.function.name, step.function.params
        if self.jet is None:
            phi = elementwise_ops.elementwise_derivatives(self.value, name, params, 4)
            g = take(self.shared_tangents(self.value), 0, self.chosen)  # (p, m), a view when D is a run
            self.extra = jet_composite.first_bilaplacian_extra_step(phi, g)
        else:  # one fused kernel (math: csrc/include/hoderiv/bilaplacian_math.h), the pending bias folded in
            assert self.extra is not None
            self.extra = jet_ops.jet_bilaplacian_extra(self.jet, self.bias, self.extra, name, params, self.d,
                                                       self.chosen)
        super().activation(step)


def bilaplacian_sweep(plan: TaylorPlan, x: Tensor, dims: tuple[int, ...] | None) -> tuple[Tensor, Tensor, Tensor]:
    """(value (N, o), tangents (N, d, o), bi-Laplacian over D (N, o)) of the planned network at x (N, d)."""
    carried = _BilaplacianCarried(x, dims)
    for step in plan.steps:
        if isinstance(step, LinearStep):
            carried.linear(step)
        else:
            carried.activation(step)
    jet = carried.result()
    if carried.extra is None:  # an affine network: every fourth derivative is zero
        return jet.value, jet.tangents, jet.value.new_zeros(jet.value.shape)
    return jet.value, jet.tangents, carried.extra[:, carried.p]


def run_bilaplacian(plan: TaylorPlan, x: Tensor, request: HessianRequest) -> Canonical:
    """Canonical (value (N, o), jacobian (N, o, d), bi-Laplacian (N, o)) for an exact bi-Laplacian request."""
    if request.kind != "bilaplacian" or request.randomized:
        raise ValueError("the bilaplacian algorithm serves the exact bi-Laplacian (Bilaplacian() without samples=)")
    value, tangents, bilaplacian = bilaplacian_sweep(plan, x, request.dims)
    return value, tangents.transpose(1, 2), bilaplacian
