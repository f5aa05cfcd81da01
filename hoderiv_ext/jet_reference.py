"""The Taylor activation step written in torch ops: the reference for the fused kernels.

Same math as csrc/include/hoderiv/jet_math.h (see its header for the formulas),
on a jet of shape (N, S, m) with S = 1 + d + s slots. phi and its derivatives
come from the elementwise op, which is differentiable to order 8, so these
functions are differentiable too: they serve the double backward of the fused
backward kernel and the first layer's backward, and the tests compare the
fused kernels against them.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def _phi(a: Tensor, function: str, params: Sequence[float], order: int) -> Tensor:
    return torch.ops.hoderiv_ext.elementwise_derivatives(a, function, list(params), order)


def activation_step(
    jet: Tensor, bias: Tensor | None, function: str, params: Sequence[float],
    pair_i: Tensor, pair_j: Tensor, num_inputs: int, collapsed: bool,
) -> Tensor:
    """phi applied to a jet (N, S, m): returns the jet of phi(v + bias)."""
    d = num_inputs
    a = jet[:, 0] if bias is None else jet[:, 0] + bias
    phi = _phi(a, function, params, 2)
    tangents, second = jet[:, 1 : 1 + d], jet[:, 1 + d :]
    out_tangents = phi[1].unsqueeze(1) * tangents
    if collapsed:
        out_second = phi[1].unsqueeze(1) * second + (phi[2] * (tangents * tangents).sum(1)).unsqueeze(1)
    else:
        out_second = phi[1].unsqueeze(1) * second + phi[2].unsqueeze(1) * tangents[:, pair_i] * tangents[:, pair_j]
    return torch.cat([phi[0].unsqueeze(1), out_tangents, out_second], dim=1)


def first_activation_step(
    preactivation: Tensor, weight: Tensor, function: str, params: Sequence[float],
    pair_i: Tensor, pair_j: Tensor, collapsed: bool,
) -> Tensor:
    """First layer: tangents T_i = weight[:, i] for every sample, Q = 0."""
    phi = _phi(preactivation, function, params, 2)
    weight_t = weight.t()  # (d, m)
    out_tangents = phi[1].unsqueeze(1) * weight_t.unsqueeze(0)
    if collapsed:
        out_second = (phi[2] * (weight * weight).sum(1)).unsqueeze(1)
    else:
        out_second = phi[2].unsqueeze(1) * (weight_t[pair_i] * weight_t[pair_j]).unsqueeze(0)
    return torch.cat([phi[0].unsqueeze(1), out_tangents, out_second], dim=1)


def first_activation_step_backward(
    grad: Tensor, preactivation: Tensor, weight: Tensor, function: str, params: Sequence[float],
    pair_i: Tensor, pair_j: Tensor, collapsed: bool,
) -> tuple[Tensor, Tensor]:
    """Gradients of first_activation_step with respect to (preactivation, weight).

    With g = (g0, gT, gQ) the output jet's gradient and W (m, d):
      ga = phi' g0 + phi'' sum_i gT_i W[:, i] + phi''' sum_s gQ_s W[:, i_s] W[:, j_s]
      gW[:, i] = sum_n phi' gT_i + sum_s H_s (delta_{i_s i} W[:, j_s] + delta_{j_s i} W[:, i_s]),
      H_s = sum_n phi'' gQ_s                       (collapsed: gW += 2 H W)
    """
    d = weight.shape[1]
    phi = _phi(preactivation, function, params, 3)
    weight_t = weight.t()
    grad_value, grad_tangents, grad_second = grad[:, 0], grad[:, 1 : 1 + d], grad[:, 1 + d :]
    # Broadcast products and sums: torch's einsum lowers these contractions to
    # a bmm with per-unit batches and hundreds of copies on CPU.
    grad_a = phi[1] * grad_value + phi[2] * (grad_tangents * weight_t).sum(1)
    grad_weight_t = (grad_tangents * phi[1].unsqueeze(1)).sum(0)  # (d, m)
    if collapsed:
        grad_a = grad_a + phi[3] * grad_second[:, 0] * (weight * weight).sum(1)
        second_weight = (phi[2] * grad_second[:, 0]).sum(0)  # (m,)
        grad_weight_t = grad_weight_t + 2 * second_weight * weight_t
    else:
        pair_products = weight_t[pair_i] * weight_t[pair_j]  # (s, m)
        grad_a = grad_a + phi[3] * (grad_second * pair_products).sum(1)
        second_weight = (grad_second * phi[2].unsqueeze(1)).sum(0)  # H_s, (s, m)
        grad_weight_t = grad_weight_t.index_add(0, pair_i, second_weight * weight_t[pair_j])
        grad_weight_t = grad_weight_t.index_add(0, pair_j, second_weight * weight_t[pair_i])
    return grad_a, grad_weight_t.t()
