"""The result of :func:`hoderiv_ext.derivatives`, and the one place its shapes are decided.

Canonical shapes
----------------
Every engine works on a canonical batch ``x`` of shape ``(N, d)`` and returns
canonical tensors, with ``o`` the number of outputs of ``f`` and ``k`` the
number of requested Hessian rows:

==============  ====================  ==========================================
field           canonical shape       entry
==============  ====================  ==========================================
value           ``(N, o)``            ``f(x_n)_a``
jacobian        ``(N, o, d)``         ``d f_a / d x_i``
full Hessian    ``(N, o, d, d)``      ``d^2 f_a / d x_i d x_j``
Hessian rows    ``(N, o, k, d)``      ``d^2 f_a / d x_{r_m} d x_j``, rows in the
                                      requested order
diagonal        ``(N, o, d)``         ``d^2 f_a / d x_i^2``
Laplacian       ``(N, o)``            ``sum_i d^2 f_a / d x_i^2`` (or a partial,
                                      weighted or randomized Laplacian)
bi-Laplacian    ``(N, o)``            ``sum_ij d^4 f_a / d x_i^2 d x_j^2``
==============  ====================  ==========================================

Squeezing rules
---------------
:func:`finalize` then drops axes according to how the user gave ``x`` and what
``f`` returned (a :class:`Layout`); nothing else squeezes anything:

1. ``x`` a single point ``(d,)`` (or a 0-d scalar): the ``N`` axis is dropped.
2. ``x`` given as ``(N,)`` scalar inputs of a map with one input (or a 0-d
   scalar): the input axes are dropped, i.e. every ``d`` axis and the rows axis ``k``
   (``d = 1`` and the only row is 0). ``x`` given as ``(N, 1)`` keeps them.
3. ``f`` returning ``(N,)`` or ``(N, 1)``: the ``o`` axis is dropped, so the
   Jacobian is the gradient ``(N, d)``. ``f`` returning ``(N, o)`` with
   ``o > 1`` keeps it.

So for ``x`` of shape ``(N, d)`` and a scalar ``f``: value ``(N,)``, gradient
``(N, d)``, hessian ``(N, d, d)``, hessian_rows ``(N, k, d)``,
hessian_diagonal ``(N, d)``, laplacian ``(N,)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from hoderiv_ext.core.requests import HessianRequest

Engine = Literal["autograd", "taylor"]
# What an engine returns: canonical (value (N, o), jacobian (N, o, d), second or None).
Canonical = tuple[Tensor, Tensor, "Tensor | None"]

# Axis roles of each canonical tensor: "N" samples, "o" outputs, "d" inputs,
# "k" requested rows (input indices too).
_AXES: dict[str, tuple[str, ...]] = {
    "value": ("N", "o"),
    "jacobian": ("N", "o", "d"),
    "full": ("N", "o", "d", "d"),
    "rows": ("N", "o", "k", "d"),
    "diagonal": ("N", "o", "d"),
    "laplacian": ("N", "o"),
    "bilaplacian": ("N", "o"),
}


@dataclass(frozen=True)
class Layout:
    """How the user gave ``x`` and what ``f`` returned; decides the squeezing.

    Attributes:
        has_batch_axis: ``x`` had a sample axis ``N``. False for a single point
            ``(d,)`` or a 0-d scalar: results drop ``N``.
        has_input_axis: ``x`` had an input axis ``d``. False for scalar inputs
            ``(N,)`` or a 0-d scalar: results drop every ``d`` and ``k`` axis.
        has_output_axis: ``f`` returned ``(N, o)`` with ``o > 1``. False for
            ``(N,)`` or ``(N, 1)``: results drop ``o``.
    """

    has_batch_axis: bool = True
    has_input_axis: bool = True
    has_output_axis: bool = True

    def dropped_roles(self) -> frozenset[str]:
        """The axis roles this layout drops."""
        roles: set[str] = set()
        if not self.has_batch_axis:
            roles.add("N")
        if not self.has_input_axis:
            roles.update(("d", "k"))
        if not self.has_output_axis:
            roles.add("o")
        return frozenset(roles)


@dataclass
class Derivatives:
    """Value and input derivatives of ``f`` at every sample (see the module docstring for shapes).

    Attributes:
        value: ``f(x)``.
        gradient: the gradient (scalar ``f``) or Jacobian (``o`` outputs).
        hessian: the full Hessian, if ``hessian="full"``.
        hessian_rows: the requested rows of the Hessian, if ``hessian=[...]``.
        hessian_diagonal: the Hessian diagonal, if ``hessian="diagonal"``.
        laplacian: the Laplacian (trace of the Hessian), if ``hessian="laplacian"``
            or a :class:`~hoderiv_ext.core.operators.Laplacian` request.
        bilaplacian: the bi-Laplacian, if ``hessian=Bilaplacian(...)``.
        request: the parsed ``hessian=`` argument.
        engine: ``"autograd"`` (the autograd engine) or ``"taylor"`` (the
            compiled Taylor-mode engine) -- which one computed these numbers.
        algorithm: how that engine computed them: the Taylor engine's
            ``"forward"`` (forward Taylor mode), ``"mixed"`` or
            ``"forward_over_reverse"``, ``"reverse"``, ``"collapsed_reverse"``,
            ``"bilaplacian"``, ``"univariate"``; the autograd engine's ``"auto"``.
    """

    value: Tensor
    gradient: Tensor
    hessian: Tensor | None
    hessian_rows: Tensor | None
    hessian_diagonal: Tensor | None
    laplacian: Tensor | None
    request: HessianRequest
    engine: Engine
    algorithm: str = ""
    bilaplacian: Tensor | None = None

    @property
    def jacobian(self) -> Tensor:
        """Alias of :attr:`gradient` (the name that fits ``o > 1`` outputs)."""
        return self.gradient


def canonical_second_shape(request: HessianRequest, n: int, o: int, d: int) -> tuple[int, ...] | None:
    """The canonical shape of the second-order tensor an engine returns for ``request``."""
    if request.kind == "none":
        return None
    if request.kind == "full":
        return (n, o, d, d)
    if request.kind == "rows":
        return (n, o, len(request.rows), d)
    if request.kind == "diagonal":
        return (n, o, d)
    return (n, o)  # laplacian, bilaplacian


def _check_canonical(engine: str, name: str, tensor: object, expected: tuple[int, ...]) -> Tensor:
    if not isinstance(tensor, Tensor) or tuple(tensor.shape) != expected:
        got = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
        raise RuntimeError(f"engine {engine!r} returned {name} of shape {got}, expected the canonical {expected}")
    return tensor


def _dropped_axes(roles: tuple[str, ...], dropped: frozenset[str]) -> tuple[int, ...]:
    return tuple(axis for axis, role in enumerate(roles) if role in dropped)


# The axes each result drops, for every (result, layout): a constant table, read on every call.
_DROPPED_AXES: dict[tuple[str, Layout], tuple[int, ...]] = {
    (name, layout): _dropped_axes(roles, layout.dropped_roles())
    for name, roles in _AXES.items()
    for layout in (Layout(b, i, o) for b in (False, True) for i in (False, True) for o in (False, True))
}


def _squeeze_roles(tensor: Tensor, name: str, layout: Layout) -> Tensor:
    """Drop the axes of result ``name`` (a key of _AXES) that ``layout`` drops (each has size 1 by construction).

    Eagerly the axes come from the constant table. Under torch.compile they are computed: dynamo cannot look up
    a dict whose keys hold a dataclass without guarding on every key (about 340 guard checks on each compiled
    call for this table), while the computation on constants costs nothing at run time.
    """
    if torch.compiler.is_compiling():
        axes = _dropped_axes(_AXES[name], layout.dropped_roles())
    else:
        axes = _DROPPED_AXES[name, layout]
    if not axes:
        return tensor
    shape = tensor.shape
    if any(shape[axis] != 1 for axis in axes):  # pragma: no cover - guarded by the layout rules
        raise RuntimeError(f"cannot drop axes {axes} from a tensor of shape {tuple(shape)}: they must have size 1")
    # One axis through squeeze(int): the tuple overload costs about 1 us more per call (2026-12-03).
    return tensor.squeeze(axes[0]) if len(axes) == 1 else tensor.squeeze(axes)


def finalize(
    value: Tensor,
    jacobian: Tensor,
    second: Tensor | None,
    request: HessianRequest,
    *,
    layout: Layout,
    engine: Engine,
    algorithm: str = "",
) -> Derivatives:
    """Check an engine's canonical tensors and apply the squeezing rules.

    Args:
        value: ``(N, o)``.
        jacobian: ``(N, o, d)``.
        second: the canonical second-order tensor for ``request.kind`` (see the
            module docstring) or None for ``"none"``.
        request: what was asked for.
        layout: how ``x`` was given and what ``f`` returned.
        engine: the engine that computed the tensors (recorded on the result).
        algorithm: the engine's algorithm (recorded on the result).

    Raises:
        RuntimeError: an engine returned a tensor of a non-canonical shape (a
            bug in the engine, not in the caller's input).
    """
    if not isinstance(value, Tensor) or value.dim() != 2:
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise RuntimeError(f"engine {engine!r} returned value of shape {got}, expected the canonical (N, o)")
    n, o = value.shape
    if not isinstance(jacobian, Tensor) or jacobian.dim() != 3:
        got = tuple(jacobian.shape) if isinstance(jacobian, Tensor) else type(jacobian).__name__
        raise RuntimeError(f"engine {engine!r} returned jacobian of shape {got}, expected the canonical (N, o, d)")
    d = jacobian.shape[2]
    _check_canonical(engine, "jacobian", jacobian, (n, o, d))
    expected_second = canonical_second_shape(request, n, o, d)
    if expected_second is None:
        if second is not None:
            raise RuntimeError(f"engine {engine!r} returned second-order results that were not requested")
    else:
        _check_canonical(engine, f"the {request.kind} second-order tensor", second, expected_second)

    fields: dict[str, Tensor | None] = {
        "hessian": None,
        "hessian_rows": None,
        "hessian_diagonal": None,
        "laplacian": None,
        "bilaplacian": None,
    }
    if second is not None:
        field_name = {
            "full": "hessian",
            "rows": "hessian_rows",
            "diagonal": "hessian_diagonal",
            "laplacian": "laplacian",
            "bilaplacian": "bilaplacian",
        }[request.kind]
        fields[field_name] = _squeeze_roles(second, request.kind, layout)
    return Derivatives(
        value=_squeeze_roles(value, "value", layout),
        gradient=_squeeze_roles(jacobian, "jacobian", layout),
        request=request,
        engine=engine,
        algorithm=algorithm,
        **fields,
    )


def empty_canonical(
    request: HessianRequest, o: int, d: int, *, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Canonical all-empty results for a batch of ``N = 0`` samples."""
    value = torch.zeros((0, o), dtype=dtype, device=device)
    jacobian = torch.zeros((0, o, d), dtype=dtype, device=device)
    second_shape = canonical_second_shape(request, 0, o, d)
    second = None if second_shape is None else torch.zeros(second_shape, dtype=dtype, device=device)
    return value, jacobian, second
