"""Typed wrappers of the Taylor activation-step ops ``torch.ops.hoderiv_ext.jet_activation*`` and ``jet_bilaplacian_extra*``.

Engines call these, never ``torch.ops`` with positional argument lists. Each
takes the jet's :class:`~hoderiv_ext.ops.layout.JetLayout` and the
elementwise function by name and parameters (the function table:
:mod:`hoderiv_ext.core.functions`). Math: csrc/include/hoderiv/jet_math.h;
autograd: C++ kernels for jet_activation, jet_activation_first and
jet_bilaplacian_extra (csrc/ops/autograd.cpp), :mod:`hoderiv_ext.ops.formulas`
for the backward ops. The bi-Laplacian's extra slots: csrc/include/hoderiv/bilaplacian_math.h.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hoderiv_ext.ops.layout import JetLayout


def jet_activation(jet: Tensor, bias: Tensor | None, function: str, params: Sequence[float], layout: JetLayout) -> Tensor:
    """The jet (N, S, m) of phi(v + bias) for the jet ``jet`` (N, S, m) of v; ``bias`` (m,) or None."""
    return torch.ops.hoderiv_ext.jet_activation(
        jet, bias, function, list(params), layout.num_tangents, layout.pair_i, layout.pair_j, list(layout.collapsed)
    )


def jet_activation_backward(
    grad: Tensor, jet: Tensor, bias: Tensor | None, function: str, params: Sequence[float], layout: JetLayout
) -> Tensor:
    """The gradient with respect to the input jet of :func:`jet_activation`; slot 0 is the gradient w.r.t. v + bias."""
    return torch.ops.hoderiv_ext.jet_activation_backward(
        grad, jet, bias, function, list(params), layout.num_tangents, layout.pair_i, layout.pair_j,
        list(layout.collapsed),
    )


def jet_activation_first(
    preactivation: Tensor, tangents: Tensor, function: str, params: Sequence[float], layout: JetLayout
) -> Tensor:
    """The jet (N, S, m) of phi(a) when a's tangents are the same for every sample.

    ``preactivation`` a (N, m); ``tangents`` (m, t): column k holds T_k for every
    unit; a's second-order slots are zero. No per-sample tangents are read.
    """
    return torch.ops.hoderiv_ext.jet_activation_first(
        preactivation, tangents, function, list(params), layout.pair_i, layout.pair_j, list(layout.collapsed)
    )


def jet_activation_first_backward(
    grad: Tensor, preactivation: Tensor, tangents: Tensor, function: str, params: Sequence[float], layout: JetLayout
) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`jet_activation_first` with respect to (preactivation (N, m), tangents (m, t))."""
    grad_a, grad_tangents = torch.ops.hoderiv_ext.jet_activation_first_backward(
        grad, preactivation, tangents, function, list(params), layout.pair_i, layout.pair_j, list(layout.collapsed)
    )
    return grad_a, grad_tangents


def _num_tangents(layout_or_num_tangents: JetLayout | int) -> int:
    if isinstance(layout_or_num_tangents, JetLayout):
        return layout_or_num_tangents.num_tangents
    return layout_or_num_tangents


def jet_bilaplacian_extra(
    jet: Tensor, bias: Tensor | None, extra: Tensor, function: str, params: Sequence[float],
    layout_or_num_tangents: JetLayout | int, dims: Sequence[int],
) -> Tensor:
    """The extra bi-Laplacian slots (N, p+1, m) of phi(v + bias): T_i for i in ``dims``, then B.

    ``jet`` (N, 1 + t + p(p+1)/2, m): the main jet of v (value, t tangents, the pairs i <= j over
    ``dims``, row-major upper triangle); ``extra`` (N, p+1, m): v's T_i and B; ``bias`` (m,) or None;
    t from the layout or given. A narrowed view of a wider jet (slot stride m, unit stride 1) is read
    without a copy. One fused kernel; differentiable to any order.
    """
    return torch.ops.hoderiv_ext.jet_bilaplacian_extra(
        jet, bias, extra, function, list(params), _num_tangents(layout_or_num_tangents), list(dims)
    )


def jet_bilaplacian_extra_backward(
    grad: Tensor, jet: Tensor, bias: Tensor | None, extra: Tensor, function: str, params: Sequence[float],
    layout_or_num_tangents: JetLayout | int, dims: Sequence[int],
) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`jet_bilaplacian_extra` with respect to (jet (slot 0: w.r.t. v + bias), extra)."""
    grad_jet, grad_extra = torch.ops.hoderiv_ext.jet_bilaplacian_extra_backward(
        grad, jet, bias, extra, function, list(params), _num_tangents(layout_or_num_tangents), list(dims)
    )
    return grad_jet, grad_extra
