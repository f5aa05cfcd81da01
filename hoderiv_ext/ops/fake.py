"""Fake kernels (shapes, dtypes and devices only) of every op, for torch.compile and FakeTensor.

The Meta dispatch key runs these too: an op called with a meta tensor among
real ones lands here, so every fake kernel checks that all tensor arguments
share one device before it allocates an output there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def check_same_device(op: str, **tensors: Tensor | None) -> None:
    """Every given tensor on the first one's device, else a message naming them."""
    present = [(name, t) for name, t in tensors.items() if t is not None]
    first_name, first = present[0]
    for name, tensor in present[1:]:
        torch._check(
            tensor.device == first.device,
            lambda: f"hoderiv_ext.{op}: {name} is on {tensor.device} but {first_name} is on {first.device}; "
            "every tensor argument must be on one device",
        )


def elementwise_derivatives(x: Tensor, function: str, params: Sequence[float], order: int) -> Tensor:
    torch._check(order >= 0, lambda: f"order must be non-negative, got {order}")
    return x.new_empty((order + 1, *x.shape))


def elementwise_derivatives_backward(grad: Tensor, x: Tensor, function: str, params: Sequence[float], shift: int) -> Tensor:
    check_same_device("elementwise_derivatives_backward", grad=grad, x=x)
    torch._check(grad.dim() == x.dim() + 1, lambda: "grad must have shape (m+1, *x.shape)")
    return torch.empty_like(x)


def polynomial_derivatives(x: Tensor, coefficients: Tensor, order: int) -> Tensor:
    check_same_device("polynomial_derivatives", x=x, coefficients=coefficients)
    torch._check(order >= 0, lambda: f"order must be non-negative, got {order}")
    return x.new_empty((order + 1, *x.shape))


def polynomial_derivatives_backward(grad: Tensor, x: Tensor, coefficients: Tensor, shift: int) -> Tensor:
    check_same_device("polynomial_derivatives_backward", grad=grad, x=x, coefficients=coefficients)
    torch._check(grad.dim() == x.dim() + 1, lambda: "grad must have shape (m+1, *x.shape)")
    return torch.empty_like(x)


def _num_slots(num_tangents: int, pair_i: Sequence[int], collapsed: Sequence[int]) -> int:
    return 1 + num_tangents + len(pair_i) + (1 if collapsed else 0)


def jet_activation(jet, bias, function, params, num_tangents, pair_i, pair_j, collapsed, residual=None):  # type: ignore[no-untyped-def]
    check_same_device("jet_activation", jet=jet, bias=bias, residual=residual)
    torch._check(jet.dim() == 3, lambda: "jet must be (N, S, m)")
    torch._check(jet.shape[1] == _num_slots(num_tangents, pair_i, collapsed), lambda: "jet has the wrong slot count")
    if residual is not None:
        torch._check(residual.shape == jet.shape, lambda: "residual must have the jet's shape")
        torch._check(residual.dtype == jet.dtype, lambda: "residual must have the jet's dtype")
    return torch.empty_like(jet, memory_format=torch.contiguous_format)


def jet_activation_backward(grad, jet, bias, function, params, num_tangents, pair_i, pair_j, collapsed):  # type: ignore[no-untyped-def]
    check_same_device("jet_activation_backward", grad=grad, jet=jet, bias=bias)
    torch._check(grad.shape == jet.shape, lambda: "grad must have the jet's shape")
    return torch.empty_like(jet)


def jet_activation_first(preactivation, weight, function, params, pair_i, pair_j, collapsed):  # type: ignore[no-untyped-def]
    check_same_device("jet_activation_first", preactivation=preactivation, weight=weight)
    torch._check(preactivation.dim() == 2 and weight.dim() == 2, lambda: "preactivation (N, m) and weight (m, t)")
    n, m = preactivation.shape
    return preactivation.new_empty((n, _num_slots(weight.shape[1], pair_i, collapsed), m))


def jet_activation_first_backward(grad, preactivation, weight, function, params, pair_i, pair_j, collapsed):  # type: ignore[no-untyped-def]
    check_same_device("jet_activation_first_backward", grad=grad, preactivation=preactivation, weight=weight)
    torch._check(grad.dim() == 3, lambda: "grad must be the output jet's gradient (N, S, m)")
    return preactivation.new_empty(preactivation.shape), weight.new_empty(weight.shape)


def _check_bilaplacian_shapes(op, jet, extra, num_tangents, dims):  # type: ignore[no-untyped-def]
    p = len(dims)
    torch._check(p >= 1, lambda: f"hoderiv_ext.{op}: dims must list at least one tangent index")
    torch._check(jet.dim() == 3 and extra.dim() == 3, lambda: f"hoderiv_ext.{op}: jet (N, S, m) and extra (N, p + 1, m)")
    torch._check(jet.shape[1] == 1 + num_tangents + p * (p + 1) // 2,
                 lambda: f"hoderiv_ext.{op}: jet must have 1 + t + p(p+1)/2 slots")
    torch._check(extra.shape[0] == jet.shape[0] and extra.shape[1] == p + 1 and extra.shape[2] == jet.shape[2],
                 lambda: f"hoderiv_ext.{op}: extra must have shape (N, p + 1, m)")


def jet_bilaplacian_extra(jet, bias, extra, function, params, num_tangents, dims):  # type: ignore[no-untyped-def]
    check_same_device("jet_bilaplacian_extra", jet=jet, bias=bias, extra=extra)
    _check_bilaplacian_shapes("jet_bilaplacian_extra", jet, extra, num_tangents, dims)
    return extra.new_empty(extra.shape)


def jet_bilaplacian_extra_backward(grad, jet, bias, extra, function, params, num_tangents, dims):  # type: ignore[no-untyped-def]
    check_same_device("jet_bilaplacian_extra_backward", grad=grad, jet=jet, bias=bias, extra=extra)
    _check_bilaplacian_shapes("jet_bilaplacian_extra_backward", jet, extra, num_tangents, dims)
    torch._check(grad.shape == extra.shape, lambda: "grad must have extra's shape")
    return jet.new_empty(jet.shape), extra.new_empty(extra.shape)


def _check_univariate_shapes(op, jet, num_tangents, order, highest):  # type: ignore[no-untyped-def]
    torch._check(1 <= order <= highest, lambda: f"hoderiv_ext.{op}: order must be in [1, {highest}], got {order}")
    torch._check(jet.dim() == 3, lambda: f"hoderiv_ext.{op}: jet must be a (N, S, m) jet")
    torch._check(0 <= num_tangents <= jet.shape[1] - 1,
                 lambda: f"hoderiv_ext.{op}: num_tangents must be in [0, S - 1]")
    torch._check((jet.shape[1] - 1 - num_tangents) % order == 0,
                 lambda: f"hoderiv_ext.{op}: jet must have S = 1 + t + R * order slots")


def _check_bias(op, bias, jet):  # type: ignore[no-untyped-def]
    if bias is not None:
        torch._check(bias.dim() == 1 and bias.shape[0] == jet.shape[2],
                     lambda: f"hoderiv_ext.{op}: bias must have shape (m,)")


def jet_univariate(jet, bias, function, params, num_tangents, order):  # type: ignore[no-untyped-def]
    check_same_device("jet_univariate", jet=jet, bias=bias)
    _check_univariate_shapes("jet_univariate", jet, num_tangents, order, 8)
    _check_bias("jet_univariate", bias, jet)
    return jet.new_empty(jet.shape)


def jet_univariate_backward(grad, jet, bias, function, params, num_tangents, order):  # type: ignore[no-untyped-def]
    check_same_device("jet_univariate_backward", grad=grad, jet=jet, bias=bias)
    _check_univariate_shapes("jet_univariate_backward", jet, num_tangents, order, 7)
    _check_bias("jet_univariate_backward", bias, jet)
    torch._check(grad.shape == jet.shape, lambda: "hoderiv_ext.jet_univariate_backward: grad must have jet's shape")
    return jet.new_empty(jet.shape)


def weighted_gram(left: Tensor, weight: Tensor, right: Tensor) -> Tensor:
    check_same_device("weighted_gram", left=left, weight=weight, right=right)
    torch._check(left.dim() == 3 and right.dim() == 3 and weight.dim() == 2,
                 lambda: "hoderiv_ext.weighted_gram: left must be (N, k, m), weight (N, m), right (N, d, m)")
    torch._check(weight.shape[0] == left.shape[0] and right.shape[0] == left.shape[0],
                 lambda: "hoderiv_ext.weighted_gram: left, weight and right must have one batch size N")
    torch._check(weight.shape[1] == left.shape[2] and right.shape[2] == left.shape[2],
                 lambda: "hoderiv_ext.weighted_gram: left, weight and right must have one unit count m")
    return left.new_empty((left.shape[0], left.shape[1], right.shape[1]))


FAKE_KERNELS = {
    "elementwise_derivatives": elementwise_derivatives,
    "elementwise_derivatives_backward": elementwise_derivatives_backward,
    "polynomial_derivatives": polynomial_derivatives,
    "polynomial_derivatives_backward": polynomial_derivatives_backward,
    "jet_activation": jet_activation,
    "jet_activation_backward": jet_activation_backward,
    "jet_activation_first": jet_activation_first,
    "jet_activation_first_backward": jet_activation_first_backward,
    "jet_bilaplacian_extra": jet_bilaplacian_extra,
    "jet_bilaplacian_extra_backward": jet_bilaplacian_extra_backward,
    "jet_univariate": jet_univariate,
    "jet_univariate_backward": jet_univariate_backward,
    "weighted_gram": weighted_gram,
}
