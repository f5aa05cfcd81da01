"""Compile a bench method on its first call and report what the compilation cost."""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

Build = Callable[[Callable[..., Any], tuple[Any, ...]], Callable[..., Any]]


class CompiledOnFirstCall:
    """``build(fn, args)`` run at the first call's arguments, then called; every later call goes straight
    to what it built. ``compile_seconds`` is the first call's time, the build included (the runner
    reports it).

    No ``torch._dynamo.reset()`` here: it would throw away the graphs the workload's other compiled
    methods built before (the runner resets once per workload instead), and the next call of each
    would recompile inside its timing.
    """

    def __init__(self, fn: Callable[..., Any], device: torch.device, build: Build) -> None:
        self.fn = fn
        self.device = device
        self.build = build
        self.compiled: Callable[..., Any] | None = None
        self.compile_seconds: float | None = None

    def __call__(self, *args: Any) -> Any:
        if self.compiled is not None:
            return self.compiled(*args)
        start = time.perf_counter()
        self.compiled = self.build(self.fn, args)
        out = self.compiled(*args)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.compile_seconds = time.perf_counter() - start
        return out
