"""Jet rules of the linear and affine ops: sums over features, scalings, sums, products with constants.

The same linear map acts on every slot; a constant term (a bias, an added
constant) goes to the value slot only. A reduction over the batch axis mixes
samples. A Linear's bias is added in place to the GEMM's fresh output, or
left to the fused activation that consumes it (``Slots.fold_bias``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.engines.taylor.traced.jets import (
    FullJet,
    SamplesMix,
    SeedJet,
    Slots,
    add_to_value,
    as_full,
    is_jet,
    primal_rank,
    reduced_axes,
    same_rank,
    slot_constant,
)
from hoderiv_ext.engines.taylor.traced.rules import map_slots, plain, rule, value_of

aten = torch.ops.aten

# ----------------------------------------------------------------------------- reductions over features


def _reduced_axes(jet: SeedJet | FullJet, dims: object, op: str) -> list[int]:
    """The slot-carrying axes of a reduction over primal ``dims``."""
    return [axis + 1 for axis in reduced_axes(jet, dims, op)]


@rule(aten.sum.dim_IntList)
def _sum(slots: Slots, jet: SeedJet | FullJet, dims: object = None, keepdim: bool = False, *,
         dtype: torch.dtype | None = None) -> SeedJet | FullJet:
    axes = _reduced_axes(jet, dims, "a sum")
    return map_slots(slots, jet, lambda t: t.sum(axes, keepdim=keepdim))


@rule(aten.mean.dim)
def _mean(slots: Slots, jet: SeedJet | FullJet, dims: object = None, keepdim: bool = False, *,
          dtype: torch.dtype | None = None) -> SeedJet | FullJet:
    axes = _reduced_axes(jet, dims, "a mean")
    return map_slots(slots, jet, lambda t: t.mean(axes, keepdim=keepdim))


@rule(aten.sum.default, aten.mean.default)
def _reduce_all(slots: Slots, jet: object, *args: object, **kwargs: object) -> object:
    raise SamplesMix("a sum or mean over every axis includes the batch axis")


@rule(aten.amax.default)
def _amax(slots: Slots, jet: SeedJet | FullJet, dims: object = (), keepdim: bool = False) -> FullJet:
    axes = _reduced_axes(jet, dims, "a max")
    if len(axes) != 1:
        raise NotServed("a max over several axes at once")
    full = as_full(jet, slots)
    axis = axes[0]
    where = value_of(full).argmax(axis - 1, keepdim=True).unsqueeze(1)
    picked = full.data.gather(axis, where.expand(-1, slots.s, *where.shape[2:]))
    return FullJet(picked if keepdim else picked.squeeze(axis))


# ----------------------------------------------------------------------------- sums and scalings


def _scaled(slots: Slots, jet: SeedJet | FullJet, factor: object, op: str) -> SeedJet | FullJet:
    factor = slot_constant(plain(factor), primal_rank(jet), op)
    return map_slots(slots, jet, lambda t: t * factor)


def plus(slots: Slots, a: object, b: object, alpha: object = 1) -> SeedJet | FullJet:
    """a + alpha * b for jets and constants (at least one a jet)."""
    if is_jet(a) and is_jet(b):
        same_rank(a, b)  # type: ignore[arg-type]
        if alpha != 1:
            b = _scaled(slots, b, alpha, "add")  # type: ignore[arg-type]
        if isinstance(a, SeedJet) and isinstance(b, SeedJet):
            return SeedJet(a.value + b.value, a.tangent_tensor(slots) + b.tangent_tensor(slots))
        return FullJet(as_full(a, slots).data + as_full(b, slots).data)  # type: ignore[arg-type]
    if is_jet(a):
        constant = plain(b) if alpha == 1 else plain(b) * alpha  # type: ignore[operator]
        return _plus_constant(slots, a, constant)  # type: ignore[arg-type]
    scaled = b if alpha == 1 else _scaled(slots, b, alpha, "add")  # type: ignore[arg-type]
    return _plus_constant(slots, scaled, plain(a))  # type: ignore[arg-type]


def _plus_constant(slots: Slots, jet: SeedJet | FullJet, constant: object) -> SeedJet | FullJet:
    rank = primal_rank(jet)
    if isinstance(jet, SeedJet):
        value = jet.value + slot_constant(constant, rank, "add")
        if value.shape[2:] == jet.value.shape[2:]:
            return SeedJet(value, jet.tangents)
        tangents = jet.tangent_tensor(slots)
        return SeedJet(value, tangents.expand(tangents.shape[0], tangents.shape[1], *value.shape[2:]))
    return FullJet(add_to_value(jet.settled().data, constant, rank))


@rule(aten.add.Tensor, aten.add.Scalar)
def _add(slots: Slots, a: object, b: object, alpha: object = 1) -> SeedJet | FullJet:
    return plus(slots, a, b, alpha)


@rule(aten.sub.Tensor, aten.sub.Scalar)
def _sub(slots: Slots, a: object, b: object, alpha: object = 1) -> SeedJet | FullJet:
    if is_jet(b):
        return plus(slots, a, b, -alpha)  # type: ignore[operator]
    return plus(slots, a, -plain(b) * alpha)  # type: ignore[operator]


@rule(aten.rsub.Scalar, aten.rsub.Tensor)
def _rsub(slots: Slots, a: object, b: object, alpha: object = 1) -> SeedJet | FullJet:
    return _sub(slots, b, a, alpha)


@rule(aten.neg.default)
def _neg(slots: Slots, jet: SeedJet | FullJet) -> SeedJet | FullJet:
    return map_slots(slots, jet, torch.neg)


# ----------------------------------------------------------------------------- products with constants


@rule(aten.mm.default)
def _mm(slots: Slots, a: object, b: object) -> SeedJet | FullJet:
    if is_jet(b):
        raise SamplesMix("a matrix product contracts the batch axis of a tensor computed from x")
    b = plain(b)
    jet: SeedJet | FullJet = a  # type: ignore[assignment]
    if isinstance(jet, SeedJet) and jet.tangents is None:
        return SeedJet(torch.matmul(jet.value, b), b.unsqueeze(0))  # type: ignore[arg-type, union-attr]
    return map_slots(slots, jet, lambda t: torch.matmul(t, b))  # type: ignore[arg-type]


@rule(aten.addmm.default)
def _addmm(slots: Slots, bias: object, a: object, b: object, *, beta: object = 1, alpha: object = 1) -> SeedJet | FullJet:
    if is_jet(bias) or not is_jet(a):
        raise SamplesMix("a matrix product contracts the batch axis of a tensor computed from x")
    b = plain(b)
    product = _mm(slots, a, b if alpha == 1 else b * alpha)  # type: ignore[operator]
    bias = plain(bias)
    if beta != 1:
        bias = bias * beta  # type: ignore[operator]
    if isinstance(product, FullJet) and isinstance(bias, Tensor) and bias.dim() == 1:
        if slots.fold_bias:  # the one consumer is a fused activation: it adds the bias itself
            return FullJet(product.data, bias)
        data = product.data  # the GEMM's fresh output (mm saves its inputs, not its output): add in place
        data[:, 0].add_(bias)
        return FullJet(data)
    return _plus_constant(slots, product, bias)


def bmm_with_constant(slots: Slots, a: object, b: object) -> SeedJet | FullJet:
    """A batched matrix product of a jet and a constant (either side); two jets: product_rules."""
    if is_jet(a):
        other = plain(b).unsqueeze(1)  # type: ignore[union-attr]
        return map_slots(slots, a, lambda t: torch.matmul(t, other))  # type: ignore[arg-type]
    other = plain(a).unsqueeze(1)  # type: ignore[union-attr]
    return map_slots(slots, b, lambda t: torch.matmul(other, t))  # type: ignore[arg-type]


@rule(aten.mul.Scalar)
def times_constant(slots: Slots, jet: SeedJet | FullJet, constant: object) -> SeedJet | FullJet:
    """jet * constant (elementwise, broadcasting)."""
    return _scaled(slots, jet, constant, "mul")


@rule(aten.div.Scalar)
def divided_by_constant(slots: Slots, jet: SeedJet | FullJet, constant: object) -> SeedJet | FullJet:
    constant = slot_constant(plain(constant), primal_rank(jet), "div")
    return map_slots(slots, jet, lambda t: t / constant)

