"""Jet rules of the ops that move entries around: views, reshapes, indexing, concatenation.

Each maps every slot the same way. Axis arguments are primal axes; the batch
axis (0) of a jet may not be indexed, sliced, concatenated along or moved:
such an op mixes samples (:class:`~hoderiv_ext.engines.taylor.traced.jets.SamplesMix`)
or is not served.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.engines.taylor.traced.jets import (
    FullJet,
    SamplesMix,
    SeedJet,
    Slots,
    as_full,
    is_jet,
    primal_axis,
    primal_rank,
    slot_dim,
)
from hoderiv_ext.engines.taylor.traced.rules import constant_jet, map_slots, plain, rule, value_of

aten = torch.ops.aten
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
    dims = [primal_axis(d, rank, "permute") for d in dims]
    if dims[0] != 0:
        raise NotServed("a permute moves the batch axis of a tensor computed from x")
    order = [0, 1] + [d + 1 for d in dims[1:]]
    return map_slots(slots, jet, lambda t: t.permute(order))


@rule(aten.transpose.int)
def _transpose(slots: Slots, jet: SeedJet | FullJet, dim0: int, dim1: int) -> SeedJet | FullJet:
    rank = primal_rank(jet)
    a, b = primal_axis(dim0, rank, "transpose"), primal_axis(dim1, rank, "transpose")
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
    dim = primal_axis(dim, rank, "unsqueeze")
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
        axes = [primal_axis(axis, rank, "squeeze") for axis in axes]
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
    if primal_axis(dim, rank, "slice") == 0:
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
    axis = primal_axis(dim, rank, "stack")
    if axis == 0:
        raise NotServed("a stack along axis 0 moves the batch axis of tensors computed from x")
    return FullJet(torch.stack([jet.data for jet in _same_rank_jets(slots, pieces, "stack")], axis + 1))
