"""The public entry point ``directional_derivatives(f, x, v, order)``: Taylor coefficients along a direction."""

from __future__ import annotations

import torch
from torch import Tensor

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.core.validation import (
    BatchFunction,
    canonical_input,
    check_callable,
    check_create_graph,
    check_order,
    check_x,
)
from hoderiv_ext.engines import select
from hoderiv_ext.engines.autograd import engine as autograd_engine
from hoderiv_ext.engines.taylor.plan import build_plan
from hoderiv_ext.engines.taylor.univariate import univariate_sweep
from hoderiv_ext.ops.library import MAX_KERNEL_ORDER



def _canonical_direction(v: object, x2d: Tensor, has_batch_axis: bool) -> Tensor:
    """v as (d,) for every sample or (N, d) per sample, checked against the canonical x (N, d)."""
    if not isinstance(v, Tensor):
        raise TypeError(f"v must be a torch.Tensor, got {type(v).__name__}")
    if v.dtype != x2d.dtype or v.device != x2d.device:
        raise TypeError(f"v must have x's dtype and device ({x2d.dtype}, {x2d.device}), got ({v.dtype}, {v.device})")
    n, d = x2d.shape
    if v.dim() == 0 and d == 1:
        return v.reshape(1)
    if v.dim() == 1 and v.shape[0] == d:
        return v
    if has_batch_axis and v.dim() == 1 and d == 1 and v.shape[0] == n:  # scalar inputs: one direction per sample
        return v.reshape(n, 1)
    if v.dim() == 2 and v.shape == (n, d):
        return v
    raise ValueError(f"v must have shape (d,) = ({d},) or (N, d) = ({n}, {d}) like x, got {tuple(v.shape)}")


def _taylor_directional(f: BatchFunction, x: Tensor, v: Tensor, order: int, create_graph: bool) -> Tensor:
    """The univariate Taylor sweep along v: (N, o, order + 1); NotServed when the Taylor engine cannot serve f."""
    plan = build_plan(f)
    obstacles = select.kernel_obstacles(x.device, x.dtype)
    if obstacles:
        raise NotServed("; ".join(obstacles))
    if order > MAX_KERNEL_ORDER:
        raise NotServed(f"order {order} exceeds the kernels' highest order {MAX_KERNEL_ORDER}")
    plan.check_operands(x)
    with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
        along = v.unsqueeze(0) if v.dim() == 1 else v.unsqueeze(1)  # (1, d) shared or (N, 1, d)
        if order == 0:
            value = univariate_sweep(plan, x, along, 1)[0]
            return value.unsqueeze(-1)
        value, _, coefficients = univariate_sweep(plan, x, along, order)
        factorials = torch.arange(1, order + 1, dtype=x.dtype, device=x.device).cumprod(0)  # 1!, ..., order!
        higher = coefficients[:, 0].transpose(1, 2) * factorials  # (N, o, order)
        return torch.cat([value.unsqueeze(-1), higher], dim=-1)


def directional_derivatives(
    f: BatchFunction,
    x: Tensor,
    v: Tensor,
    order: int = 2,
    *,
    backend: str = "auto",
    create_graph: bool | None = None,
) -> Tensor:
    """d^k/dt^k f(x + t v) at t = 0, for k = 0..order, at every sample of x.

    The network generalisation of ``elementwise_derivatives``: the Taylor
    coefficients of f along the line through each x_n in direction v (k! times
    the k-th coefficient), e.g. the third derivatives a KdV-type equation
    needs along a direction.

    Args:
        f: a batched function or ``nn.Module`` (as for :func:`derivatives`).
        x: (N, d) samples, (d,) one point, (N,) scalar inputs or a 0-d scalar.
        v: the direction, (d,) for every sample or (N, d) per sample (a 0-d or
            (N,) tensor for scalar inputs); x's dtype and device.
        order: the highest derivative, >= 0.
        backend: "auto" (the autograd engine, measured faster today),
            "kernel" (the Taylor engine's univariate sweep, for the networks it
            serves; NotServed otherwise) or "autograd".
        create_graph: as for :func:`derivatives`.

    Returns:
        (N, order + 1) for a scalar f, (N, o, order + 1) for o outputs; the N
        axis is dropped for a single point. Entry k is the k-th derivative.

    Raises:
        TypeError / ValueError: bad f, x, v or order (the message names it);
        NotServed: backend="kernel" and the Taylor engine cannot serve f.
    """
    f = check_callable(f)
    x = check_x(x)
    select.check_backend(backend)
    order = check_order(order)
    create_graph = check_create_graph(create_graph)
    x2d, has_batch_axis, _ = canonical_input(f, x)
    direction = _canonical_direction(v, x2d, has_batch_axis)
    if backend == "kernel":
        stacked = _taylor_directional(f, x2d, direction, order, create_graph)
    else:  # auto: the autograd engine, measured faster than the univariate Taylor sweep (engines/select.py)
        stacked = autograd_engine.directional(f, x2d, direction, order, create_graph=create_graph)  # (N, o, K + 1)
    if stacked.shape[1] == 1:
        stacked = stacked[:, 0]
    return stacked if has_batch_axis else stacked[0]
