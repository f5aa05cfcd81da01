"""The Taylor activation step written in torch ops: the fused kernels' twins.

Same math as csrc/include/hoderiv/jet_math.h, on a jet (N, S, m) whose slots
a :class:`~hoderiv_ext.ops.layout.JetLayout` describes, for the exact
bi-Laplacian's extra slots as csrc/include/hoderiv/bilaplacian_math.h, and for
univariate Taylor jets as csrc/include/hoderiv/univariate_math.h. phi and its
derivatives come from the elementwise op, which is differentiable to order 8,
so these functions are differentiable too: they are the double backward of
the fused backward kernels (:mod:`hoderiv_ext.ops.formulas`), and the tests
compare the fused kernels with them. Every reduction is a sum or a matrix
product (no ``index_add``), so results are deterministic on every device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from hoderiv_ext.ops.indexing import take
from hoderiv_ext.ops.layout import JetLayout


def _phi(a: Tensor, function: str, params: Sequence[float], order: int) -> Tensor:
    return torch.ops.hoderiv_ext.elementwise_derivatives(a, function, list(params), order)


def _one_hot(indices: Sequence[int], size: int, like: Tensor) -> Tensor:
    """(len(indices), size) with a 1 at (s, indices[s])."""
    return torch.eye(size, dtype=like.dtype, device=like.device)[list(indices)]


def _collapsed_sum_of_squares(tangents: Tensor, layout: JetLayout, axis: int) -> Tensor:
    """sum_{k in C} T_k^2 over the tangent axis ``axis`` of ``tangents``."""
    chosen = take(tangents, axis, layout.collapsed)  # a view for a run (all of them, say); no device index
    return (chosen * chosen).sum(axis)


def activation_step(jet: Tensor, bias: Tensor | None, function: str, params: Sequence[float], layout: JetLayout) -> Tensor:
    """phi applied to a jet (N, S, m): the jet of phi(v + bias)."""
    a = jet[:, 0] if bias is None else jet[:, 0] + bias
    return unary_step(jet, _phi(a, function, params, 2), layout)


def unary_step(jet: Tensor, phi: Sequence[Tensor], layout: JetLayout) -> Tensor:
    """The jet (N, S, *rest) of phi(v) from the jet of v and (phi, phi', phi'') at v, each (N, *rest)."""
    t, p = layout.num_tangents, len(layout.pairs)
    tangents, second = jet[:, 1 : 1 + t], jet[:, 1 + t :]
    parts = [phi[0].unsqueeze(1), phi[1].unsqueeze(1) * tangents]
    if p:
        products = tangents[:, layout.pair_i] * tangents[:, layout.pair_j]
        parts.append(phi[1].unsqueeze(1) * second[:, :p] + phi[2].unsqueeze(1) * products)
    if layout.collapsed:
        squares = _collapsed_sum_of_squares(tangents, layout, 1)
        parts.append((phi[1] * second[:, p] + phi[2] * squares).unsqueeze(1))
    return torch.cat(parts, dim=1)


def first_activation_step(
    preactivation: Tensor, weight: Tensor, function: str, params: Sequence[float], layout: JetLayout
) -> Tensor:
    """First layer: tangents T_k = weight[:, k] for every sample, no second-order input."""
    phi = _phi(preactivation, function, params, 2)
    weight_t = weight.t()  # (t, m)
    parts = [phi[0].unsqueeze(1), phi[1].unsqueeze(1) * weight_t.unsqueeze(0)]
    if layout.pairs:
        parts.append(phi[2].unsqueeze(1) * (weight_t[layout.pair_i] * weight_t[layout.pair_j]).unsqueeze(0))
    if layout.collapsed:
        parts.append((phi[2] * _collapsed_sum_of_squares(weight_t, layout, 0)).unsqueeze(1))
    return torch.cat(parts, dim=1)


def first_activation_step_backward(
    grad: Tensor, preactivation: Tensor, weight: Tensor, function: str, params: Sequence[float], layout: JetLayout
) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`first_activation_step` with respect to (preactivation, weight).

    With g = (g0, gT, gQ) the output jet's gradient and W (m, t):
      ga = phi' g0 + phi'' sum_k gT_k W[:, k] + phi''' (sum_s gQ_s W[:, i_s] W[:, j_s] + gQ_c sum_{k in C} W[:, k]^2)
      gW[:, k] = sum_n phi' gT_k + sum_s H_s (delta_{i_s k} W[:, j_s] + delta_{j_s k} W[:, i_s]) + [k in C] 2 H_c W[:, k]
    with H = sum_n phi'' gQ (per pair slot s, and for the collapsed slot c).
    """
    t, p = layout.num_tangents, len(layout.pairs)
    phi = _phi(preactivation, function, params, 3)
    weight_t = weight.t()  # (t, m)
    grad_value, grad_tangents, grad_second = grad[:, 0], grad[:, 1 : 1 + t], grad[:, 1 + t :]
    # Broadcast products and sums: torch's einsum lowers these contractions to
    # a bmm with per-unit batches and hundreds of copies on CPU.
    grad_a = phi[1] * grad_value + phi[2] * (grad_tangents * weight_t).sum(1)
    grad_weight_t = (grad_tangents * phi[1].unsqueeze(1)).sum(0)  # (t, m)
    if p:
        pair_products = weight_t[layout.pair_i] * weight_t[layout.pair_j]  # (p, m)
        grad_a = grad_a + phi[3] * (grad_second[:, :p] * pair_products).sum(1)
        second_weight = (grad_second[:, :p] * phi[2].unsqueeze(1)).sum(0)  # H_s, (p, m)
        grad_weight_t = grad_weight_t + _one_hot(layout.pair_i, t, weight).t() @ (second_weight * weight_t[layout.pair_j])
        grad_weight_t = grad_weight_t + _one_hot(layout.pair_j, t, weight).t() @ (second_weight * weight_t[layout.pair_i])
    if layout.collapsed:
        grad_c = grad_second[:, p]
        grad_a = grad_a + phi[3] * grad_c * _collapsed_sum_of_squares(weight_t, layout, 0)
        collapsed_weight = (phi[2] * grad_c).sum(0)  # H_c, (m,)
        mask = _one_hot(layout.collapsed, t, weight).sum(0).unsqueeze(1)  # (t, 1): 1 for k in C
        grad_weight_t = grad_weight_t + 2 * mask * collapsed_weight * weight_t
    return grad_a, grad_weight_t.t()


# ----------------------------------------------------------------------------- the bi-Laplacian's extra slots


def upper_triangle_index(p: int, device: torch.device) -> Tensor:
    """Slot of A[r, j] among the pairs i <= j (row-major upper triangle), for every (r, j): (p * p,).

    Built on ``device`` with torch ops (no host-to-device copy); ``[:: p + 1]`` is the slots of the diagonal.
    """
    r = torch.arange(p, device=device).unsqueeze(1)
    j = torch.arange(p, device=device).unsqueeze(0)
    low, high = torch.minimum(r, j), torch.maximum(r, j)
    return (low * p - low * (low - 1) // 2 + high - low).reshape(-1)


def hessian_and_trace(pairs: Tensor, hessian_index: Tensor, p: int) -> tuple[Tensor, Tensor]:
    """(A (N, p, p, *rest), L = Σ_j A_jj (N, 1, *rest)) from the upper-triangle pairs (N, p(p+1)/2, *rest);
    ``hessian_index``: :func:`upper_triangle_index` (p) on the pairs' device."""
    hessian = pairs.index_select(1, hessian_index).reshape(pairs.shape[0], p, p, *pairs.shape[2:])
    trace = pairs.index_select(1, hessian_index[:: p + 1]).sum(1, keepdim=True)
    return hessian, trace


def first_bilaplacian_extra_step(phi: Sequence[Tensor], g: Tensor) -> Tensor:
    """The extra jet (N, p+1, *rest) of y = φ(a) when a's tangents g (p, *rest) are shared by every sample and
    A = T = B = 0 (the first activation): T_i' = φ‴ g_i G, B' = φ⁗ G²."""
    squares = (g * g).sum(0)  # G (*rest)
    d3, d4 = phi[3], phi[4]
    tangents_out = (d3 * squares).unsqueeze(1) * g.unsqueeze(0)
    return torch.cat([tangents_out, (d4 * squares * squares).unsqueeze(1)], dim=1)


def bilaplacian_extra_step(phi: Sequence[Tensor], g: Tensor, pairs: Tensor, extra: Tensor,
                           hessian_index: Tensor) -> Tensor:
    """The extra jet (N, p+1, *rest) of y = φ(a): (T_i for i in D, B) (math: csrc/include/hoderiv/bilaplacian_math.h).

    phi: φ⁽⁰⁻⁴⁾ at a, each (N, *rest); g (N, p, *rest): a's tangents over D;
    pairs (N, p(p+1)/2, *rest): a's Hessian over D (upper triangle); extra
    (N, p+1, *rest): a's T and B; ``hessian_index``: :func:`upper_triangle_index` (p)
    on the jet's device. With G = Σ g_j², L = Σ A_jj, H = A g, Q = gᵀ A g,
    F = Σ A_ij², P = Σ g_i T_i:
      T_i' = (φ‴ G + φ″ L) g_i + 2φ″ H_i + φ′ T_i
      B'   = φ⁗ G² + 2φ‴ L G + 4φ‴ Q + φ″ (2F + L² + 4P) + φ′ B
    """
    p = g.shape[1]
    hessian, trace = hessian_and_trace(pairs, hessian_index, p)  # A (N, p, p, *rest), L
    d1, d2, d3, d4 = (phi[k].unsqueeze(1) for k in range(1, 5))
    squares = (g * g).sum(1, keepdim=True)  # G (N, 1, *rest)
    hessian_g = (hessian * g.unsqueeze(1)).sum(2)  # H (N, p, *rest)
    quadratic = (hessian_g * g).sum(1, keepdim=True)  # Q
    frobenius = (hessian * hessian).sum((1, 2)).unsqueeze(1)  # F
    tangents_in, bilaplacian_in = extra[:, :p], extra[:, p:]
    projected = (g * tangents_in).sum(1, keepdim=True)  # P
    tangents_out = (d3 * squares + d2 * trace) * g + 2 * d2 * hessian_g + d1 * tangents_in
    bilaplacian_out = (d4 * squares * squares + 2 * d3 * trace * squares + 4 * d3 * quadratic
                       + d2 * (2 * frobenius + trace * trace + 4 * projected) + d1 * bilaplacian_in)
    return torch.cat([tangents_out, bilaplacian_out], dim=1)


def bilaplacian_extra_activation(jet: Tensor, bias: Tensor | None, extra: Tensor, function: str,
                                 params: Sequence[float], num_tangents: int, dims: Sequence[int]) -> Tensor:
    """The twin of the op ``jet_bilaplacian_extra``: the extra jet (N, p+1, m) of phi(jet[:, 0] + bias).

    jet (N, 1 + t + p(p+1)/2, m): value, t tangents, the pairs i <= j over the p tangents ``dims``;
    extra (N, p+1, m).
    """
    t, chosen = num_tangents, list(dims)
    a = jet[:, 0] if bias is None else jet[:, 0] + bias
    phi = _phi(a, function, params, 4)
    g = take(jet[:, 1 : 1 + t], 1, chosen)  # no index tensor on the device (ops.indexing)
    index = upper_triangle_index(len(chosen), jet.device)
    return bilaplacian_extra_step(phi, g, jet[:, 1 + t :], extra, index)


# ----------------------------------------------------------------------------- univariate Taylor jets


def series_product(a: Tensor, b: Tensor, order: int) -> Tensor:
    """Truncated product of power series along axis -2: a, b (..., order + 1, m) (index = power of t)."""
    terms = [sum(a[..., i, :] * b[..., k - i, :] for i in range(k + 1)) for k in range(order + 1)]
    return torch.stack(terms, dim=-2)


def compose_series(scaled: Tensor, coefficients: Tensor, order: int) -> Tensor:
    """sum_{j=1..K} s_j delta^j, orders 1..K, by Horner's rule: (N, R, K, m).

    scaled (K + 1, N, 1, m) holds s_j = phi^(j)(a) / j!; coefficients (N, R, K, m) the series
    delta = sum_{k>=1} c_k t^k of each direction.
    """
    n, r, _, m = coefficients.shape
    zero = coefficients.new_zeros((n, r, 1, m))
    delta = torch.cat([zero, coefficients], dim=2)  # orders 0..K, order 0 = 0
    horner = scaled[order].unsqueeze(2).expand(n, r, 1, m)  # the constant series s_K
    horner = torch.cat([horner, coefficients.new_zeros((n, r, order, m))], dim=2)
    for j in range(order - 1, 0, -1):
        horner = series_product(delta, horner, order)
        horner = torch.cat([horner[:, :, :1] + scaled[j].unsqueeze(2), horner[:, :, 1:]], dim=2)
    return series_product(delta, horner, order)[:, :, 1:]


def univariate_activation(jet: Tensor, bias: Tensor | None, function: str, params: Sequence[float],
                          num_tangents: int, order: int) -> Tensor:
    """The twin of the op ``jet_univariate``: the univariate jet (N, S, m) of phi(jet[:, 0] + bias).

    jet (N, S, m), S = 1 + t + R K (t = ``num_tangents``, K = ``order``): value v, tangents T_k,
    then per direction r the coefficients c_1..c_K of delta = sum_k c_k t^k. With a = v + bias and
    s_j = phi^(j)(a) / j!: phi(a), phi'(a) T_k, and per direction
    y_k = sum_{j=1..k} s_j [delta^j]_k (phi(a + delta) in truncated series arithmetic). phi^(0..K)
    come from the elementwise op, so this is differentiable to the kernels' order 8 less K.
    """
    n, slots, m = jet.shape
    t = num_tangents
    r = (slots - 1 - t) // order
    a = jet[:, 0] if bias is None else jet[:, 0] + bias
    phi = _phi(a, function, params, order)
    parts = [phi[0].unsqueeze(1), phi[1].unsqueeze(1) * jet[:, 1 : 1 + t]]
    if r:
        scaled = torch.stack([phi[j] / math.factorial(j) for j in range(order + 1)]).unsqueeze(2)  # (K+1, N, 1, m)
        coefficients = jet[:, 1 + t :].reshape(n, r, order, m)
        parts.append(compose_series(scaled, coefficients, order).reshape(n, r * order, m))
    return torch.cat(parts, dim=1)
