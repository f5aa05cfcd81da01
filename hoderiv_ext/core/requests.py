"""What second-order information a call asks for: the ``hessian=`` argument.

``hessian=`` accepts

=====================  =====================================================
value                  meaning
=====================  =====================================================
``None`` / ``"none"``  value and first derivatives only
``"full"``             the full Hessian ``H[i, j] = d^2 f / dx_i dx_j``
``[r0, r1, ...]``      the Hessian rows ``H[r, :]`` for the listed inputs
                       (also a 1-D integer tensor); order is kept, negative
                       indices count from the end as in Python
``"diagonal"``         ``H[i, i]`` for every input i
``"laplacian"``        ``sum_i H[i, i]`` (the trace of H)
``Laplacian(...)``     partial, weighted or randomized Laplacians
``Bilaplacian(...)``   the bi-Laplacian (see :mod:`hoderiv_ext.core.operators`)
=====================  =====================================================

:func:`parse_hessian_request` turns that value into a :class:`HessianRequest`
that every engine understands; :func:`normalize_indices` is the index check it
shares with the parameter-space API.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from hoderiv_ext.core.operators import Bilaplacian, Laplacian

HessianKind = Literal["none", "full", "rows", "diagonal", "laplacian", "bilaplacian"]
HESSIAN_KINDS: tuple[str, ...] = ("none", "full", "rows", "diagonal", "laplacian", "bilaplacian")


@dataclass(frozen=True)
class HessianRequest:
    """A parsed ``hessian=`` argument.

    Attributes:
        kind: one of ``"none"``, ``"full"``, ``"rows"``, ``"diagonal"``,
            ``"laplacian"``, ``"bilaplacian"``.
        rows: for ``kind == "rows"``, the requested input indices, each in
            ``[0, d)``, distinct, in the order asked for; ``()`` otherwise.
        dims: for the Laplacian and bi-Laplacian, the inputs they sum over
            (in ``[0, d)``, distinct), or None for every input.
        operator: the user's :class:`~hoderiv_ext.core.operators.Laplacian`
            or :class:`~hoderiv_ext.core.operators.Bilaplacian` when it asks
            for more than the plain operator (weights, random samples), else None.
    """

    kind: HessianKind
    rows: tuple[int, ...] = ()
    dims: tuple[int, ...] | None = None
    operator: Laplacian | Bilaplacian | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in HESSIAN_KINDS:
            raise ValueError(f"HessianRequest.kind must be one of {HESSIAN_KINDS}, got {self.kind!r}")
        if self.kind == "rows" and not self.rows:
            raise ValueError("HessianRequest(kind='rows') needs at least one row")
        if self.kind != "rows" and self.rows:
            raise ValueError(f"HessianRequest(kind={self.kind!r}) takes no rows, got {self.rows}")
        if self.kind not in ("laplacian", "bilaplacian") and (self.dims is not None or self.operator is not None):
            raise ValueError(f"HessianRequest(kind={self.kind!r}) takes no dims or operator")

    @property
    def weighted(self) -> bool:
        """A Laplacian over directions sigma (given weights, or random samples) rather than over inputs."""
        return isinstance(self.operator, Laplacian) and (self.operator.weights is not None
                                                          or self.operator.samples is not None)

    @property
    def randomized(self) -> bool:
        """An estimate from random directions (Laplacian or Bilaplacian with samples=)."""
        return self.operator is not None and self.operator.samples is not None

    def hessian_rows_needed(self, d: int) -> tuple[int, ...]:
        """Input indices whose Hessian rows an engine has to compute.

        ``"full"``, ``"diagonal"`` and ``"laplacian"`` need every row (a
        reverse- or forward-mode engine gets ``H[i, i]`` only as part of row
        ``i``), a partial Laplacian the rows of its dims; ``"rows"`` needs
        just the requested ones; ``"none"`` none. Weighted Laplacians and the
        bi-Laplacian need directional products instead (engines handle them apart).
        """
        if self.kind == "none" or self.weighted or self.kind == "bilaplacian":
            return ()
        if self.kind == "rows":
            return self.rows
        if self.dims is not None:
            return self.dims
        return tuple(range(d))


def normalize_indices(indices: object, size: int, *, name: str) -> tuple[int, ...]:
    """Check and normalise a list of indices into ``range(size)``.

    Accepts a sequence of Python / NumPy integers, a 1-D integer tensor or a
    1-D integer NumPy array.
    Negative indices count from the end. Raises ``TypeError`` for non-integer
    entries (bools included) and ``ValueError`` (naming ``name``) for an empty
    list, an index out of range or a duplicate.
    """
    if isinstance(indices, torch.Tensor):
        if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer indices, got a tensor of dtype {indices.dtype}")
        if indices.dim() != 1:
            raise ValueError(f"{name} must be a 1-D tensor of indices, got shape {tuple(indices.shape)}")
        raw: list[object] = indices.tolist()
    elif hasattr(indices, "ndim") and hasattr(indices, "dtype") and hasattr(indices, "tolist"):  # a NumPy array
        if getattr(indices.dtype, "kind", "") not in ("i", "u"):
            raise TypeError(f"{name} must hold integer indices, got an array of dtype {indices.dtype}")
        if indices.ndim != 1:
            raise ValueError(f"{name} must be a 1-D array of indices, got shape {tuple(indices.shape)}")
        raw = indices.tolist()
    elif isinstance(indices, (str, bytes)) or not isinstance(indices, Sequence):
        raise TypeError(f"{name} must be a sequence of integer indices, got {type(indices).__name__}")
    else:
        raw = list(indices)
    if not raw:
        raise ValueError(f"{name} must name at least one index, got an empty list")
    normalized: list[int] = []
    for entry in raw:
        if isinstance(entry, bool):
            raise TypeError(f"{name} must hold integer indices, got the bool {entry!r}")
        try:
            index = operator.index(entry)
        except TypeError:
            raise TypeError(f"{name} must hold integer indices, got {entry!r} ({type(entry).__name__})") from None
        if not -size <= index < size:
            raise ValueError(f"{name}: index {index} is out of range for size {size} (valid: {-size} to {size - 1})")
        normalized.append(index % size)
    repeated = sorted(index for index, count in Counter(normalized).items() if count > 1)
    if repeated:
        raise ValueError(f"{name} names the same index more than once (after normalising negatives): {repeated}")
    return tuple(normalized)


def parse_hessian_request(hessian: object, d: int) -> HessianRequest:
    """Turn the user's ``hessian=`` argument into a :class:`HessianRequest`.

    Args:
        hessian: ``None``, ``"none"``, ``"full"``, ``"diagonal"``,
            ``"laplacian"``, a sequence of int row indices or a 1-D integer
            tensor (see the module docstring).
        d: the input dimension the rows index into.

    Raises:
        ValueError: an unknown string, an empty row list, a row out of
            ``[-d, d)`` or a repeated row; the message names ``hessian``.
        TypeError: anything else (a float, a bool, a float tensor).
    """
    if hessian is None:
        return HessianRequest("none")
    if isinstance(hessian, (Laplacian, Bilaplacian)):
        return _operator_request(hessian, d)
    if isinstance(hessian, str):
        if hessian in ("none", "full", "diagonal", "laplacian"):
            return HessianRequest(hessian)  # type: ignore[arg-type]
        raise ValueError(
            f"hessian must be None, 'none', 'full', 'diagonal', 'laplacian' or a list of row indices, got {hessian!r}"
        )
    if isinstance(hessian, int) and not isinstance(hessian, bool):
        raise TypeError(
            f"hessian must be a list of row indices, got the int {hessian} (write hessian=[{hessian}] for one row)"
        )
    if isinstance(hessian, (float, bool)) or (isinstance(hessian, torch.Tensor) and hessian.dim() == 0):
        raise TypeError(
            "hessian must be None, 'none', 'full', 'diagonal', 'laplacian' or a list of row indices, "
            f"got {hessian!r}"
        )
    rows = normalize_indices(hessian, d, name="hessian")
    return HessianRequest("rows", rows)


def _operator_request(operator: Laplacian | Bilaplacian, d: int) -> HessianRequest:
    name = type(operator).__name__
    dims = None if operator.dims is None else normalize_indices(operator.dims, d, name=f"{name}(dims=...)")
    if isinstance(operator, Laplacian):
        if operator.is_plain:
            return HessianRequest("laplacian")
        plain_dims = operator.weights is None and operator.samples is None
        return HessianRequest("laplacian", dims=dims, operator=None if plain_dims else operator)
    return HessianRequest("bilaplacian", dims=dims, operator=operator if operator.samples is not None else None)
