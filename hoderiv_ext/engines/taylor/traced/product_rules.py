"""Jet rules of products of two jets, values without derivatives, and normalisations over features.

Product of two jets (any bilinear op B: elementwise mul, batched matmul):
    v = B(u, w),  T_k = B(u, T^w_k) + B(T^u_k, w),
    Q_s = B(u, Q^w_s) + B(Q^u_s, w) + B(T^u_i, T^w_j) + B(T^u_j, T^w_i),
    collapsed: B(u, Q^w) + B(Q^u, w) + 2 sum_{k in C} B(T^u_k, T^w_k).
    bi-Laplacian extra slots over D (g_i tangents, H_ij pairs, L = sum_j H_jj over D;
    T_i and D2 = Delta^2 the extra slots; Delta(uw) = Delta u w + 2 grad u . grad w + u Delta w, twice):
    T_i  = B(T^u_i, w) + B(u, T^w_i) + B(L^u, g^w_i) + B(g^u_i, L^w) + 2 sum_j (B(H^u_ij, g^w_j) + B(g^u_j, H^w_ij)),
    D2   = B(D2^u, w) + B(u, D2^w) + 2 B(L^u, L^w) + 4 sum_i (B(T^u_i, g^w_i) + B(g^u_i, T^w_i))
           + 4 sum_ij B(H^u_ij, H^w_ij).
    univariate coefficients (per direction, c_0 the value): the Cauchy product
    c_k = sum_{i=0..k} B(c_i^u, c_{k-i}^w) (:func:`~hoderiv_ext.engines.taylor.traced.series.cauchy`).
Quotients are products with the reciprocal. Comparisons, signs and argmax
give values without a derivative; layer_norm, var and eval-mode batch norm
are composed of the rules.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.engines.taylor.traced import linear_rules as linear
from hoderiv_ext.engines.taylor.traced import series
from hoderiv_ext.engines.taylor.traced.jets import (
    Derived,
    FullJet,
    SamplesMix,
    SeedJet,
    Slots,
    as_full,
    is_jet,
    primal_axis,
    primal_rank,
    reduced_axes,
    same_rank,
    slot_constant,
)
from hoderiv_ext.engines.taylor.traced.rules import RULES, constant_jet, rule, plain, value_of
from hoderiv_ext.engines.taylor.traced.unary_rules import kernel_unary
from hoderiv_ext.ops.jet_composite import hessian_and_trace

aten = torch.ops.aten
AnyJet = SeedJet | FullJet

# ----------------------------------------------------------------------------- products of two jets


def product(slots: Slots, a: AnyJet, b: AnyJet, op: Callable[[Tensor, Tensor], Tensor]) -> FullJet:
    """B(a, b) for a bilinear ``op`` on slot-carrying tensors (the module docstring's product rule)."""
    same_rank(a, b)
    u, w = as_full(a, slots).data, as_full(b, slots).data
    t = slots.t
    u0, w0, ut, wt = u[:, :1], w[:, :1], u[:, 1:1 + t], w[:, 1:1 + t]
    parts = [op(u0, w0), op(u0, wt) + op(ut, w0)]
    if slots.p:
        ui, uj = slots.pair_tangents(ut)
        wi, wj = slots.pair_tangents(wt)
        up, wp = u[:, 1 + t:1 + t + slots.p], w[:, 1 + t:1 + t + slots.p]
        parts.append(op(u0, wp) + op(up, w0) + op(ui, wj) + op(uj, wi))
    if slots.c:
        c = slots.main - 1
        parts.append(op(u0, w[:, c:c + 1]) + op(u[:, c:c + 1], w0)
                     + 2 * op(slots.collapsed_tangents(ut), slots.collapsed_tangents(wt)).sum(1, keepdim=True))
    if slots.e:
        parts.append(_bilaplacian_product(slots, u, w, op))
    if slots.u:
        coefficients = series.cauchy(u0, slots.coefficients(u), w0, slots.coefficients(w), op)
        parts.append(coefficients.reshape(coefficients.shape[0], slots.u, *coefficients.shape[3:]))
    return FullJet(torch.cat(parts, dim=1))


def _bilaplacian_product(slots: Slots, u: Tensor, w: Tensor, op: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """The extra slots (T_i, B) of B(u, w) from the full jets u, w (the module docstring's Leibniz rule)."""
    t, q = slots.t, slots.e - 1
    index = slots.hessian_index()

    def parts(jet: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        hessian, trace = hessian_and_trace(jet[:, 1 + t:slots.main], index, q)
        extra = jet[:, slots.main:]
        return jet[:, :1], slots.bilaplacian_tangents(jet[:, 1:1 + t]), hessian, trace, extra[:, :q], extra[:, q:]

    u0, ug, uh, ul, ut, ub = parts(u)
    w0, wg, wh, wl, wt, wb = parts(w)
    tangents = (op(ut, w0) + op(u0, wt) + op(ul, wg) + op(ug, wl)
                + 2 * (op(uh, wg.unsqueeze(1)) + op(ug.unsqueeze(1), wh)).sum(2))
    bilaplacian = (op(ub, w0) + op(u0, wb) + 2 * op(ul, wl) + 4 * (op(ut, wg) + op(ug, wt)).sum(1, keepdim=True)
                   + 4 * op(uh, wh).sum((1, 2)).unsqueeze(1))
    return torch.cat([tangents, bilaplacian], dim=1)


@rule(aten.mul.Tensor)
def _mul(slots: Slots, a: object, b: object) -> AnyJet:
    if is_jet(a) and is_jet(b):
        if a is b:
            return kernel_unary(slots, a, "square")  # type: ignore[arg-type]
        return product(slots, a, b, torch.mul)  # type: ignore[arg-type]
    jet, constant = (a, b) if is_jet(a) else (b, a)
    return linear.times_constant(slots, jet, constant)  # type: ignore[arg-type]


@rule(aten.div.Tensor)
def _div(slots: Slots, a: object, b: object) -> AnyJet:
    if not is_jet(b):
        return linear.divided_by_constant(slots, a, b)  # type: ignore[arg-type]
    inverse = kernel_unary(slots, b, "reciprocal")  # type: ignore[arg-type]
    return _mul(slots, a, inverse)


@rule(aten.bmm.default)
def _bmm(slots: Slots, a: object, b: object) -> AnyJet:
    if is_jet(a) and is_jet(b):
        return product(slots, a, b, torch.matmul)  # type: ignore[arg-type]
    return linear.bmm_with_constant(slots, a, b)


# ----------------------------------------------------------------------------- values without derivatives


def _compare(op: object) -> Callable[..., Derived]:
    def apply(slots: Slots, a: object, b: object) -> Derived:
        left = value_of(a) if is_jet(a) else plain(a)  # type: ignore[arg-type]
        right = value_of(b) if is_jet(b) else plain(b)  # type: ignore[arg-type]
        return Derived(op(left, right))  # type: ignore[operator]
    return apply


for _packet in (aten.eq, aten.ne, aten.gt, aten.ge, aten.lt, aten.le):
    RULES[_packet.Tensor] = _compare(_packet.Tensor)
    RULES[_packet.Scalar] = _compare(_packet.Scalar)


for _op in (aten.sign.default, aten.isnan.default, aten.isinf.default):
    RULES[_op] = (lambda op: lambda slots, jet: Derived(op(value_of(jet))))(_op)


def _arg_extremum(op: object) -> Callable[..., Derived]:
    def apply(slots: Slots, jet: AnyJet, dim: int | None = None, keepdim: bool = False) -> Derived:
        rank = primal_rank(jet)
        if dim is None or primal_axis(dim, rank, "an argmax or argmin") == 0:
            raise SamplesMix("an argmax or argmin over the batch axis")
        return Derived(op(value_of(jet), dim, keepdim))  # type: ignore[operator]
    return apply


RULES[aten.argmax.default] = _arg_extremum(aten.argmax.default)
RULES[aten.argmin.default] = _arg_extremum(aten.argmin.default)


@rule(aten.where.self)
def _where(slots: Slots, condition: object, a: object, b: object) -> FullJet:
    if is_jet(condition):
        raise NotServed("where with a condition that is a float tensor computed from x")
    like = a if is_jet(a) else b
    rank = primal_rank(like)  # type: ignore[arg-type]
    mask = slot_constant(plain(condition), rank, "where")
    left = as_full(a, slots) if is_jet(a) else constant_jet(slots, a, like)  # type: ignore[arg-type]
    right = as_full(b, slots) if is_jet(b) else constant_jet(slots, b, like)  # type: ignore[arg-type]
    return FullJet(torch.where(mask, left.data, right.data))  # type: ignore[arg-type]


@rule(aten.masked_fill.Scalar)
def _masked_fill(slots: Slots, jet: AnyJet, mask: object, fill: float) -> FullJet:
    data = as_full(jet, slots).data
    mask_ = slot_constant(plain(mask), primal_rank(jet), "masked_fill")
    return FullJet(torch.cat([data[:, :1].masked_fill(mask_, fill), data[:, 1:].masked_fill(mask_, 0.0)], dim=1))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- normalisations over features


def _moments(slots: Slots, jet: AnyJet, axes: list[int], correction: float) -> tuple[AnyJet, AnyJet]:
    """(mean, variance) over primal ``axes`` (keepdim), the variance with Bessel's ``correction``."""
    mean = RULES[aten.mean.dim](slots, jet, axes, True)
    centred = linear.plus(slots, jet, mean, -1)
    count = math.prod(jet.primal_shape[axis] for axis in axes)
    squares = RULES[aten.sum.dim_IntList](slots, _mul(slots, centred, centred), axes, True)
    variance = linear.times_constant(slots, squares, 1.0 / max(count - correction, 0))  # type: ignore[arg-type]
    return mean, variance


def _variance_rule(kind: str) -> Callable[..., object]:
    def apply(slots: Slots, jet: AnyJet, dims: object = None, *, correction: float | None = None,
              keepdim: bool = False) -> object:
        axes = reduced_axes(jet, dims, "a variance")
        mean, variance = _moments(slots, jet, axes, 1.0 if correction is None else float(correction))
        if kind == "std":
            variance = kernel_unary(slots, variance, "sqrt")  # type: ignore[arg-type]
        if not keepdim:
            squeeze = RULES[aten.squeeze.dims]
            mean, variance = squeeze(slots, mean, axes), squeeze(slots, variance, axes)
        return (variance, mean) if kind == "var_mean" else variance
    return apply


RULES[aten.var.correction] = _variance_rule("var")
RULES[aten.var_mean.correction] = _variance_rule("var_mean")
RULES[aten.std.correction] = _variance_rule("std")


@rule(aten.native_layer_norm.default)
def _layer_norm(slots: Slots, jet: AnyJet, normalized_shape: list[int], weight: object, bias: object,
                eps: float) -> tuple[AnyJet, AnyJet, AnyJet]:
    rank = primal_rank(jet)
    axes = list(range(rank - len(normalized_shape), rank))
    if 0 in axes:
        raise SamplesMix("a layer norm over the batch axis")
    mean, variance = _moments(slots, jet, axes, 0.0)
    centred = linear.plus(slots, jet, mean, -1)
    inverse_std = kernel_unary(slots, linear.plus(slots, variance, eps), "rsqrt")  # type: ignore[arg-type]
    out: AnyJet = _mul(slots, centred, inverse_std)
    if weight is not None:
        out = linear.times_constant(slots, out, weight)
    if bias is not None:
        out = linear.plus(slots, out, bias)
    return out, mean, inverse_std


def _batch_norm_eval(slots: Slots, jet: AnyJet, weight: object, bias: object, mean: object, var: object,
                     eps: float) -> tuple[AnyJet, Tensor, Tensor]:
    if not isinstance(mean, Tensor) or not isinstance(var, Tensor):
        raise SamplesMix("a batch norm without running statistics normalises with batch statistics")
    scale = (plain(var) + eps).rsqrt()  # type: ignore[operator]
    if weight is not None:
        scale = scale * plain(weight)
    shift = -plain(mean) * scale
    if bias is not None:
        shift = shift + plain(bias)
    shape = [-1] + [1] * (primal_rank(jet) - 2)  # per channel, axis 1
    out = linear.plus(slots, linear.times_constant(slots, jet, scale.reshape(shape)), shift.reshape(shape))
    empty = mean.new_zeros(0)
    return out, empty, empty


@rule(aten._native_batch_norm_legit.default, aten.native_batch_norm.default)
def _batch_norm(slots: Slots, jet: AnyJet, weight: object, bias: object, mean: object, var: object,
                training: bool, momentum: float, eps: float) -> tuple[AnyJet, Tensor, Tensor]:
    if training:
        raise SamplesMix("a batch norm in training mode normalises with batch statistics (call .eval() on it)")
    return _batch_norm_eval(slots, jet, weight, bias, mean, var, eps)


@rule(aten._native_batch_norm_legit_no_training.default)
def _batch_norm_no_training(slots: Slots, jet: AnyJet, weight: object, bias: object, mean: object, var: object,
                            momentum: float, eps: float) -> tuple[AnyJet, Tensor, Tensor]:
    return _batch_norm_eval(slots, jet, weight, bias, mean, var, eps)
