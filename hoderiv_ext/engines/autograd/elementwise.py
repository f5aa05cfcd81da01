"""Elementwise derivatives (y, y', ..., y^(order)) of any elementwise callable by nested autograd."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hoderiv_ext.core.validation import inference_mode_enabled
from torch import Tensor

from hoderiv_ext.engines.autograd.modes import outside_inference_mode


def autograd_elementwise_derivatives(
    fn: Callable[[Tensor], Tensor], x: Tensor, order: int, *, verify_elementwise: bool = False
) -> tuple[Tensor, ...]:
    """y = fn(x), then y^(k+1) = d/dx sum(y^(k)) by nested autograd.

    Valid because fn is elementwise: d/dx_i sum_j y_j = dy_i/dx_i. Results keep
    their graph (differentiable to any order) when grad mode is on.

    ``verify_elementwise``: check that claim for an fn of unknown kind with one
    more backward pass: for an elementwise fn the vector-Jacobian product with
    random signs u is u * y' exactly; a function that mixes entries (an
    ``nn.Linear``, a softmax) fails it and is refused with a ValueError.
    """
    build_graph = torch.is_grad_enabled() and not inference_mode_enabled()
    return outside_inference_mode(lambda inputs: _nested(fn, inputs, order, build_graph, verify_elementwise), x)


def _check_elementwise(y: Tensor, leaf: Tensor, first: Tensor) -> None:
    """Raise ValueError unless the Jacobian of y with respect to leaf is diagonal (see autograd_elementwise_derivatives)."""
    if y.numel() < 2 or not y.requires_grad:
        return
    signs = torch.randint(0, 2, y.shape, generator=torch.Generator().manual_seed(0)).to(device=y.device, dtype=y.dtype)
    signs = 2 * signs - 1
    (product,) = torch.autograd.grad(y, leaf, signs, retain_graph=True, allow_unused=True, materialize_grads=True)
    expected = signs * first
    scale = max(1.0, float(expected.abs().nan_to_num(0.0, 0.0, 0.0).max()))
    difference = (product - expected).abs().nan_to_num(0.0, 0.0, 0.0)
    if float(difference.max()) > torch.finfo(y.dtype).eps ** 0.5 * scale:
        raise ValueError(
            "fn is not elementwise: some output entries depend on other entries of x (its Jacobian is not "
            "diagonal), so (y, y', y'', ...) per entry are not defined. elementwise_derivatives takes functions "
            "applied entry by entry (torch.tanh, nn.Softplus(), a Polynomial); for the input derivatives of a "
            "network use hoderiv_ext.derivatives(f, x, hessian=...)."
        )


def _nested(
    fn: Callable[[Tensor], Tensor], x: Tensor, order: int, build_graph: bool, verify_elementwise: bool
) -> tuple[Tensor, ...]:
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
            if verify_elementwise and len(results) == 2:
                _check_elementwise(results[0], leaf, results[1].detach())
    if not build_graph:
        results = [r.detach() for r in results]
    return tuple(results)
