"""The package's compiled path as a bench method: ``derivatives(backend="kernel")`` inside ``torch.compile``.

``kernel-compile`` compiles the call (input-derivative workloads) or the loss built on it (training
workloads; the parameter gradient is taken outside the compiled function, as a training loop does)
with ``fullgraph=True``, so a graph break fails the method instead of timing a partly eager call.
It runs only with the compile baseline on (``--compile`` or ``--full``) and is compared, in the same
run, with compiled torch.func (the ``compile`` baseline).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from hoderiv_bench.compile_once import CompiledOnFirstCall

KERNEL_COMPILE = "kernel-compile"


def compiled_kernel(fn: Callable[..., Any], device: torch.device) -> CompiledOnFirstCall:
    """``torch.compile(fn, fullgraph=True)``, built on the first call."""
    return CompiledOnFirstCall(fn, device, lambda f, args: torch.compile(f, fullgraph=True))
