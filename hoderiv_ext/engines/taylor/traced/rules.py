"""The jet rules' registry and the helpers every rule uses.

A rule takes the call's :class:`~hoderiv_ext.engines.taylor.traced.jets.Slots`
and the op's arguments (jets, constants, Python values) and returns the result.
The rules live in shape_rules.py (views, indexing, joins), linear_rules.py
(sums, scalings, products with constants), unary_rules.py and
product_rules.py; :data:`RULES` maps each aten overload to its rule.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.engines.taylor.traced.jets import Derived, FullJet, SeedJet, Slots, primal_rank

aten = torch.ops.aten
Rule = Callable[..., object]
RULES: dict[object, Rule] = {}


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
    constant = plain(constant)
    if isinstance(constant, Tensor):
        value = constant.to(dtype=slots.dtype, device=slots.device)
    else:  # a Python number: filled on the device (torch.as_tensor would copy it from the host)
        value = torch.full((), constant, dtype=slots.dtype, device=slots.device)  # type: ignore[arg-type]
    rank = primal_rank(like)
    if value.dim() > rank:
        raise NotServed(f"a constant of {value.dim()} axes would move the batch axis of a {rank}-axis tensor")
    value = value.reshape((1,) * (rank - value.dim()) + tuple(value.shape))  # broadcast from the right, as torch
    value = value.expand(like.primal_shape[0], *value.shape[1:]).unsqueeze(1)
    zeros = value.new_zeros((value.shape[0], slots.s - 1, *value.shape[2:]))
    return FullJet(torch.cat([value, zeros], dim=1))


def value_of(jet: SeedJet | FullJet) -> Tensor:
    """The primal value (N, *rest) of a jet."""
    if isinstance(jet, SeedJet):
        return jet.value[:, 0]
    data = jet.data[:, 0]
    return data if jet.bias is None else data + jet.bias
