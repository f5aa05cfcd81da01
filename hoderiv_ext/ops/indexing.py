"""Picking entries along an axis by host-side integers, without a host-to-device copy.

``tensor.index_select(axis, torch.tensor(indices, device=...))`` copies the
index from host memory on every call: on CUDA a synchronous copy from pageable
memory that stalls the host (the latency-bound regime's cost) and that a CUDA
graph cannot capture. The slot layouts' indices are known on the host (Python
tuples), so :func:`take` never builds a device index: a run of consecutive
indices is a slice (a view); otherwise, on CPU, ``index_select`` with a CPU
index (no copy between devices; cheaper than views for many indices: 12 us
against 72 us for 36 of them), and on every other device one ``torch.stack``
of ``select`` views (one kernel, no index tensor).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def is_run(indices: Sequence[int]) -> bool:
    """Whether ``indices`` are consecutive and increasing (then a slice takes them)."""
    return len(indices) > 0 and all(b == a + 1 for a, b in zip(indices, indices[1:]))


def take(tensor: Tensor, axis: int, indices: Sequence[int], views: bool | None = None) -> Tensor:
    """``tensor.index_select(axis, indices)`` for host-side ``indices``, with no host-to-device copy.

    ``views``: stack ``select`` views (True) or ``index_select`` with a CPU
    index (False); None picks by device (the module docstring). A run of
    consecutive indices is always a view (``narrow``).

    Raises:
        ValueError: ``indices`` is empty.
    """
    if len(indices) == 0:
        raise ValueError("take: no indices")
    if is_run(indices):
        return tensor.narrow(axis, indices[0], len(indices))
    if views is None:
        views = tensor.device.type != "cpu"
    if views:
        return torch.stack([tensor.select(axis, index) for index in indices], dim=axis)
    return tensor.index_select(axis, torch.tensor(indices, dtype=torch.int64))
