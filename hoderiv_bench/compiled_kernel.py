"""The package's compiled path as a bench method: ``derivatives(backend="kernel")`` inside ``torch.compile``.

``kernel-compile`` compiles the call (input-derivative workloads) or the loss built on it (training
workloads; the parameter gradient is taken outside the compiled function, as a training loop does)
with ``fullgraph=True``, so a graph break fails the method instead of timing a partly eager call;
functions that are no plain network run their traced program inside the compiled function.
It runs only with the compile baseline on (``--compile`` or ``--full``) and is compared, in the same
run, with compiled torch.func (the ``compile`` baseline).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from hoderiv_bench.compile_once import CompiledOnFirstCall

KERNEL_COMPILE = "kernel-compile"


def compiled_kernel(fn: Callable[..., Any], device: torch.device) -> CompiledOnFirstCall:
    """``torch.compile(fn, fullgraph=True)``, built on the first call after one eager call of ``fn`` (a
    function that is no plain network is traced by an eager call; inside torch.compile it is only looked up)."""
    return CompiledOnFirstCall(fn, device, _eager_once_then_compile)


def _eager_once_then_compile(fn: Callable[..., Any], args: tuple[Any, ...]) -> Callable[..., Any]:
    fn(*args)
    return torch.compile(fn, fullgraph=True)
