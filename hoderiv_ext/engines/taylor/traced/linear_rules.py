"""Jet rules of the linear (and affine) aten ops: the same linear map on every slot.

Each rule takes the call's :class:`~hoderiv_ext.engines.taylor.traced.jets.Slots`
and the op's arguments (jets, constants, Python values) and returns the result
jet. An op with a constant term (a bias, an added constant) adds it to the
value slot only. Axis arguments are primal axes; the batch axis (0) of a jet
may not be reduced, indexed, sliced, concatenated along or moved: such an op
mixes samples (:class:`~hoderiv_ext.engines.taylor.traced.jets.SamplesMix`)
or is not served.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.engines.taylor.traced.jets import (
    Derived,
    FullJet,
    SamplesMix,
    SeedJet,
    Slots,
    add_to_value,
    as_full,
    is_jet,
    primal_rank,
    slot_constant,
    slot_dim,
)

aten = torch.ops.aten
Rule = Callable[..., object]
RULES: dict[object, Rule] = {}
_END = 2**62  # a slice end at or past this reads to the end of the axis


def rule(*ops: object) -> Callable[[Rule], Rule]:
    def register(function: Rule) -> Rule:
        for op in ops:
            RULES[op] = function
        return function
    return register


def plain(value: object) -> object:
    """A constant operand as a tensor or Python number (a :class:`Derived` unwrapped)."""
    return value.tensor if isinstance(value, Derived) else value


def map_slots(slots: Slots, jet: SeedJet | FullJet, function: Callable[[Tensor], Tensor]) -> SeedJet | FullJet:
    """The jet with the linear map ``function`` (on slot-carrying tensors) applied to every slot."""
    if isinstance(jet, SeedJet):
        return SeedJet(function(jet.value), function(jet.tangent_tensor(slots)))
    return FullJet(function(jet.settled().data))


def constant_jet(slots: Slots, constant: object, like: SeedJet | FullJet) -> FullJet:
    """A constant (rank of ``like``'s primal, batch axis first) as a jet with zero derivatives."""
    value = torch.as_tensor(plain(constant), dtype=slots.dtype, device=slots.device)
    rank = primal_rank(like)
    if value.dim() < rank:
        value = value.expand(like.primal_shape[0], *value.shape[-(rank - 1):]) if rank > 1 else value.expand(
            like.primal_shape[0])
    value = value.unsqueeze(1)
    zeros = value.new_zeros((value.shape[0], slots.s - 1, *value.shape[2:]))
    return FullJet(torch.cat([value, zeros], dim=1))


def value_of(jet: SeedJet | FullJet) -> Tensor:
    """The primal value (N, *rest) of a jet."""
    if isinstance(jet, SeedJet):
        return jet.value[:, 0]
    data = jet.data[:, 0]
    return data if jet.bias is None else data + jet.bias


# ----------------------------------------------------------------------------- pure views and copies


@rule(aten.alias.default, aten.clone.default, aten.contiguous.default, aten.lift_fresh_copy.default)
def _identity(slots: Slots, jet: object, *args: object, **kwargs: object) -> object:
    return jet


@rule(aten._to_copy.default)
def _to_copy(slots: Slots, jet: object, **kwargs: object) -> object:
    dtype, device = kwargs.get("dtype"), kwargs.get("device")
    if (dtype is None or dtype == slots.dtype) and (device is None or torch.device(device) == slots.device):
        return jet
    raise NotServed(f"a tensor computed from x is converted to {dtype or device}; the jet keeps x's dtype and device")


@rule(aten.detach.default)
def _detach(slots: Slots, jet: SeedJet | FullJet) -> FullJet:
    return constant_jet(slots, value_of(jet).detach(), jet)


# ----------------------------------------------------------------------------- shapes


def _inferred_shape(primal: tuple[int, ...], shape: list[int], op: str) -> list[int]:
    shape = [int(size) for size in shape]
    if shape.count(-1) > 1:
        raise NotServed(f"{op}: more than one -1 in the shape {shape}")
    if -1 in shape:
        known = math.prod(size for size in shape if size != -1)
        total = math.prod(primal)
        if known == 0:
            raise NotServed(f"{op}: cannot infer -1 in {shape} for an empty tensor")
        shape[shape.index(-1)] = total // known
    return shape


@rule(aten.view.default, aten.reshape.default, aten._unsafe_view.default)
def _view(slots: Slots, jet: SeedJet | FullJet, shape: list[int]) -> SeedJet | FullJet:
    primal = jet.primal_shape
    out = _inferred_shape(primal, list(shape), "view")
    if not out or out[0] != primal[0] or math.prod(out[1:]) != math.prod(primal[1:]):
        raise SamplesMix(f"a reshape from {list(primal)} to {list(shape)} merges the batch axis with other axes")
    rest = out[1:]
    return map_slots(slots, jet, lambda t: t.reshape(t.shape[0], t.shape[1], *rest))


@rule(aten.permute.default)
def _permute(slots: Slots, jet: SeedJet | FullJet, dims: list[int]) -> SeedJet | FullJet:
    rank = primal_rank(jet)
    dims = [d + rank if d < 0 else d for d in dims]
    if dims[0] != 0:
        raise NotServed("a permute moves the batch axis of a tensor computed from x")
    order = [0, 1] + [d + 1 for d in dims[1:]]
    return map_slots(slots, jet, lambda t: t.permute(order))


@rule(aten.transpose.int)
def _transpose(slots: Slots, jet: SeedJet | FullJet, dim0: int, dim1: int) -> SeedJet | FullJet:
    rank = primal_rank(jet)
    a, b = (dim0 + rank if dim0 < 0 else dim0), (dim1 + rank if dim1 < 0 else dim1)
    if a == b:
        return jet
    if 0 in (a, b):
        raise NotServed("a transpose moves the batch axis of a tensor computed from x")
    return map_slots(slots, jet, lambda t: t.transpose(a + 1, b + 1))


@rule(aten.t.default)
def _t(slots: Slots, jet: SeedJet | FullJet) -> SeedJet | FullJet:
    if primal_rank(jet) < 2:
        return jet
    raise NotServed("a transpose moves the batch axis of a tensor computed from x")


@rule(aten.expand.default)
def _expand(slots: Slots, jet: SeedJet | FullJet, sizes: list[int], implicit: bool = False) -> SeedJet | FullJet:
    rank = primal_rank(jet)
    if len(sizes) != rank:
        raise NotServed(f"an expand to {len(sizes)} axes moves the batch axis of a {rank}-axis tensor computed from x")
    if sizes[0] not in (-1, jet.primal_shape[0]):
        raise SamplesMix("an expand repeats the batch axis")
    rest = list(sizes[1:])
    return map_slots(slots, jet, lambda t: t.expand(-1, -1, *rest))


@rule(aten.unsqueeze.default)
def _unsqueeze(slots: Slots, jet: SeedJet | FullJet, dim: int) -> SeedJet | FullJet:
    rank = primal_rank(jet) + 1
    dim = dim + rank if dim < 0 else dim
    if dim == 0:
        raise NotServed("an unsqueeze at axis 0 moves the batch axis of a tensor computed from x")
    return map_slots(slots, jet, lambda t: t.unsqueeze(dim + 1))


@rule(aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default)
def _squeeze(slots: Slots, jet: SeedJet | FullJet, dims: object = None) -> SeedJet | FullJet:
    rank, primal = primal_rank(jet), jet.primal_shape
    if dims is None:
        axes = [axis for axis in range(1, rank) if primal[axis] == 1]
    else:
        axes = [int(dims)] if isinstance(dims, int) else [int(axis) for axis in dims]  # type: ignore[union-attr]
        axes = [axis + rank if axis < 0 else axis for axis in axes]
        if 0 in axes and primal[0] == 1:
            raise SamplesMix("a squeeze removes the batch axis")
        axes = [axis for axis in axes if axis != 0]
    moved = [axis + 1 for axis in axes]
    return map_slots(slots, jet, lambda t: t.squeeze(moved) if moved else t)


# ----------------------------------------------------------------------------- indexing


@rule(aten.slice.Tensor)
def _slice(slots: Slots, jet: SeedJet | FullJet, dim: int = 0, start: int | None = None, end: int | None = None,
           step: int = 1) -> SeedJet | FullJet:
    rank = primal_rank(jet)
    if (dim + rank if dim < 0 else dim) == 0:
        if (start in (None, 0)) and (end is None or end >= jet.primal_shape[0]) and step == 1:
            return jet
        raise SamplesMix("a slice selects samples of the batch")
    axis = slot_dim(dim, rank, "slice")
    return map_slots(slots, jet, lambda t: aten.slice.Tensor(t, axis, start, end, step))


@rule(aten.select.int)
def _select(slots: Slots, jet: SeedJet | FullJet, dim: int, index: int) -> SeedJet | FullJet:
    axis = slot_dim(dim, primal_rank(jet), "select (x[..., i])")
    return map_slots(slots, jet, lambda t: t.select(axis, index))


@rule(aten.index_select.default)
def _index_select(slots: Slots, jet: SeedJet | FullJet, dim: int, index: object) -> SeedJet | FullJet:
    if is_jet(index):
        raise NotServed("index_select with indices computed from x")
    axis = slot_dim(dim, primal_rank(jet), "index_select")
    return map_slots(slots, jet, lambda t: t.index_select(axis, plain(index)))  # type: ignore[arg-type]


@rule(aten.index.Tensor)
def _index(slots: Slots, jet: SeedJet | FullJet, indices: list[object]) -> SeedJet | FullJet:
    if not indices or indices[0] is not None:
        raise SamplesMix("advanced indexing selects samples of the batch")
    if any(is_jet(index) for index in indices):
        raise NotServed("indexing with indices computed from x")
    used = [position for position, index in enumerate(indices) if index is not None]
    if used != list(range(used[0], used[-1] + 1)):
        raise NotServed("advanced indexing with non-adjacent index tensors")
    shifted = [None, *[plain(index) for index in indices]]
    return map_slots(slots, jet, lambda t: aten.index.Tensor(t, shifted))


@rule(aten.gather.default)
def _gather(slots: Slots, jet: SeedJet | FullJet, dim: int, index: object, sparse_grad: bool = False) -> FullJet:
    if is_jet(index):
        raise NotServed("gather with indices computed from x")
    full = as_full(jet, slots)
    axis = slot_dim(dim, primal_rank(jet), "gather")
    index = plain(index)
    assert isinstance(index, Tensor)
    slot_index = index.unsqueeze(1).expand(index.shape[0], slots.s, *index.shape[1:])
    return FullJet(full.data.gather(axis, slot_index))


# ----------------------------------------------------------------------------- joins


def _same_rank_jets(slots: Slots, pieces: list[object], op: str) -> list[FullJet]:
    jets = [piece for piece in pieces if is_jet(piece)]
    like = jets[0]
    rank = primal_rank(like)  # type: ignore[arg-type]
    out: list[FullJet] = []
    for piece in pieces:
        if is_jet(piece):
            if primal_rank(piece) != rank:  # type: ignore[arg-type]
                raise NotServed(f"{op} of tensors computed from x with different numbers of axes")
            out.append(as_full(piece, slots))  # type: ignore[arg-type]
        else:
            out.append(constant_jet(slots, piece, like))  # type: ignore[arg-type]
    return out


@rule(aten.cat.default)
def _cat(slots: Slots, pieces: list[object], dim: int = 0) -> SeedJet | FullJet:
    jets = [piece for piece in pieces if is_jet(piece)]
    rank = primal_rank(jets[0])  # type: ignore[arg-type]
    axis = slot_dim(dim, rank, "cat")
    if all(isinstance(piece, SeedJet) and piece.tangents is not None and piece.tangents.shape[0] == 1
           for piece in pieces):
        seeds: list[SeedJet] = pieces  # type: ignore[assignment]
        return SeedJet(torch.cat([s.value for s in seeds], axis), torch.cat([s.tangents for s in seeds], axis))  # type: ignore[misc]
    return FullJet(torch.cat([jet.data for jet in _same_rank_jets(slots, pieces, "cat")], axis))


@rule(aten.stack.default)
def _stack(slots: Slots, pieces: list[object], dim: int = 0) -> FullJet:
    jets = [piece for piece in pieces if is_jet(piece)]
    rank = primal_rank(jets[0]) + 1  # type: ignore[arg-type]
    axis = dim + rank if dim < 0 else dim
    if axis == 0:
        raise NotServed("a stack along axis 0 moves the batch axis of tensors computed from x")
    return FullJet(torch.stack([jet.data for jet in _same_rank_jets(slots, pieces, "stack")], axis + 1))


# ----------------------------------------------------------------------------- reductions over features


def _reduced_axes(jet: SeedJet | FullJet, dims: object, op: str) -> list[int]:
    rank = primal_rank(jet)
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        raise SamplesMix(f"{op} over every axis includes the batch axis")
    axes = [int(dims)] if isinstance(dims, int) else [int(axis) for axis in dims]  # type: ignore[union-attr]
    return [slot_dim(axis, rank, op) for axis in axes]


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


def _added(slots: Slots, a: object, b: object, alpha: object = 1) -> SeedJet | FullJet:
    """a + alpha * b for jets and constants (at least one a jet)."""
    if is_jet(a) and is_jet(b):
        if primal_rank(a) != primal_rank(b):  # type: ignore[arg-type]
            raise SamplesMix("an elementwise op broadcasts tensors computed from x with different numbers of axes "
                             "(the batch axis of one would meet another axis)")
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
    return _added(slots, a, b, alpha)


@rule(aten.sub.Tensor, aten.sub.Scalar)
def _sub(slots: Slots, a: object, b: object, alpha: object = 1) -> SeedJet | FullJet:
    if is_jet(b):
        return _added(slots, a, b, -alpha)  # type: ignore[operator]
    return _added(slots, a, -plain(b) * alpha)  # type: ignore[operator]


@rule(aten.rsub.Scalar, aten.rsub.Tensor)
def _rsub(slots: Slots, a: object, b: object, alpha: object = 1) -> SeedJet | FullJet:
    return _sub(slots, b, a, alpha)


@rule(aten.neg.default)
def _neg(slots: Slots, jet: SeedJet | FullJet) -> SeedJet | FullJet:
    return map_slots(slots, jet, torch.neg)


@rule(aten.mul.Scalar)
def _mul_scalar(slots: Slots, jet: SeedJet | FullJet, factor: float) -> SeedJet | FullJet:
    return map_slots(slots, jet, lambda t: t * factor)


@rule(aten.div.Scalar)
def _div_scalar(slots: Slots, jet: SeedJet | FullJet, factor: float) -> SeedJet | FullJet:
    return map_slots(slots, jet, lambda t: t / factor)


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
        data[:, 0] += bias
        return FullJet(data)
    return _plus_constant(slots, product, bias)


@rule(aten.bmm.default)
def _bmm_constant(slots: Slots, a: object, b: object) -> SeedJet | FullJet:
    if is_jet(a) and is_jet(b):
        raise AssertionError("two jets: the product rule (nonlinear_rules) serves this")  # pragma: no cover
    if is_jet(a):
        other = plain(b).unsqueeze(1)  # type: ignore[union-attr]
        return map_slots(slots, a, lambda t: torch.matmul(t, other))  # type: ignore[arg-type]
    other = plain(a).unsqueeze(1)  # type: ignore[union-attr]
    return map_slots(slots, b, lambda t: torch.matmul(other, t))  # type: ignore[arg-type]


def times_constant(slots: Slots, jet: SeedJet | FullJet, constant: object) -> SeedJet | FullJet:
    """jet * constant (elementwise, broadcasting)."""
    return _scaled(slots, jet, constant, "mul")


def divided_by_constant(slots: Slots, jet: SeedJet | FullJet, constant: object) -> SeedJet | FullJet:
    constant = slot_constant(plain(constant), primal_rank(jet), "div")
    return map_slots(slots, jet, lambda t: t / constant)


def plus(slots: Slots, a: object, b: object, alpha: object = 1) -> SeedJet | FullJet:
    """a + alpha * b, one of them a jet."""
    return _added(slots, a, b, alpha)
