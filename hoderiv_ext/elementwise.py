"""Batched elementwise derivatives (y, y', y'', ...) in one fused pass."""

from __future__ import annotations

import torch
from torch import Tensor

from hoderiv_ext._backend import select_engine
from hoderiv_ext._extension import MAX_KERNEL_ORDER
from hoderiv_ext.functions import KernelFunction, Polynomial, describe, resolve_elementwise


def _check_order(order: object) -> int:
    if isinstance(order, bool) or not isinstance(order, int):
        raise TypeError(f"order must be an int, got {type(order).__name__}")
    if order < 0:
        raise ValueError(f"order must be non-negative, got {order}")
    return order


def _check_x(x: object) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor (float32 or float64), got dtype {x.dtype}")
    return x


def autograd_elementwise_derivatives(fn, x: Tensor, order: int) -> tuple[Tensor, ...]:
    """Reference: y = fn(x), then y^(k+1) = d/dx sum(y^(k)) by nested autograd.

    Valid because fn is elementwise: d/dx_i sum_j y_j = dy_i/dx_i. Results keep
    their graph (differentiable to any order) when grad mode is on.
    """
    build_graph = torch.is_grad_enabled()
    leaf = x if x.requires_grad else x.detach().requires_grad_(True)
    with torch.enable_grad():
        current = fn(leaf)
        if not isinstance(current, Tensor) or current.shape != x.shape:
            raise ValueError(
                f"fn must be elementwise: expected a tensor of shape {tuple(x.shape)}, "
                f"got {getattr(current, 'shape', type(current).__name__)}"
            )
        results = [current]
        for _ in range(order):
            if current.requires_grad:
                (current,) = torch.autograd.grad(
                    current, leaf, torch.ones_like(current), create_graph=True, allow_unused=True,
                    materialize_grads=True,
                )
            else:  # a constant: every higher derivative is 0
                current = torch.zeros_like(x)
            results.append(current)
    if not build_graph:
        results = [r.detach() for r in results]
    return tuple(results)


def elementwise_derivatives(fn, x: Tensor, order: int = 2, *, backend: str = "auto") -> tuple[Tensor, ...]:
    """Derivatives y, y', ..., y^(order) of an elementwise function at every entry of x.

    Args:
        fn: a function name ("tanh", "softplus", ...), an activation module
            (``nn.Softplus(beta=2)``), a torch function (``torch.sin``), a
            :class:`~hoderiv_ext.Polynomial`, or any elementwise callable
            (served by autograd).
        x: a float32 or float64 tensor of any shape (empty and 0-d included).
        order: highest derivative, >= 0. The kernels serve up to
            ``build_info()["max_kernel_order"]`` (8); results are differentiable
            with respect to x through order max-1, and with respect to
            polynomial coefficients.
        backend: "auto" (compiled CUDA kernels for CUDA tensors, autograd on
            CPU), "kernel" (compiled kernels, CPU or CUDA) or "autograd".

    Returns:
        A tuple of ``order + 1`` tensors shaped like x: (phi(x), phi'(x), ...).
        On the kernel path they are views of one (order+1, *x.shape) tensor
        written in a single pass that reads x once.
    """
    x = _check_x(x)
    order = _check_order(order)
    spec = resolve_elementwise(fn)
    if isinstance(spec, Polynomial):
        coefficients = spec.coefficients_for(x)  # checks the device
    unsupported = None
    if not isinstance(spec, (KernelFunction, Polynomial)):
        unsupported = f"fn {describe(spec)} is not a function the kernels know (see hoderiv_ext.functions)"
    elif order > MAX_KERNEL_ORDER:
        unsupported = f"order {order} exceeds the kernels' highest order {MAX_KERNEL_ORDER}"
    engine = select_engine(backend, x.device, x.dtype, unsupported)
    if engine == "autograd":
        return autograd_elementwise_derivatives(spec, x, order)
    if isinstance(spec, Polynomial):
        stacked = torch.ops.hoderiv_ext.polynomial_derivatives(x, coefficients, order)
    else:
        stacked = torch.ops.hoderiv_ext.elementwise_derivatives(x, spec.name, list(spec.params), order)
    return tuple(stacked.unbind(0))
