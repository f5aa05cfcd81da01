"""Typed wrappers of the Taylor activation-step ops ``torch.ops.hoderiv_ext.jet_activation*``,
``jet_bilaplacian_extra*`` and ``jet_univariate*``, and of the whole-network sweep ``network_jet``.

Engines call these, never ``torch.ops`` with positional argument lists. Each
takes the jet's :class:`~hoderiv_ext.ops.layout.JetLayout` and the
elementwise function by name and parameters (the function table:
:mod:`hoderiv_ext.core.functions`). Math: csrc/include/hoderiv/jet_math.h;
autograd: C++ kernels for jet_activation, jet_activation_first,
jet_bilaplacian_extra and jet_univariate (csrc/ops/autograd.cpp),
:mod:`hoderiv_ext.ops.formulas` for the backward ops. The bi-Laplacian's extra
slots: csrc/include/hoderiv/bilaplacian_math.h; univariate Taylor jets:
csrc/include/hoderiv/univariate_math.h.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from hoderiv_ext.ops.layout import JetLayout

if TYPE_CHECKING:
    from hoderiv_ext.engines.taylor.plan import NetworkJetArguments


def jet_activation(jet: Tensor, bias: Tensor | None, function: str, params: Sequence[float], layout: JetLayout,
                   residual: Tensor | None = None) -> Tensor:
    """The jet (N, S, m) of phi(v + bias) for the jet ``jet`` (N, S, m) of v; ``bias`` (m,) or None.

    With a ``residual`` jet (N, S, m) of h (the jet's shape, dtype and device): the
    jet of h + phi(v + bias), a skip connection, added in the same pass over the
    output (no second (N, S, m) tensor); its gradient with respect to the residual
    is the identity.
    """
    if residual is None:  # the schema's default: the same call as before the argument existed
        return torch.ops.hoderiv_ext.jet_activation(
            jet, bias, function, list(params), layout.num_tangents, layout.pair_i, layout.pair_j,
            list(layout.collapsed))
    return torch.ops.hoderiv_ext.jet_activation(
        jet, bias, function, list(params), layout.num_tangents, layout.pair_i, layout.pair_j, list(layout.collapsed),
        residual,
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


def jet_univariate(jet: Tensor, bias: Tensor | None, function: str, params: Sequence[float], num_tangents: int,
                   order: int) -> Tensor:
    """The univariate Taylor jet (N, S, m) of phi(v + bias) for the jet ``jet`` (N, S, m) of v.

    S = 1 + t + R K (t = ``num_tangents``, K = ``order`` in [1, 8], R >= 0 directions): the value,
    t first-order tangents (mapped to phi'(a) T_k), then per direction the coefficients c_1..c_K
    of delta = sum_k c_k t^k, mapped to those of phi(a + delta) (a = v + bias; Faa di Bruno by
    Horner's rule, K (K+1) (K+2) / 6 multiply-adds per direction and unit). One fused kernel; a
    narrowed view of a wider jet (slot stride m, unit stride 1) is read without a copy.
    Differentiable (the backward is the fused :func:`jet_univariate_backward`) for K <= 7.
    """
    return torch.ops.hoderiv_ext.jet_univariate(jet, bias, function, list(params), num_tangents, order)


def jet_univariate_backward(grad: Tensor, jet: Tensor, bias: Tensor | None, function: str, params: Sequence[float],
                            num_tangents: int, order: int) -> Tensor:
    """The gradient (N, S, m) of :func:`jet_univariate` with respect to the jet; slot 0 is the gradient w.r.t. v + bias.

    With g(t) = phi'(a + delta(t)) per direction: dy_k/da = g_k, dy_k/dc_i = g_{k-i}; it needs
    phi^(K + 1), so ``order`` must be in [1, 7] (order-8 coefficients are not differentiable again).
    """
    return torch.ops.hoderiv_ext.jet_univariate_backward(grad, jet, bias, function, list(params), num_tangents, order)


def network_jet(x: Tensor, network: "NetworkJetArguments", layout: JetLayout) -> tuple[Tensor, Tensor]:
    """Forward Taylor mode through a whole plain network in one op call: (jet (N, S, o), value (N, o)).

    The jet of f at x (N, d) along the d unit directions in ``layout`` (num_tangents = d), computed
    step by step exactly as :func:`hoderiv_ext.engines.taylor.sweep.forward_sweep` does (one GEMM per
    Linear, one fused kernel per activation, the first layer's tangents never materialised), but by
    one C++ op (csrc/ops/network_jet.cpp). Autograd records it as one node whose backward chains the
    inner ops' backward formulas (the op-by-op graph's gradients); with ``create_graph`` the backward
    re-runs the sweep with autograd and differentiates that, so it is differentiable to any order the
    inner ops are. Slot 0 of the jet lacks the last Linear's bias; ``value`` has it. The network must
    have an activation.
    """
    return network_jet_with(x, network_jet_operands(network, layout))


def network_jet_operands(network: "NetworkJetArguments", layout: JetLayout) -> tuple:
    """The arguments of :func:`network_jet` after x, as the op takes them: make them once, call
    :func:`network_jet_with` many times (they hold the network's own parameters, nothing derived)."""
    return (network.weights, network.biases, network.steps, network.params, network.param_counts,
            layout.num_tangents, list(layout.pair_i), list(layout.pair_j), list(layout.collapsed))


def network_jet_with(x: Tensor, operands: tuple) -> tuple[Tensor, Tensor]:
    """:func:`network_jet` from its :func:`network_jet_operands`."""
    return torch.ops.hoderiv_ext.network_jet.default(x, *operands)
