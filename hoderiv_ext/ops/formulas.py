"""Autograd formulas registered from Python: each backward is built from differentiable ops, or refuses loudly.

Where each op's autograd formula lives:

  elementwise_derivatives, jet_activation,   C++ (csrc/ops/autograd.cpp, dispatch key Autograd);
  jet_activation_first,                      each backward calls the matching backward op with
  jet_bilaplacian_extra, jet_univariate
                                             autograd, so its result is differentiable through
                                             the formulas here
  the backward ops, polynomial_derivatives,  here, registered with torch.library.register_autograd
  polynomial_derivatives_backward and        (ops/register.py)
  weighted_gram

Math (phi an elementwise function, d_k = phi^(k)(x)):
  elementwise_derivatives(x, order)          -> stack(d_0 .. d_order)
  elementwise_derivatives_backward(g, x, s)  -> sum_k g[k] * d_{k+s}
  vjp of elementwise_derivatives with g      = backward(g, x, 1)    (C++)
  d/dx  backward(g, x, s) = backward(g, x, s+1)        (elementwise)
  d/dg[k] backward(g, x, s) = d_{k+s}
so results are differentiable to the kernels' highest order; past it the
C++ check refuses with a message pointing to ``backend="autograd"``.
Polynomials p(x) = sum_j c_j x^j add the coefficient gradient
  d d_k / d c_j = j!/(j-k)! x^(j-k)   (j >= k).

The jet ops: ``jet_activation``'s backward (C++) is the fused
``jet_activation_backward`` kernel (bias gradient: the sum over samples of
slot 0's gradient), ``jet_activation_first``'s (C++) the fused
``jet_activation_first_backward``, ``jet_bilaplacian_extra``'s (C++) the fused
``jet_bilaplacian_extra_backward`` (bias gradient as for jet_activation), ``jet_univariate``'s (C++) the fused
``jet_univariate_backward`` (orders <= 7; bias gradient likewise); the backward of each backward kernel (the
double backward, here) is the vector-Jacobian product of the torch-ops twin
(:mod:`hoderiv_ext.ops.jet_composite`), recomputed by :func:`recomputed_vjp`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from hoderiv_ext.ops import elementwise as elementwise_ops
from hoderiv_ext.ops import jet_composite
from hoderiv_ext.ops.layout import JetLayout, layout_cache


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


# ----------------------------------------------------------------------------- elementwise


def setup_elementwise_backward(ctx: Any, inputs: tuple, output: Tensor) -> None:
    grad, x, function, params, shift = inputs
    ctx.save_for_backward(grad, x)
    ctx.function, ctx.params, ctx.shift = function, list(params), shift


def backward_elementwise_backward(ctx: Any, grad_out: Tensor) -> tuple:
    grad, x = ctx.saved_tensors
    shift, highest = ctx.shift, grad.shape[0] - 1 + ctx.shift
    grad_grad = grad_x = None
    if ctx.needs_input_grad[0]:
        derivatives = elementwise_ops.elementwise_derivatives(x, ctx.function, ctx.params, highest)
        grad_grad = grad_out.unsqueeze(0) * derivatives[shift:]
    if ctx.needs_input_grad[1]:
        grad_x = grad_out * elementwise_ops.elementwise_derivatives_backward(grad, x, ctx.function, ctx.params, shift + 1)
    return grad_grad, grad_x, None, None, None


def setup_polynomial(ctx: Any, inputs: tuple, output: Tensor) -> None:
    x, coefficients, _order = inputs
    ctx.save_for_backward(x, coefficients)


def backward_polynomial(ctx: Any, grad: Tensor) -> tuple:
    x, coefficients = ctx.saved_tensors
    grad_x = grad_c = None
    if ctx.needs_input_grad[0]:
        grad_x = elementwise_ops.polynomial_derivatives_backward(grad, x, coefficients, 1)
    if ctx.needs_input_grad[1]:
        grad_c = polynomial_coefficient_grad(grad, x, 0, coefficients.shape[0])
    return grad_x, grad_c, None


def setup_polynomial_backward(ctx: Any, inputs: tuple, output: Tensor) -> None:
    grad, x, coefficients, shift = inputs
    ctx.save_for_backward(grad, x, coefficients)
    ctx.shift = shift


def backward_polynomial_backward(ctx: Any, grad_out: Tensor) -> tuple:
    grad, x, coefficients = ctx.saved_tensors
    shift, highest = ctx.shift, grad.shape[0] - 1 + ctx.shift
    grad_grad = grad_x = grad_c = None
    if ctx.needs_input_grad[0]:
        grad_grad = grad_out.unsqueeze(0) * elementwise_ops.polynomial_derivatives(x, coefficients, highest)[shift:]
    if ctx.needs_input_grad[1]:
        grad_x = grad_out * elementwise_ops.polynomial_derivatives_backward(grad, x, coefficients, shift + 1)
    if ctx.needs_input_grad[2]:
        grad_c = polynomial_coefficient_grad(grad_out.unsqueeze(0) * grad, x, shift, coefficients.shape[0])
    return grad_grad, grad_x, grad_c, None


# ----------------------------------------------------------------------------- jet steps


def recomputed_vjp(reference: Callable[..., tuple], inputs: tuple, cotangents: tuple) -> list:
    """Partial derivatives of sum_k <cotangents[k], reference(*inputs)[k]> with respect to each input.

    The double backward of every jet op: ``reference`` is the op's torch-ops
    twin, recomputed here. Each input that requires grad enters as a fresh
    alias (``view_as``): still attached to the caller's graph, so the result
    is differentiable again when the caller differentiates once more, but no
    other input descends from it. One input may be computed from another in
    the caller's graph (the incoming gradient depends on the jet when later
    layers are nonlinear; the preactivation on the weight): taken on the
    tensors themselves, autograd.grad would give total derivatives, run (and
    free) the caller's nodes and count those paths twice. Constants enter as
    fresh leaves; None inputs stay None and get None. Cotangents that are
    None contribute nothing.
    """
    create_graph = torch.is_grad_enabled()  # True when the caller differentiates once more

    def alias(tensor: Tensor | None) -> Tensor | None:
        if tensor is None:
            return None
        return tensor.view_as(tensor) if tensor.requires_grad else tensor.detach().requires_grad_(True)

    with torch.enable_grad():
        aliases = [alias(t) for t in inputs]
        present = [a for a in aliases if a is not None]
        pairs = [(out, cot) for out, cot in zip(reference(*aliases), cotangents) if cot is not None]
        if pairs:
            grads = iter(torch.autograd.grad(
                [out for out, _ in pairs], present, [cot for _, cot in pairs],
                allow_unused=True, materialize_grads=True, create_graph=create_graph,
            ))
        else:
            grads = iter(torch.zeros_like(a) for a in present)
    return [None if a is None else next(grads) for a in aliases]


def _layout(num_tangents: int, pair_i: list[int], pair_j: list[int], collapsed: list[int]) -> JetLayout:
    if isinstance(num_tangents, int):  # a layout holds only integers: cached across calls
        return _cached_layout(num_tangents, tuple(pair_i), tuple(pair_j), tuple(collapsed))
    return JetLayout(num_tangents, tuple(zip(pair_i, pair_j)), tuple(collapsed))  # a SymInt while tracing


@layout_cache(256)
def _cached_layout(num_tangents: int, pair_i: tuple[int, ...], pair_j: tuple[int, ...],
                   collapsed: tuple[int, ...]) -> JetLayout:
    return JetLayout(num_tangents, tuple(zip(pair_i, pair_j)), collapsed)


def setup_step_backward(ctx: Any, inputs: tuple, output: Tensor) -> None:
    grad, jet, bias, function, params, num_tangents, pair_i, pair_j, collapsed = inputs
    ctx.save_for_backward(grad, jet, bias)
    ctx.config = (function, list(params), _layout(num_tangents, pair_i, pair_j, collapsed))


def backward_step_backward(ctx: Any, grad_grad_jet: Tensor) -> tuple:
    grad, jet, bias = ctx.saved_tensors
    function, params, layout = ctx.config

    def step_backward(grad_: Tensor, jet_: Tensor, bias_: Tensor | None) -> tuple:
        out = jet_composite.activation_step(jet_, bias_, function, params, layout)
        return torch.autograd.grad(out, jet_, grad_, create_graph=True)

    grad_of_grad, grad_of_jet, grad_of_bias = recomputed_vjp(step_backward, (grad, jet, bias), (grad_grad_jet,))
    return grad_of_grad, grad_of_jet, grad_of_bias, None, None, None, None, None, None


def setup_first_backward(ctx: Any, inputs: tuple, output: tuple) -> None:
    grad, preactivation, weight, function, params, pair_i, pair_j, collapsed = inputs
    ctx.save_for_backward(grad, preactivation, weight)
    ctx.config = (function, list(params), _layout(weight.shape[1], pair_i, pair_j, collapsed))


def backward_first_backward(ctx: Any, grad_grad_a: Tensor | None, grad_grad_weight: Tensor | None) -> tuple:
    grad, preactivation, weight = ctx.saved_tensors
    function, params, layout = ctx.config

    def first_backward(grad_: Tensor, preactivation_: Tensor, weight_: Tensor) -> tuple:
        return jet_composite.first_activation_step_backward(grad_, preactivation_, weight_, function, params, layout)

    grads = recomputed_vjp(first_backward, (grad, preactivation, weight), (grad_grad_a, grad_grad_weight))
    return *grads, None, None, None, None, None


def setup_bilaplacian_extra_backward(ctx: Any, inputs: tuple, output: tuple) -> None:
    grad, jet, bias, extra, function, params, num_tangents, dims = inputs
    ctx.save_for_backward(grad, jet, bias, extra)
    ctx.config = (function, list(params), num_tangents, list(dims))


def backward_bilaplacian_extra_backward(ctx: Any, grad_grad_jet: Tensor | None,
                                        grad_grad_extra: Tensor | None) -> tuple:
    grad, jet, bias, extra = ctx.saved_tensors
    function, params, num_tangents, dims = ctx.config

    def extra_backward(grad_: Tensor, jet_: Tensor, bias_: Tensor | None, extra_: Tensor) -> tuple:
        out = jet_composite.bilaplacian_extra_activation(jet_, bias_, extra_, function, params, num_tangents, dims)
        return torch.autograd.grad(out, (jet_, extra_), grad_, create_graph=True)

    grads = recomputed_vjp(extra_backward, (grad, jet, bias, extra), (grad_grad_jet, grad_grad_extra))
    return *grads, None, None, None, None


def setup_univariate_backward(ctx: Any, inputs: tuple, output: Tensor) -> None:
    grad, jet, bias, function, params, num_tangents, order = inputs
    ctx.save_for_backward(grad, jet, bias)
    ctx.config = (function, list(params), num_tangents, order)


def backward_univariate_backward(ctx: Any, grad_grad_jet: Tensor) -> tuple:
    """The backward of ``jet_univariate_backward``: the twin's vjp (order K needs phi^(K+2): K <= 6)."""
    grad, jet, bias = ctx.saved_tensors
    function, params, num_tangents, order = ctx.config

    def univariate_backward(grad_: Tensor, jet_: Tensor, bias_: Tensor | None) -> tuple:
        out = jet_composite.univariate_activation(jet_, bias_, function, params, num_tangents, order)
        return torch.autograd.grad(out, jet_, grad_, create_graph=True)

    grads = recomputed_vjp(univariate_backward, (grad, jet, bias), (grad_grad_jet,))
    return *grads, None, None, None, None


def setup_weighted_gram(ctx: Any, inputs: tuple, output: Tensor) -> None:
    ctx.save_for_backward(*inputs)


def backward_weighted_gram(ctx: Any, grad: Tensor) -> tuple:
    """out = sum_u a_iu w_u b_ju:  d/da_iu = w_u (G b)_iu,  d/db_ju = w_u (G^T a)_ju,  d/dw_u = sum_i a_iu (G b)_iu,
    in torch ops (differentiable again)."""
    left, weight, right = ctx.saved_tensors
    grad_left = grad_weight = grad_right = None
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
        grad_times_right = grad @ right  # (N, k, m)
        if ctx.needs_input_grad[0]:
            grad_left = grad_times_right * weight.unsqueeze(1)
        if ctx.needs_input_grad[1]:
            grad_weight = (left * grad_times_right).sum(1)
    if ctx.needs_input_grad[2]:
        grad_right = (grad.transpose(1, 2) @ left) * weight.unsqueeze(1)
    return grad_left, grad_weight, grad_right


FORMULAS: dict[str, tuple[Callable, Callable]] = {
    "elementwise_derivatives_backward": (backward_elementwise_backward, setup_elementwise_backward),
    "polynomial_derivatives": (backward_polynomial, setup_polynomial),
    "polynomial_derivatives_backward": (backward_polynomial_backward, setup_polynomial_backward),
    "jet_activation_backward": (backward_step_backward, setup_step_backward),
    "jet_activation_first_backward": (backward_first_backward, setup_first_backward),
    "jet_bilaplacian_extra_backward": (backward_bilaplacian_extra_backward, setup_bilaplacian_extra_backward),
    "jet_univariate_backward": (backward_univariate_backward, setup_univariate_backward),
    "weighted_gram": (backward_weighted_gram, setup_weighted_gram),
}
