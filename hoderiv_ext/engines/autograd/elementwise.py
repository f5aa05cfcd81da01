"""Elementwise derivatives (y, y', ..., y^(order)) of any elementwise callable by nested autograd."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def autograd_elementwise_derivatives(fn: Callable[[Tensor], Tensor], x: Tensor, order: int) -> tuple[Tensor, ...]:
    """y = fn(x), then y^(k+1) = d/dx sum(y^(k)) by nested autograd.

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
