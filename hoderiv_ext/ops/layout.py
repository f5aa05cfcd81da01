"""The slot layout of a jet: what each slot of a (N, S, m) jet tensor holds.

A jet carries, per sample and unit, S = 1 + t + p + c slots:

=================  ==========================================================
slots              content
=================  ==========================================================
0                  the value v
1 .. t             the tangents T_k = dv/du_k along t input directions u_k
t+1 .. t+p         pair slots Q_s = d2v/du_{i_s} du_{j_s}, one per pair
last (if c = 1)    one collapsed slot Q_c = sum_{k in C} d2v/du_k^2
=================  ==========================================================

The directions u_k are the unit vectors e_k of the input for the requests
of ``derivatives`` (t = d). The math of one activation step on such a jet is
in csrc/include/hoderiv/jet_math.h and, written in torch ops, in
:mod:`hoderiv_ext.ops.jet_composite`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch

_Function = TypeVar("_Function", bound=Callable[..., "JetLayout"])


def layout_cache(maxsize: int) -> Callable[[_Function], _Function]:
    """``functools.lru_cache`` for a pure function of integers and tuples that returns a layout.

    Safe across calls because a layout holds only integers (no tensor that could carry a mode or a
    device). Under torch.compile the function runs uncached: dynamo traces through it anyway (a
    layout is a constant of the graph), and it warns about every ``lru_cache`` wrapper it meets.
    """
    def wrap(function: _Function) -> _Function:
        cached = functools.lru_cache(maxsize=maxsize)(function)

        @functools.wraps(function)
        def call(*args: object) -> JetLayout:
            if torch.compiler.is_compiling():
                return function(*args)
            return cached(*args)

        call.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        return call  # type: ignore[return-value]

    return wrap


@dataclass(frozen=True)
class JetLayout:
    """Which slots a jet carries (see the module docstring).

    Attributes:
        num_tangents: t, the number of tangent slots.
        pairs: the pair slots (i_s, j_s), each index in [0, t).
        collapsed: the tangent indices summed into the one collapsed slot
            (distinct, in [0, t)); empty for no collapsed slot.
    """

    num_tangents: int
    pairs: tuple[tuple[int, int], ...] = ()
    collapsed: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # The ops take the pairs as two index lists: made once here, not on every call (not fields: eq and hash
        # stay those of the fields; not a cached_property, which torch.compile cannot trace).
        object.__setattr__(self, "_pair_i", [i for i, _ in self.pairs])
        object.__setattr__(self, "_pair_j", [j for _, j in self.pairs])
        t = self.num_tangents
        if isinstance(t, torch.SymInt):  # traced with dynamic shapes (the first layer's weight width)
            return
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"JetLayout.num_tangents must be an int >= 0, got {t!r}")
        for pair in self.pairs:
            if len(pair) != 2 or not all(0 <= index < t for index in pair):
                raise ValueError(f"JetLayout.pairs: pair {pair!r} is not two indices in [0, {t})")
        if not all(0 <= index < t for index in self.collapsed) or len(set(self.collapsed)) != len(self.collapsed):
            raise ValueError(f"JetLayout.collapsed must hold distinct indices in [0, {t}), got {self.collapsed!r}")

    @property
    def num_second(self) -> int:
        """Number of second-order slots: the pairs, plus one if there is a collapsed slot."""
        return len(self.pairs) + (1 if self.collapsed else 0)

    @property
    def num_slots(self) -> int:
        """S = 1 + t + p + c."""
        return 1 + self.num_tangents + self.num_second

    @property
    def pair_i(self) -> list[int]:
        """The first index of every pair (computed with the layout; callers must not modify it)."""
        return self._pair_i  # type: ignore[attr-defined]

    @property
    def pair_j(self) -> list[int]:
        """The second index of every pair (computed with the layout; callers must not modify it)."""
        return self._pair_j  # type: ignore[attr-defined]
