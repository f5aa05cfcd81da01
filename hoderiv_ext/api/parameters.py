"""Derivatives of a scalar loss with respect to parameters: gradient, Hessian rows, Newton steps.

The parameters ``theta_1, ..., theta_m`` (tensors of any shapes) are flattened
and concatenated, in order, into one vector ``theta`` of length
``P = sum_i theta_i.numel()``. For a scalar ``L(theta)``:

* gradient ``g = dL/dtheta``, shape (P,);
* Hessian rows ``H[r, :] = d g_r / dtheta`` for the requested r, shape (k, P),
  or the full Hessian (P, P). All rows come from ONE batched backward pass
  of the gradient graph (``torch.autograd.grad(..., is_grads_batched=True)``);
  only if an operation has no batching rule does it fall back to one pass per
  row;
* the Newton step ``Delta`` solving ``(H + damping I) Delta = -g``, returned
  split and shaped like the parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hoderiv_ext.core.requests import normalize_indices

Params = Tensor | Sequence[Tensor]


@dataclass(frozen=True)
class ParameterDerivatives:
    """Gradient (P,) and Hessian rows (k, P) -- (P, P) for all rows -- of a scalar loss."""

    gradient: Tensor
    hessian_rows: Tensor


def _check_params(params: object) -> list[Tensor]:
    if isinstance(params, Tensor):
        params = [params]
    elif not isinstance(params, (list, tuple)):
        raise TypeError(f"params must be a tensor or a list/tuple of tensors, got {type(params).__name__}")
    if not params:
        raise ValueError("params must hold at least one tensor, got an empty list")
    for index, param in enumerate(params):
        if not isinstance(param, Tensor):
            raise TypeError(f"params[{index}] must be a torch.Tensor, got {type(param).__name__}")
        if not param.is_floating_point():
            raise TypeError(f"params[{index}] must be a floating-point tensor, got dtype {param.dtype}")
        if not param.requires_grad:
            raise ValueError(
                f"params[{index}] (shape {tuple(param.shape)}) does not require grad: "
                "create it with requires_grad=True (or call .requires_grad_()) before computing the loss"
            )
    return list(params)


def _check_loss(loss: object) -> Tensor:
    if not isinstance(loss, Tensor):
        raise TypeError(f"loss must be a scalar torch.Tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(
            f"loss must be a scalar (one element), got shape {tuple(loss.shape)}; reduce it with .sum() or .mean()"
        )
    if not loss.is_floating_point():
        raise TypeError(f"loss must be a floating-point tensor, got dtype {loss.dtype}")
    if not loss.requires_grad:
        raise ValueError(
            "loss has no autograd graph: compute it from params with grad mode on (not under torch.no_grad())"
        )
    return loss.reshape(())


def _flat(tensors: Sequence[Tensor], leading: tuple[int, ...] = ()) -> Tensor:
    return torch.cat([t.reshape(*leading, -1) for t in tensors], dim=-1)


def _rows_of(gradient: Tensor, params: list[Tensor], rows: tuple[int, ...], create_graph: bool) -> Tensor:
    """``H[r, :]`` for r in ``rows`` as (k, P), from the graph of the flat gradient (P,)."""
    k, total = len(rows), gradient.shape[0]
    if k == 0 or not gradient.requires_grad:  # no rows (P = 0), or the loss is at most linear in params: H = 0
        return torch.zeros((k, total), dtype=gradient.dtype, device=gradient.device)
    selector = torch.zeros((k, total), dtype=gradient.dtype, device=gradient.device)
    selector[torch.arange(k), torch.as_tensor(rows)] = 1
    options = dict(retain_graph=True, create_graph=create_graph, allow_unused=True)
    if k > 1:
        try:
            blocks = torch.autograd.grad(gradient, params, selector, is_grads_batched=True, **options)
            return _flat(_zeros_for_unused(blocks, params, (k,)), (k,))
        except RuntimeError:
            pass  # an operation without a batching rule: one pass per row below
    return torch.stack([
        _flat(_zeros_for_unused(torch.autograd.grad(gradient, params, one_hot, **options), params))
        for one_hot in selector
    ])


def _zeros_for_unused(
    blocks: Sequence[Tensor | None], params: list[Tensor], leading: tuple[int, ...] = ()
) -> list[Tensor]:
    """Replace the None autograd returns for parameters a gradient does not depend on by zeros."""
    return [
        torch.zeros((*leading, *p.shape), dtype=p.dtype, device=p.device) if block is None else block
        for block, p in zip(blocks, params)
    ]


def hessian_rows(
    loss: Tensor, params: Params, rows: object = None, *, create_graph: bool = False
) -> ParameterDerivatives:
    """Gradient and Hessian rows of a scalar ``loss`` with respect to ``params``.

    Args:
        loss: a scalar tensor computed from ``params`` (with its graph).
        params: a tensor or a list/tuple of tensors that require grad;
            flattened and concatenated in order into one vector of length P.
        rows: None for the full Hessian (P, P), or indices into the flat
            vector (a sequence of ints or a 1-D integer tensor; negatives
            count from the end; no duplicates) for (k, P).
        create_graph: keep the graph of the results (for third derivatives);
            by default they are detached. The loss's own graph is kept either
            way, so ``loss.backward()`` still works afterwards.

    Returns:
        ``ParameterDerivatives(gradient (P,), hessian_rows (k, P) or (P, P))``.
        A parameter the loss does not depend on gets zero entries.

    Raises:
        TypeError / ValueError naming ``loss``, ``params[i]`` or ``rows``.
    """
    params = _check_params(params)
    loss = _check_loss(loss)
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    gradient = _flat(_zeros_for_unused(grads, params))
    total = gradient.shape[0]
    selected = tuple(range(total)) if rows is None else normalize_indices(rows, total, name="rows")
    second = _rows_of(gradient, params, selected, create_graph)
    if not create_graph:
        gradient, second = gradient.detach(), second.detach()
    return ParameterDerivatives(gradient=gradient, hessian_rows=second)


def newton_step(loss: Tensor, params: Params, *, damping: float = 0.0) -> list[Tensor]:
    """The Newton step ``Delta`` solving ``(H + damping I) Delta = -g``, shaped like ``params``.

    ``params[i] + step[i]`` is the minimiser of the quadratic model of the loss;
    for a quadratic loss (least squares) it is the exact minimiser in one step.
    The P x P system is solved in float64 for float32/16 parameters.

    Args:
        loss: a scalar tensor computed from ``params``.
        params: a tensor or a list/tuple of tensors that require grad.
        damping: a non-negative Levenberg-Marquardt shift added to H's diagonal.

    Returns:
        A list of detached tensors, one per parameter, each shaped like it.

    Raises:
        torch.linalg.LinAlgError: ``H + damping I`` is singular (to working
            precision); the message suggests a positive ``damping``.
        ValueError: non-finite gradient or Hessian entries, or a bad ``damping``.
    """
    params = _check_params(params)
    is_number = isinstance(damping, (int, float)) and not isinstance(damping, bool)
    if not is_number or not 0 <= damping < float("inf"):  # also refuses nan
        raise ValueError(f"damping must be a finite number >= 0, got {damping!r}")
    derivs = hessian_rows(loss, params)
    gradient, hessian = derivs.gradient, derivs.hessian_rows
    if not (bool(gradient.isfinite().all()) and bool(hessian.isfinite().all())):
        raise ValueError("newton_step: the gradient or Hessian of loss has non-finite entries (inf or nan)")
    total = gradient.shape[0]
    work_dtype = torch.float64 if hessian.dtype in (torch.float16, torch.bfloat16, torch.float32) else hessian.dtype
    system = hessian.to(work_dtype) + float(damping) * torch.eye(total, dtype=work_dtype, device=hessian.device)
    singular_values = torch.linalg.svdvals(system)
    largest, smallest = float(singular_values.max()), float(singular_values.min())
    threshold = largest * total * torch.finfo(hessian.dtype).eps
    if largest == 0.0 or smallest <= threshold:
        raise torch.linalg.LinAlgError(
            f"newton_step: the Hessian H ({total} x {total}) is singular to working precision "
            f"(smallest singular value {smallest:.3g}, largest {largest:.3g}"
            + (f", damping {damping}" if damping else "")
            + "). The loss is flat along some direction (a parameter it does not depend on, or redundant "
            "parameters); pass damping > 0 (e.g. damping=1e-3 * the largest singular value) to solve "
            "(H + damping I) step = -g instead."
        )
    step = torch.linalg.solve(system, -gradient.to(work_dtype)).to(gradient.dtype)
    sizes = [p.numel() for p in params]
    return [piece.reshape(p.shape) for piece, p in zip(step.split(sizes), params)]
