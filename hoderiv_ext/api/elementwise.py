"""Batched elementwise derivatives (y, y', y'', ...) in one fused pass."""

from __future__ import annotations

from torch import Tensor

from hoderiv_ext.core.functions import KernelFunction, Polynomial, describe, resolve_elementwise
from hoderiv_ext.core.validation import check_order
from hoderiv_ext.engines import select
from hoderiv_ext.engines.autograd.elementwise import autograd_elementwise_derivatives
from hoderiv_ext.ops import elementwise as elementwise_ops
from hoderiv_ext.ops.library import MAX_KERNEL_ORDER



def _check_x(x: object) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor (float32 or float64), got dtype {x.dtype}")
    return x


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
        backend: "auto" (the compiled kernels where they are faster: on CUDA,
            and on CPU for every function except a few on large tensors, see
            :data:`hoderiv_ext.engines.select.CPU_ELEMENTWISE_KERNEL_BELOW`),
            "kernel" (compiled kernels, CPU or CUDA) or "autograd".

    Returns:
        A tuple of ``order + 1`` tensors shaped like x: (phi(x), phi'(x), ...).
        On the kernel path they are views of one (order+1, *x.shape) tensor
        written in a single pass that reads x once.
    """
    x = _check_x(x)
    order = check_order(order)
    spec = resolve_elementwise(fn)
    if isinstance(spec, Polynomial):
        coefficients = spec.coefficients_for(x)  # checks the device
    unsupported = None
    if not isinstance(spec, (KernelFunction, Polynomial)):
        unsupported = f"fn {describe(spec)} is not a function the kernels know (see hoderiv_ext.core.functions)"
    elif order > MAX_KERNEL_ORDER:
        unsupported = f"order {order} exceeds the kernels' highest order {MAX_KERNEL_ORDER}"
    name = spec.name if isinstance(spec, KernelFunction) else "polynomial" if isinstance(spec, Polynomial) else None
    if select.choose_elementwise(backend, x, name, unsupported) == "autograd":
        known = isinstance(spec, (KernelFunction, Polynomial))
        return autograd_elementwise_derivatives(spec, x, order, verify_elementwise=not known)
    if isinstance(spec, Polynomial):
        stacked = elementwise_ops.polynomial_derivatives(x, coefficients, order)
    else:
        stacked = elementwise_ops.elementwise_derivatives(x, spec.name, spec.params, order)
    return tuple(stacked.unbind(0))
