"""The public entry point: ``derivatives(f, x, hessian=...)``.

It reads ``x`` into the canonical batch (N, d) (:mod:`hoderiv_ext._validation`),
parses ``hessian=`` (:mod:`hoderiv_ext.requests`), refuses batch-statistics
layers (:mod:`hoderiv_ext.independence`), lets
:func:`hoderiv_ext._backend.select_engine` pick the Taylor engine or the
autograd reference engine, probes the reference engine's ``f(x)`` for samples
that interact (unless f is a Sequential of per-sample layers), and shapes the
result (:mod:`hoderiv_ext.results`).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from hoderiv_ext import taylor
from hoderiv_ext._backend import check_backend, select_engine
from hoderiv_ext._reference_autograd import Canonical
from hoderiv_ext._validation import BatchFunction, canonical_input, check_callable, check_x, output_width
from hoderiv_ext.independence import probe_independence, static_independence_check
from hoderiv_ext.reference import reference_derivatives
from hoderiv_ext.requests import HessianRequest, parse_hessian_request
from hoderiv_ext.results import Derivatives, Layout, empty_canonical, finalize

_WARNED_REASONS: set[str] = set()


def _warn_once_not_served(reason: str) -> None:
    if reason in _WARNED_REASONS:
        return
    _WARNED_REASONS.add(reason)
    warnings.warn(
        f"hoderiv_ext.derivatives: the compiled Taylor engine cannot serve this module ({reason}); "
        "using the slower autograd reference engine. Pass backend='autograd' to silence this warning.",
        RuntimeWarning,
        stacklevel=3,
    )


def _choose_engine(f: BatchFunction, x: Tensor, backend: str, steps: object) -> tuple[str, object]:
    """``("kernel", plan)`` or ``("autograd", None)``; raises for backend='kernel' when it cannot serve.

    ``steps`` is ``taylor.layer_steps(f)``.
    """
    if backend == "autograd":
        return "autograd", None
    plan = taylor.plan(f, steps)  # type: ignore[arg-type]
    reason = plan if isinstance(plan, str) else None
    engine = select_engine(backend, x.device, x.dtype, unsupported=reason)
    not_served = engine == "autograd" and reason is not None and isinstance(f, nn.Module)
    if not_served and backend == "auto" and x.device.type == "cuda":
        _warn_once_not_served(reason)
    return engine, plan


def _empty_batch(f: BatchFunction, x: Tensor, request: HessianRequest, create_graph: bool) -> Canonical:
    """Results for N = 0: from ``f`` on the empty batch when it accepts one, else zeros of the right shape."""
    try:
        return reference_derivatives(f, x, request, create_graph=create_graph, method="autograd")
    except Exception:  # noqa: BLE001 - f rejects an empty batch; learn o from one zero sample instead
        o = output_width(f, x)
        return empty_canonical(request, o, x.shape[1], dtype=x.dtype, device=x.device)


def derivatives(
    f: BatchFunction,
    x: Tensor,
    hessian: object = None,
    *,
    backend: str = "auto",
    create_graph: bool | None = None,
    check_independence: bool = True,
) -> Derivatives:
    """Value, gradient / Jacobian and requested second derivatives of ``f`` at every sample of ``x``.

    ``f`` is applied to the whole batch: ``f(x)`` with x of shape (N, d) must
    return (N,), (N, 1) or (N, o), output row n computed from input row n only.

    Args:
        f: a function or ``nn.Module``, batched as above.
        x: a floating-point tensor: (N, d) samples, (d,) one point, (N,)
            scalar inputs of a map with one input, or a 0-d scalar. A 1-D x
            is read as scalar inputs when f maps a column (m, 1) to (m,) or
            (m, o), and as one point otherwise (see
            :mod:`hoderiv_ext._validation`).
        hessian: None / "none", "full", "diagonal", "laplacian", or a list of
            row indices (see :mod:`hoderiv_ext.requests`).
        backend: "auto" (the compiled Taylor engine for CUDA tensors when it
            serves f, else autograd), "kernel" (the Taylor engine, CPU or
            CUDA; a RuntimeError says why when it cannot serve f) or
            "autograd" (the reference engine).
        create_graph: keep the graph so the results can be differentiated
            (with respect to f's parameters, and x if it requires grad), as in a
            training loss. None means ``torch.is_grad_enabled()``; False
            returns detached results and saves the memory of the graph.
        check_independence: enforce the sample-independence rule (see
            :mod:`hoderiv_ext.independence`): refuse batch-norm layers in
            training mode, and compare rows 0 and 1 of ``f(x)`` with ``f``
            called on those samples alone (two extra calls of ``f`` on one
            sample each, without a graph; skipped for an ``nn.Sequential``
            of Linear layers, supported activations and no-ops, which is
            per-sample by construction).

    Returns:
        A :class:`~hoderiv_ext.results.Derivatives`; for x (N, d) and scalar
        f: value (N,), gradient (N, d), and the one requested of hessian
        (N, d, d), hessian_rows (N, k, d), hessian_diagonal (N, d),
        laplacian (N,). Other layouts: :mod:`hoderiv_ext.results`.

    Raises:
        TypeError: f not callable; x not a floating-point tensor; f returning
            a non-tensor or a non-floating tensor.
        ValueError: x with more than 2 axes; a bad ``hessian=``; f returning
            the wrong shape; f mixing samples.
        RuntimeError: backend="kernel" and the Taylor engine cannot serve the call.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        >>> out = derivatives(net, torch.randn(128, 2), hessian="laplacian")
        >>> out.value.shape, out.gradient.shape, out.laplacian.shape
        (torch.Size([128]), torch.Size([128, 2]), torch.Size([128]))
    """
    f = check_callable(f)
    x = check_x(x)
    check_backend(backend)
    if create_graph is None:
        create_graph = torch.is_grad_enabled()
    x2d, has_batch_axis, has_input_axis = canonical_input(f, x)
    n, d = x2d.shape
    request = parse_hessian_request(hessian, d)
    steps = taylor.layer_steps(f)
    # A Sequential of the Taylor engine's layers (Linear, activations, no-ops;
    # no batch norm, no dropout in training, no hooks) acts on each sample
    # alone: nothing for the independence checks to find, whichever engine
    # serves the call. Anything else is checked (and probed, for N >= 2).
    per_sample_layers = not isinstance(steps, str)
    probe = check_independence and not per_sample_layers and static_independence_check(f)
    engine, plan = _choose_engine(f, x2d, backend, steps)

    if engine == "kernel":  # the Taylor kernels handle N = 0 themselves
        value, jacobian, second = taylor.run(plan, x2d, request, bool(create_graph))  # type: ignore[arg-type]
    elif n == 0:  # the reference engine on the empty batch, or zeros when f rejects one
        value, jacobian, second = _empty_batch(f, x2d, request, bool(create_graph))
    else:
        value, jacobian, second = reference_derivatives(f, x2d, request, create_graph=bool(create_graph))
        if probe and n >= 2:
            probe_independence(f, x2d, value)

    o = value.shape[1] if isinstance(value, Tensor) and value.dim() == 2 else 0
    layout = Layout(has_batch_axis=has_batch_axis, has_input_axis=has_input_axis, has_output_axis=o > 1)
    engine_name = "taylor" if engine == "kernel" else "autograd"
    return finalize(value, jacobian, second, request, layout=layout, engine=engine_name)
