"""Benchmark: fused elementwise (y, y', y'') against the autograd approach.

The baseline is the best form of the seeds' approach: y = fn(x), then
y' = grad(sum(y), x, create_graph=True) and y'' = grad(sum(y'), x,
create_graph=True) (the seed's per-column loop is slower still). Both keep
their results differentiable, as a training loss needs.

Reported per size: time of each method (torch.utils.benchmark, which
synchronises CUDA), the ratio, the fused kernel's achieved bandwidth (one
read of x and one write per output), and the traffic bound: bytes the
autograd approach moves divided by bytes the fused kernel moves (counted at the
dispatcher), the most a memory-bound kernel can gain where launches do not
dominate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.utils.benchmark as benchmark
from torch import Tensor
from torch.func import grad, vmap

from hoderiv_bench.traffic import bytes_moved
from hoderiv_ext import elementwise_derivatives
from hoderiv_ext.core.functions import resolve_elementwise


@dataclass
class ElementwiseResult:
    function: str
    numel: int
    dtype: str
    device: str
    kernel_seconds: float
    autograd_seconds: float
    speedup: float
    kernel_bandwidth_gbs: float
    traffic_bound: float
    max_abs_difference: float


def _timed(stmt: Callable[[], object], min_run_time: float) -> float:
    timer = benchmark.Timer(stmt="stmt()", globals={"stmt": stmt})
    return timer.blocked_autorange(min_run_time=min_run_time).median


def run_elementwise(
    function: str = "tanh",
    numel: int = 1 << 20,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    order: int = 2,
    min_run_time: float = 0.5,
) -> ElementwiseResult:
    x = torch.randn(numel, dtype=dtype, device=device).requires_grad_(True)
    spec = resolve_elementwise(function)

    def kernel() -> tuple:
        return elementwise_derivatives(spec, x, order, backend="kernel")

    def autograd() -> tuple:
        return elementwise_derivatives(spec, x, order, backend="autograd")

    got, expected = kernel(), autograd()
    max_difference = max((a - b).abs().max().item() for a, b in zip(got, expected)) if numel else 0.0
    scale = max(1.0, max(e.abs().max().item() for e in expected)) if numel else 1.0
    if max_difference > (1e-4 if dtype == torch.float32 else 1e-10) * scale:
        raise AssertionError(f"kernel and autograd disagree for {function}: {max_difference}")
    kernel_seconds = _timed(kernel, min_run_time)
    autograd_seconds = _timed(autograd, min_run_time)
    fused_bytes = (1 + order + 1) * numel * x.element_size()
    autograd_bytes = bytes_moved(autograd)
    return ElementwiseResult(
        function=function,
        numel=numel,
        dtype=str(dtype).replace("torch.", ""),
        device=str(x.device),
        kernel_seconds=kernel_seconds,
        autograd_seconds=autograd_seconds,
        speedup=autograd_seconds / kernel_seconds,
        kernel_bandwidth_gbs=fused_bytes / kernel_seconds / 1e9,
        traffic_bound=autograd_bytes / fused_bytes,
        max_abs_difference=max_difference,
    )


def as_row(result: ElementwiseResult) -> dict:
    return asdict(result)


def nested_elementwise(spec: Callable[[Tensor], Tensor], x: Tensor, order: int = 2) -> tuple[Tensor, ...]:
    """The seeds' way, written out: y = fn(x), then grad of the sum, create_graph=True, per order."""
    leaf = x if x.requires_grad else x.detach().requires_grad_(True)
    results = [spec(leaf)]
    for _ in range(order):
        (nxt,) = torch.autograd.grad(results[-1].sum(), leaf, create_graph=True)
        results.append(nxt)
    return tuple(results)


def func_elementwise(spec: Callable[[Tensor], Tensor], x: Tensor, order: int = 2) -> tuple[Tensor, ...]:
    """torch.func: vmap over the entries of grad(grad(...)) of the scalar function."""
    flat = x.reshape(-1)
    results = [spec(x)]
    scalar = spec
    for _ in range(order):
        scalar = grad(scalar)
        results.append(vmap(scalar)(flat).reshape(x.shape))
    return tuple(results)


def elementwise_methods(spec: object, x: Tensor, order: int = 2) -> dict[str, Callable[[], tuple]]:
    """Zero-argument callables (kernel, autograd, nested, func) computing (y, y', ..., y^(order)) at x."""
    spec = resolve_elementwise(spec)
    return {
        "kernel": lambda: elementwise_derivatives(spec, x, order, backend="kernel"),
        "autograd": lambda: elementwise_derivatives(spec, x, order, backend="autograd"),
        "nested": lambda: nested_elementwise(spec, x, order),
        "func": lambda: func_elementwise(spec, x, order),
    }
