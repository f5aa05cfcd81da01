"""The package's compiled path as a bench method: ``derivatives(backend="kernel")`` inside ``torch.compile``.

``kernel-compile`` compiles the call (input-derivative workloads) or the loss built on it (training
workloads; the parameter gradient is taken outside the compiled function, as a training loop does)
with ``fullgraph=True``, so a graph break fails the method instead of timing a partly eager call.
It runs only with the compile baseline on (``--compile`` or ``--full``) and is compared, in the same
run, with compiled torch.func (the ``compile`` baseline).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

KERNEL_COMPILE = "kernel-compile"


class CompiledKernel:
    """``torch.compile(fn, fullgraph=True)`` built on the first call (after ``torch._dynamo.reset()``, so
    earlier workloads' graphs do not count against the recompile limit); ``compile_seconds`` is that
    first call's time."""

    def __init__(self, fn: Callable[..., Any], device: torch.device) -> None:
        self.fn = fn
        self.device = device
        self.compiled: Callable[..., Any] | None = None
        self.compile_seconds: float | None = None

    def __call__(self, *args: Any) -> Any:
        if self.compiled is not None:
            return self.compiled(*args)
        torch._dynamo.reset()
        start = time.perf_counter()
        self.compiled = torch.compile(self.fn, fullgraph=True)
        out = self.compiled(*args)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.compile_seconds = time.perf_counter() - start
        return out
