"""Memory traffic of a computation, counted at the dispatcher.

Every aten op that is not a view is charged the bytes of its tensor inputs and
outputs: a device-independent count of the memory passes a computation makes
(a fused kernel that reads x once and writes three outputs is charged 4 passes).
The ratio of two such counts bounds the speed-up a memory-bound kernel can
reach over the other computation.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class ByteCounter(TorchDispatchMode):
    """Sums bytes read and written by non-view aten ops run under it."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes_moved = 0
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if not getattr(func, "is_view", False):
            inputs, _ = tree_flatten((args, kwargs or {}))
            outputs, _ = tree_flatten(out)
            for tensor in inputs + outputs:
                if isinstance(tensor, torch.Tensor):
                    self.bytes_moved += tensor.numel() * tensor.element_size()
            self.ops += 1
        return out


def bytes_moved(fn: Callable[[], Any]) -> int:
    """Bytes the aten ops of fn() read and write (views free)."""
    with ByteCounter() as counter:
        fn()
    return counter.bytes_moved
