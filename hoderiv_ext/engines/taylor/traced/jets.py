"""Jets of a traced graph's values: what the interpreter carries in place of each tensor that depends on x.

A value v of the traced function f (shape (N, *rest), the batch axis first)
is carried with the slots of the call's :class:`~hoderiv_ext.ops.layout.JetLayout`:
the value, t tangents, p pair slots and c (0 or 1) collapsed slot, and for an
exact bi-Laplacian over the inputs D (q = |D|; the pairs are then the Hessian
over D, c = 0) e = q + 1 extra slots after them: T_i = Σ_{j∈D} ∂_i∂_j² v for
i in D, then B = Σ_{i,j∈D} ∂_i²∂_j² v
(:mod:`~hoderiv_ext.engines.taylor.bilaplacian`). Linear ops act on the extra
slots as on the others (no constant term: they are derivatives). Every slot
tensor is "slot-carrying": (B, K, *rest) with the batch at axis 0 and the
slots at axis 1, so an op on the primal maps to the same op on its slots with
every non-batch axis moved up by one (:func:`slot_dim`).

Univariate jets (``directional_derivatives`` and the randomized
bi-Laplacian): the value, t tangents (t = d for a gradient, 0 when none is
needed) and, along R directions v_r, the Taylor coefficients c_1..c_K of
h(x + s v_r) (c_k = (1/k!) d^k/ds^k at s = 0), direction-major: slot
1 + t + r K + (k - 1), the layout of ``jet_univariate``
(csrc/include/hoderiv/univariate_math.h). No pair or collapsed slots. Linear
ops act on the coefficients as on tangents (a constant goes to c_0 = the
value only); the affine prefix carries c_1 of each direction as t + 1 .. t + R
extra rows of its shared tangents (its higher coefficients are zero).

Two forms:

* :class:`SeedJet` -- the affine prefix of f: the value (N, 1, *rest) and
  tangents that are the same for every sample (1, t, *rest) (or None for the
  identity: the input x itself), second-order slots zero. A Linear layer on it
  is a GEMM on the value and a small GEMM on the tangent matrix; the first
  activation reads the tangent matrix (``jet_activation_first``), so no
  per-sample tangents or zero slots are ever materialised.
* :class:`FullJet` -- one tensor (N, S, *rest), S = 1 + t + p + c + e. A pending
  ``bias`` (m,) not yet added to slot 0 lets a Linear followed by an
  activation run as one GEMM plus one fused kernel with the bias folded in.

Constants (parameters, buffers, tensors f captured, anything not computed
from x) stay plain tensors; :class:`Derived` marks tensors computed from x's
values without a derivative (comparisons, masks).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.ops.indexing import take
from hoderiv_ext.ops.jet_composite import upper_triangle_index
from hoderiv_ext.ops.layout import JetLayout


class SamplesMix(ValueError):
    """An op of the traced function touches the batch axis of a tensor computed from x."""


class OrderNotServed(NotServed):
    """A rule serves univariate Taylor coefficients up to ``served`` < the jet's order K.

    Raised as ``OrderNotServed(reason, served)`` (no ``__init__``, like :class:`NotServed`).
    """

    @property
    def served(self) -> int:
        return int(self.args[1]) if len(self.args) > 1 else 0


class BadOutput(Exception):
    """f's output is not what ``derivatives`` accepts (the error ``check_output`` raised, in ``error``)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class Slots:
    """Per-call facts every rule reads: the layout, the device and dtype, and its slots' tangents.

    ``bilaplacian_dims``: the inputs D of an exact bi-Laplacian (the layout's
    pairs are then the upper triangle over D), whose e = |D| + 1 extra slots
    follow the layout's; None for every other request.
    ``univariate``: (R, K) for a univariate jet: u = R K coefficient slots
    (direction-major) follow the layout's, which has tangents only.
    """

    layout: JetLayout
    device: torch.device
    dtype: torch.dtype
    bilaplacian_dims: tuple[int, ...] | None = None
    univariate: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        layout = self.layout
        self.t, self.p, self.c = layout.num_tangents, len(layout.pairs), 1 if layout.collapsed else 0
        self.main = 1 + self.t + self.p + self.c  # the layout's slots; the extra ones follow
        self.e = 0 if self.bilaplacian_dims is None else len(self.bilaplacian_dims) + 1
        if self.e and (self.c or self.p != (self.e - 1) * self.e // 2):
            raise ValueError("a bi-Laplacian's layout carries the pairs i <= j over its dims and no collapsed slot")
        self.r, self.k = (0, 0) if self.univariate is None else self.univariate
        self.u = self.r * self.k
        if self.univariate is not None and (self.r < 1 or self.k < 1 or self.p or self.c or self.e):
            raise ValueError("a univariate jet has R >= 1 directions, order K >= 1 and tangents only")
        self.s = self.main + self.e + self.u
        self.fold_bias = False  # set by the interpreter for a Linear whose one consumer is a fused activation
        # Set by the interpreter for a fused activation whose one consumer adds it to the jet ``residual`` (a skip
        # connection h + phi(v)); the rule sets ``residual_added`` when its kernel added it.
        self.residual: object = None
        self.residual_added = False
        # A mixed-mode sweep's CurvatureRecorder (traced/mixed.py): shown every step before its rule runs.
        self.curvatures: object = None
        self._hessian_index: Tensor | None = None

    def pair_tangents(self, tangents: Tensor) -> tuple[Tensor, Tensor]:
        """(T_{i_s}, T_{j_s}) over the pair slots s, from tangents (B, t, *rest) (views: no index tensor)."""
        return take(tangents, 1, self.layout.pair_i), take(tangents, 1, self.layout.pair_j)

    def collapsed_tangents(self, tangents: Tensor) -> Tensor:
        """The tangents (B, |C|, *rest) the collapsed slot sums over, from (B, t, *rest)."""
        return take(tangents, 1, self.layout.collapsed)

    def bilaplacian_tangents(self, tangents: Tensor, axis: int = 1) -> Tensor:
        """The tangents along the bi-Laplacian's inputs D, from t of them on ``axis``."""
        assert self.bilaplacian_dims is not None
        return take(tangents, axis, self.bilaplacian_dims)

    def coefficients(self, data: Tensor) -> Tensor:
        """The univariate coefficients (B, R, K, *rest) of a jet tensor (B, S, *rest) (a view)."""
        return data[:, self.main:self.main + self.u].reshape(data.shape[0], self.r, self.k, *data.shape[2:])

    def hessian_index(self) -> Tensor:
        """Slot of A_ab among the pair slots for every (a, b) in D x D (built once per call, on the device)."""
        if self._hessian_index is None:
            self._hessian_index = upper_triangle_index(self.e - 1, self.device)
        return self._hessian_index


@dataclass
class Derived:
    """A tensor computed from x's values that carries no derivative (a comparison, a mask)."""

    tensor: Tensor


class SeedJet:
    """The affine prefix: value (N, 1, *rest), tangents (1 or N, t, *rest) or None (x itself), zero second slots.

    For a univariate jet the tangents are (1 or N, t + R, *rest): t tangents, then c_1 of each direction.
    """

    __slots__ = ("value", "tangents")

    def __init__(self, value: Tensor, tangents: Tensor | None) -> None:
        self.value, self.tangents = value, tangents

    @property
    def primal_shape(self) -> tuple[int, ...]:
        return (self.value.shape[0], *self.value.shape[2:])

    def tangent_tensor(self, slots: Slots) -> Tensor:
        if self.tangents is None:
            return torch.eye(slots.t, dtype=self.value.dtype, device=self.value.device).unsqueeze(0)
        return self.tangents

    def full(self, slots: Slots) -> "FullJet":
        value = self.value
        rest = value.shape[2:]
        if slots.u:
            return self._full_univariate(slots)
        tangents = self.tangent_tensor(slots).expand(value.shape[0], slots.t, *rest)
        zeros = value.new_zeros((value.shape[0], slots.s - 1 - slots.t, *rest))
        return FullJet(torch.cat([value, tangents, zeros], dim=1))

    def _full_univariate(self, slots: Slots) -> "FullJet":
        value = self.value
        n, rest = value.shape[0], value.shape[2:]
        rows = self.tangents
        assert rows is not None and rows.shape[1] == slots.t + slots.r, "a univariate seed carries t + R tangent rows"
        rows = rows.expand(n, *rows.shape[1:])
        first = rows[:, slots.t:].unsqueeze(2)  # c_1 of each direction (N, R, 1, *rest)
        higher = value.new_zeros((n, slots.r, slots.k - 1, *rest))
        coefficients = torch.cat([first, higher], dim=2).reshape(n, slots.u, *rest)
        return FullJet(torch.cat([value, rows[:, :slots.t], coefficients], dim=1))


class FullJet:
    """The jet as one tensor (N, S, *rest); ``bias`` (m,): added to slot 0 when next read (see the module docstring)."""

    __slots__ = ("data", "bias")

    def __init__(self, data: Tensor, bias: Tensor | None = None) -> None:
        self.data, self.bias = data, bias

    @property
    def primal_shape(self) -> tuple[int, ...]:
        return (self.data.shape[0], *self.data.shape[2:])

    def settled(self) -> "FullJet":
        """This jet with its pending bias added to the value slot."""
        if self.bias is None:
            return self
        return FullJet(add_to_value(self.data, self.bias))


Jet = (SeedJet, FullJet)


def is_jet(value: object) -> bool:
    return isinstance(value, Jet)


def as_full(value: "SeedJet | FullJet", slots: Slots) -> FullJet:
    """The jet in its one-tensor form, its pending bias added."""
    if isinstance(value, SeedJet):
        return value.full(slots)
    return value.settled()


def primal_rank(jet: "SeedJet | FullJet") -> int:
    return len(jet.primal_shape)


def primal_axis(dim: int, rank: int, op: str) -> int:
    """Axis ``dim`` (negative: from the end) of a primal of ``rank`` axes, as an index in [0, rank).

    Raises:
        NotServed: ``dim`` is out of range.
    """
    if dim < -rank or dim >= rank:
        raise NotServed(f"{op}: axis {dim} out of range for a tensor of {rank} axes")
    return dim + rank if dim < 0 else dim


def slot_dim(dim: int, rank: int, op: str) -> int:
    """The axis of a slot-carrying tensor that is axis ``dim`` of its primal of ``rank`` axes.

    Raises:
        SamplesMix: ``dim`` is the batch axis.
    """
    axis = primal_axis(dim, rank, op)
    if axis == 0:
        raise SamplesMix(f"{op} acts along the batch axis of a tensor computed from x")
    return axis + 1


def reduced_axes(jet: "SeedJet | FullJet", dims: object, op: str) -> list[int]:
    """The primal axes a reduction ``op`` over ``dims`` (an int, a list, or None/[] = every axis) acts on.

    Raises:
        SamplesMix: the batch axis is among them.
    """
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        raise SamplesMix(f"{op} over every axis includes the batch axis")
    rank = primal_rank(jet)
    axes = [int(dims)] if isinstance(dims, int) else [int(axis) for axis in dims]  # type: ignore[union-attr]
    return [slot_dim(axis, rank, op) - 1 for axis in axes]


def same_rank(a: "SeedJet | FullJet", b: "SeedJet | FullJet") -> None:
    """Raise unless two jets of an elementwise op have primals of the same rank (else the batch axis of one
    would broadcast against another axis)."""
    if primal_rank(a) != primal_rank(b):
        raise SamplesMix("an elementwise op broadcasts tensors computed from x with different numbers of axes "
                         "(the batch axis of one would meet another axis)")


def slot_constant(constant: object, rank: int, op: str) -> object:
    """A constant operand of an elementwise op, broadcastable against slot-carrying tensors of ``rank`` axes.

    A constant with as many axes as the primal has the batch axis first: it
    gets a slot axis of size 1. Fewer axes broadcast against the trailing axes.
    """
    if not isinstance(constant, Tensor) or constant.dim() < rank:
        return constant
    if constant.dim() > rank:
        raise NotServed(f"{op}: a constant of {constant.dim()} axes would move the batch axis of a {rank}-axis tensor")
    return constant.unsqueeze(1)


def add_to_value(data: Tensor, constant: object, rank: int | None = None) -> Tensor:
    """data (B, K, *rest) with ``constant`` added to slot 0 (broadcasting; the other slots expand to match)."""
    if rank is None:
        rank = data.dim() - 1
    constant = slot_constant(constant, rank, "add")
    value = data[:, :1] + constant
    others = data[:, 1:]
    if value.shape[2:] != others.shape[2:] or value.shape[0] != others.shape[0]:
        others = others.expand(value.shape[0], others.shape[1], *value.shape[2:])
    return torch.cat([value, others], dim=1)

