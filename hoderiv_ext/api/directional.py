"""The public entry point ``directional_derivatives(f, x, v, order)``: Taylor coefficients along a direction."""

from __future__ import annotations

import warnings

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
from hoderiv_ext.engines.taylor.traced.run import run_directional
from hoderiv_ext.engines.taylor.univariate import univariate_sweep
from hoderiv_ext.ops.library import MAX_KERNEL_ORDER

# backend="auto": the Taylor engine from this order on (where it serves f), the autograd engine below.
# Measured (tanh 3->64x3->1, float32, 2 threads, load ~1, 2026-12-02, fused jet_univariate op; the autograd
# engine's time over the Taylor path's, forward / training step): hard-BC u = x0 (1 - x0) net(x), traced,
# N = 1024: order 1 0.79x / 0.86x, order 2 1.2x / 1.3x, order 3 2.7x / 2.7x, order 4 4.4x / 6.5x, order 8
# 139x (forward); N = 16: order 1 0.51x / 0.52x, order 2 1.0x / 0.92x, order 3 1.6x / 1.6x, order 4 2.8x /
# 3.0x. The plain MLP as a plan, N = 1024: order 2 1.3x / 0.77x, order 3 1.2x / 1.8x, order 4 5.7x / 3.5x;
# N = 16: order 2 2.9x / 1.7x, order 3 5.0x / 3.3x; traced, N = 1024: order 2 1.7x / 1.3x, order 3
# 2.0x / 2.6x; N = 16: order 2 1.2x / 1.1x, order 3 2.2x / 1.6x.
AUTO_TAYLOR_FROM_ORDER = 3

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


def _taylor_directional(f: BatchFunction, x: Tensor, v: Tensor, order: int, create_graph: bool,
                        check_independence: bool = True) -> Tensor:
    """The univariate Taylor sweep along v: (N, o, order + 1); NotServed when the Taylor engine cannot serve f.

    A network of the engine's layers runs as a plan; any other f is traced and runs on univariate jets
    (:func:`~hoderiv_ext.engines.taylor.traced.run.run_directional`). ``check_independence``: a trace that
    mixes samples raises the independence ValueError (else it is not served).
    """
    try:
        plan = build_plan(f)
    except NotServed as error:
        return _traced_directional(f, x, v, order, create_graph, error.reason, check_independence)
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


def _traced_directional(f: BatchFunction, x: Tensor, v: Tensor, order: int, create_graph: bool,
                        not_a_plan: str, check_independence: bool) -> Tensor:
    """f's traced program on univariate jets along v; NotServed (``not_a_plan``, and why not) when it cannot."""
    obstacles = select.kernel_obstacles(x.device, x.dtype)
    if obstacles:
        raise NotServed(f"{not_a_plan}, and " + "; ".join(obstacles))
    program, reason, _ = select._traced(f, x, None, check_independence, univariate_order=max(order, 1))
    if program is None:
        raise NotServed(f"{not_a_plan}, and {reason}")
    with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
        return run_directional(program, x, v, order)


def _warn_once_not_served(f: object, reason: str) -> None:
    """Under backend="auto", one warning per reason when the Taylor engine does not serve a module (as
    ``derivatives`` warns; the same per-process set of reasons)."""
    key = f"directional_derivatives: {reason}"
    if not isinstance(f, torch.nn.Module) or key in select._WARNED_REASONS:
        return
    select._WARNED_REASONS.add(key)
    warnings.warn(
        f"hoderiv_ext.directional_derivatives: the compiled Taylor engine cannot serve this module ({reason}); "
        "using the slower autograd engine. Pass backend='autograd' to silence this warning.",
        RuntimeWarning,
        stacklevel=3,
    )


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
        backend: "auto" (from order 3 the Taylor engine where it serves f,
            measured 1.2-6.5x the autograd engine at orders 3-4, else the
            autograd engine; a module it does not serve gets one warning),
            "kernel" (the Taylor engine's univariate sweep: a plan for a
            network of its layers, univariate jets over the traced program
            of any other f whose ops have jet rules; NotServed otherwise) or
            "autograd".
        create_graph: as for :func:`derivatives`.

    Returns:
        (N, order + 1) for a scalar f, (N, o, order + 1) for o outputs; the N
        axis is dropped for a single point. Entry k is the k-th derivative.

    Raises:
        TypeError / ValueError: bad f, x, v or order (the message names it);
        NotServed: backend="kernel" and the Taylor engine cannot serve f.
        ValueError: backend="kernel" and the trace of f shows that it mixes samples.
    """
    f = check_callable(f)
    x = check_x(x)
    select.check_backend(backend)
    order = check_order(order)
    create_graph = check_create_graph(create_graph)
    x2d, has_batch_axis, _ = canonical_input(f, x)
    direction = _canonical_direction(v, x2d, has_batch_axis)
    stacked: Tensor | None = None
    if backend == "kernel":
        stacked = _taylor_directional(f, x2d, direction, order, create_graph)
    elif backend == "auto" and AUTO_TAYLOR_FROM_ORDER <= order <= MAX_KERNEL_ORDER - (1 if create_graph else 0):
        # (a graph through order-8 coefficients needs phi^(9), which the kernels do not serve)
        try:  # a trace that mixes samples is not served here: the autograd engine differentiates f as it is
            stacked = _taylor_directional(f, x2d, direction, order, create_graph, check_independence=False)
        except NotServed as error:
            _warn_once_not_served(f, error.reason)
    if stacked is None:  # autograd, or auto below AUTO_TAYLOR_FROM_ORDER (measured faster there) or not served
        stacked = autograd_engine.directional(f, x2d, direction, order, create_graph=create_graph)  # (N, o, K + 1)
    if stacked.shape[1] == 1:
        stacked = stacked[:, 0]
    return stacked if has_batch_axis else stacked[0]
