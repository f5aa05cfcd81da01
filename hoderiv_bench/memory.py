"""Peak memory of one call, and the FLOPs it runs: one measuring run per method.

What "peak memory" means here, on every device: the most memory allocated at
any moment during one call, above what was allocated before it (so the inputs
and the network's parameters are not counted; the results the call returns are).

* CUDA: the caching allocator's own statistics,
  ``torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated()`` around
  the call, after ``torch.cuda.reset_peak_memory_stats()``.
* CPU (no allocator statistics): :class:`LiveTensorBytes`, a TorchDispatchMode
  that sees every operator call (aten ops, this package's custom ops, and the ops
  the autograd engine runs in backward), charges the bytes of each new storage an
  op returns and credits them back when that storage is freed (a weak reference
  callback), and records the peak of the running total. It counts tensor storage
  only: workspace a kernel allocates and frees internally, and allocator
  rounding, are not seen, so CPU figures are a lower bound comparable between
  methods, not an RSS. Compiled (torch.compile) callables may refuse to run under
  a dispatch mode; their CPU peak is then reported as unknown (None).

FLOPs are counted in the same dispatch mode with torch's FLOP formulas
(``torch.utils.flop_counter.flop_registry``): the matrix products (mm, addmm,
bmm, convolutions, ...) a method actually runs, not elementwise work and not
this package's fused activation kernels. (``FlopCounterMode`` itself cannot be
used: its module tracker fails inside ``torch.autograd.grad``.)
"""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

CPU_MEMORY_METHOD = "live tensor storage bytes (TorchDispatchMode), peak above the call's start"
CUDA_MEMORY_METHOD = "torch.cuda.max_memory_allocated above the call's start"


class LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of storages created by ops run under it (``peak``: the high-water mark)
    and, if asked, the FLOPs of the ops torch has a FLOP formula for (``flops``)."""

    def __init__(self, track_memory: bool = True, count_flops: bool = False) -> None:
        super().__init__()
        self.track_memory = track_memory
        self.count_flops = count_flops
        self.current = 0
        self.peak = 0
        self.flops = 0
        self._refs: dict[int, weakref.ref] = {}

    def _freed(self, key: int, nbytes: int) -> None:
        self._refs.pop(key, None)
        self.current -= nbytes

    def _track(self, tensor: torch.Tensor) -> None:
        if tensor.device.type == "meta":
            return
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):  # tensors without storage (sparse, nested, wrappers)
            return
        key = id(storage)
        if key in self._refs and self._refs[key]() is storage:
            return  # a view of, or an in-place result in, a storage already tracked
        nbytes = storage.nbytes()
        self._refs[key] = weakref.ref(storage, lambda _ref, key=key, nbytes=nbytes: self._freed(key, nbytes))
        self.current += nbytes
        self.peak = max(self.peak, self.current)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if self.count_flops:
            formula = flop_registry.get(getattr(func, "_overloadpacket", None))
            if formula is not None:
                self.flops += int(formula(*args, **(kwargs or {}), out_val=out))
        if not self.track_memory:
            return out
        inputs = {id(t.untyped_storage()) for t in tree_flatten((args, kwargs or {}))[0]
                  if isinstance(t, torch.Tensor) and _has_storage(t)}
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and _has_storage(tensor) and id(tensor.untyped_storage()) not in inputs:
                self._track(tensor)
        return out


def _has_storage(tensor: torch.Tensor) -> bool:
    try:
        tensor.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return False
    return True


@dataclass
class Measurement:
    peak_bytes: int | None
    flops: int | None
    memory_method: str
    note: str | None = None


def measure(fn: Callable[[], Any], device: torch.device, count_flops: bool = False) -> Measurement:
    """Run ``fn`` once and return its peak memory (bytes) and, if asked, the FLOPs it counted."""
    gc.collect()
    if device.type == "cuda":
        meter = LiveTensorBytes(track_memory=False, count_flops=True) if count_flops else None
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        try:
            if meter is not None:
                with meter:
                    out = fn()
            else:
                out = fn()
        except (RuntimeError, NotImplementedError) as error:  # a compiled callable may refuse dispatch modes
            if meter is None or isinstance(error, torch.OutOfMemoryError):
                raise
            torch.cuda.reset_peak_memory_stats(device)
            out, meter = fn(), None
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - start
        del out
        return Measurement(int(peak), meter.flops if meter is not None else None, CUDA_MEMORY_METHOD)
    meter = LiveTensorBytes(track_memory=True, count_flops=count_flops)
    try:
        with meter:
            out = fn()
        del out
    except torch.OutOfMemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - e.g. a compiled callable that refuses dispatch modes
        return Measurement(None, None, CPU_MEMORY_METHOD, note=f"not measured: {type(error).__name__}: {error}"[:300])
    return Measurement(int(meter.peak), meter.flops if count_flops else None, CPU_MEMORY_METHOD)
