"""Fake kernels and autograd formulas for the compiled ops ``torch.ops.hoderiv_ext.*``.

The schemas live in csrc/ops.cpp. Each backward is built from ops that
themselves have autograd formulas, so results are differentiable to any order
the kernels serve (the backward of an order-k result uses order k+1); past
``max_kernel_order`` the C++ check refuses with a message pointing to
``backend="autograd"``. Nothing here is registered when the extension is absent.

Math (phi an elementwise function, x a tensor, d_k = phi^(k)(x)):
  elementwise_derivatives(x, order)         -> stack(d_0 .. d_order)
  elementwise_derivatives_backward(g, x, s) -> sum_k g[k] * d_{k+s}
  d/dx  backward(g, x, s) = backward(g, x, s+1)        (elementwise)
  d/dg[k] backward(g, x, s) = d_{k+s}
Polynomials p(x) = sum_j c_j x^j add the coefficient gradient
  d d_k / d c_j = j!/(j-k)! x^(j-k)   (j >= k).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from hoderiv_ext._extension import extension_loaded

_NAMESPACE = "hoderiv_ext"


def _falling_factorial(j: int, k: int) -> float:
    result = 1.0
    for i in range(k):
        result *= j - i
    return result


def polynomial_coefficient_grad(weights: Tensor, x: Tensor, shift: int, num_coefficients: int) -> Tensor:
    """Gradient of sum_k <weights[k], p^(k+shift)(x)> with respect to the coefficients.

    weights: (m+1, *x.shape). Returns (num_coefficients,):
      out[j] = sum_k sum_n weights[k, n] * j!/(j-k-shift)! * x_n^(j-k-shift),  j >= k+shift.
    Built from differentiable torch ops (powers by repeated multiplication, so
    no 0 * inf at x = 0 in higher derivatives).
    """
    flat_x = x.reshape(-1)
    flat_w = weights.reshape(weights.shape[0], -1)
    powers = [torch.ones_like(flat_x)]
    for _ in range(1, num_coefficients):
        powers.append(powers[-1] * flat_x)
    moments = flat_w @ torch.stack(powers, dim=1)  # (m+1, num_coefficients): sum_n w_k[n] x_n^e
    out = x.new_zeros(num_coefficients)
    for k in range(flat_w.shape[0]):
        lowest = k + shift
        if lowest >= num_coefficients:
            break
        scale = torch.tensor(
            [_falling_factorial(j, lowest) for j in range(lowest, num_coefficients)], dtype=x.dtype, device=x.device
        )
        out = out + torch.nn.functional.pad(scale * moments[k, : num_coefficients - lowest], (lowest, 0))
    return out


def _register() -> None:
    ops = torch.ops.hoderiv_ext

    # ----- fake kernels (shapes only) for torch.compile / FakeTensor -----
    @torch.library.register_fake(f"{_NAMESPACE}::elementwise_derivatives")
    def _(x: Tensor, function: str, params: Sequence[float], order: int) -> Tensor:
        torch._check(order >= 0, lambda: f"order must be non-negative, got {order}")
        return x.new_empty((order + 1, *x.shape))

    @torch.library.register_fake(f"{_NAMESPACE}::elementwise_derivatives_backward")
    def _(grad: Tensor, x: Tensor, function: str, params: Sequence[float], shift: int) -> Tensor:
        torch._check(grad.dim() == x.dim() + 1, lambda: "grad must have shape (m+1, *x.shape)")
        return torch.empty_like(x)

    @torch.library.register_fake(f"{_NAMESPACE}::polynomial_derivatives")
    def _(x: Tensor, coefficients: Tensor, order: int) -> Tensor:
        torch._check(order >= 0, lambda: f"order must be non-negative, got {order}")
        return x.new_empty((order + 1, *x.shape))

    @torch.library.register_fake(f"{_NAMESPACE}::polynomial_derivatives_backward")
    def _(grad: Tensor, x: Tensor, coefficients: Tensor, shift: int) -> Tensor:
        torch._check(grad.dim() == x.dim() + 1, lambda: "grad must have shape (m+1, *x.shape)")
        return torch.empty_like(x)

    # ----- autograd: elementwise_derivatives -----
    def setup_forward(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, function, params, _order = inputs
        ctx.save_for_backward(x)
        ctx.function, ctx.params = function, list(params)

    def backward_forward(ctx: Any, grad: Tensor) -> tuple:
        (x,) = ctx.saved_tensors
        grad_x = ops.elementwise_derivatives_backward(grad, x, ctx.function, ctx.params, 1)
        return grad_x, None, None, None

    torch.library.register_autograd(
        f"{_NAMESPACE}::elementwise_derivatives", backward_forward, setup_context=setup_forward
    )

    # ----- autograd: elementwise_derivatives_backward -----
    def setup_backward(ctx: Any, inputs: tuple, output: Tensor) -> None:
        grad, x, function, params, shift = inputs
        ctx.save_for_backward(grad, x)
        ctx.function, ctx.params, ctx.shift = function, list(params), shift

    def backward_backward(ctx: Any, grad_out: Tensor) -> tuple:
        grad, x = ctx.saved_tensors
        shift, highest = ctx.shift, grad.shape[0] - 1 + ctx.shift
        grad_grad = grad_x = None
        if ctx.needs_input_grad[0]:
            derivatives = ops.elementwise_derivatives(x, ctx.function, ctx.params, highest)
            grad_grad = grad_out.unsqueeze(0) * derivatives[shift:]
        if ctx.needs_input_grad[1]:
            grad_x = grad_out * ops.elementwise_derivatives_backward(grad, x, ctx.function, ctx.params, shift + 1)
        return grad_grad, grad_x, None, None, None

    torch.library.register_autograd(
        f"{_NAMESPACE}::elementwise_derivatives_backward", backward_backward, setup_context=setup_backward
    )

    # ----- autograd: polynomial_derivatives -----
    def setup_poly(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, coefficients, _order = inputs
        ctx.save_for_backward(x, coefficients)

    def backward_poly(ctx: Any, grad: Tensor) -> tuple:
        x, coefficients = ctx.saved_tensors
        grad_x = grad_c = None
        if ctx.needs_input_grad[0]:
            grad_x = ops.polynomial_derivatives_backward(grad, x, coefficients, 1)
        if ctx.needs_input_grad[1]:
            grad_c = polynomial_coefficient_grad(grad, x, 0, coefficients.shape[0])
        return grad_x, grad_c, None

    torch.library.register_autograd(f"{_NAMESPACE}::polynomial_derivatives", backward_poly, setup_context=setup_poly)

    # ----- autograd: polynomial_derivatives_backward -----
    def setup_poly_backward(ctx: Any, inputs: tuple, output: Tensor) -> None:
        grad, x, coefficients, shift = inputs
        ctx.save_for_backward(grad, x, coefficients)
        ctx.shift = shift

    def backward_poly_backward(ctx: Any, grad_out: Tensor) -> tuple:
        grad, x, coefficients = ctx.saved_tensors
        shift, highest = ctx.shift, grad.shape[0] - 1 + ctx.shift
        grad_grad = grad_x = grad_c = None
        if ctx.needs_input_grad[0]:
            grad_grad = grad_out.unsqueeze(0) * ops.polynomial_derivatives(x, coefficients, highest)[shift:]
        if ctx.needs_input_grad[1]:
            grad_x = grad_out * ops.polynomial_derivatives_backward(grad, x, coefficients, shift + 1)
        if ctx.needs_input_grad[2]:
            grad_c = polynomial_coefficient_grad(grad_out.unsqueeze(0) * grad, x, shift, coefficients.shape[0])
        return grad_grad, grad_x, grad_c, None

    torch.library.register_autograd(
        f"{_NAMESPACE}::polynomial_derivatives_backward", backward_poly_backward, setup_context=setup_poly_backward
    )


if extension_loaded():
    _register()
