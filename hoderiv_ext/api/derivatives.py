"""The public entry point: ``derivatives(f, x, hessian=...)``.

It reads ``x`` into the canonical batch (N, d) (:mod:`hoderiv_ext.core.validation`),
parses ``hessian=`` (:mod:`hoderiv_ext.core.requests`), refuses batch-statistics
layers (:mod:`hoderiv_ext.core.independence`), lets
:func:`hoderiv_ext.engines.select.choose_engine` pick the engine and algorithm,
runs it, probes the autograd engine's ``f(x)`` for samples that interact
(unless f is a network of per-sample layers), and shapes the result
(:mod:`hoderiv_ext.core.results`). A plain network's repeat call with the same
request, width, dtype, device and backend replays the choice kept with its plan
(:func:`hoderiv_ext.engines.select.remembered_choice`) instead of selecting again.
"""

from __future__ import annotations

from torch import Tensor

from hoderiv_ext.core.independence import probe_independence, static_independence_check
from hoderiv_ext.core.operators import Bilaplacian, laplacian_directions, random_directions
from hoderiv_ext.core.requests import HessianRequest, parse_hessian_request
from hoderiv_ext.core.results import Canonical, Derivatives, Engine, Layout, empty_canonical, finalize
from hoderiv_ext.core.validation import (
    BatchFunction,
    canonical_input,
    check_callable,
    check_create_graph,
    check_x,
    output_width,
)
from hoderiv_ext.engines import select
from hoderiv_ext.engines.autograd import engine as autograd_engine
from hoderiv_ext.engines.taylor import engine as taylor_engine


def _directions(request: HessianRequest, x: Tensor) -> Tensor | None:
    """sigma of a weighted / randomized Laplacian, or the Gaussian directions of a randomized bi-Laplacian."""
    if request.weighted:
        return laplacian_directions(request.operator, x, request.dims)  # type: ignore[arg-type]
    if request.kind == "bilaplacian" and isinstance(request.operator, Bilaplacian):
        op = request.operator
        return random_directions(x.shape[0], x.shape[1], op.samples, "gaussian", op.generator, x, request.dims)
    return None


def _empty_batch(
    f: BatchFunction, x: Tensor, request: HessianRequest, create_graph: bool, directions: Tensor | None
) -> Canonical:
    """Results for N = 0: from ``f`` on the empty batch when it accepts one, else zeros of the right shape."""
    try:
        return autograd_engine.run(f, x, request, create_graph=create_graph, method="batched", directions=directions)
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
            :mod:`hoderiv_ext.core.validation`).
        hessian: None / "none", "full", "diagonal", "laplacian", a list of
            row indices (see :mod:`hoderiv_ext.core.requests`), or a
            :class:`~hoderiv_ext.Laplacian` / :class:`~hoderiv_ext.Bilaplacian`
            request (see :mod:`hoderiv_ext.core.operators`).
        backend: "auto" (the compiled Taylor engine for CUDA tensors when it
            serves f, else autograd), "kernel" (the Taylor engine, CPU or
            CUDA; a RuntimeError says why when it cannot serve f) or
            "autograd" (the autograd engine, the reference every fast path is tested against).
        create_graph: keep the graph so the results can be differentiated
            (with respect to f's parameters, and x if it requires grad), as in a
            training loss. None means ``torch.is_grad_enabled()``; False
            returns detached results and saves the memory of the graph.
            Inside ``torch.inference_mode()`` results carry no graph (True
            is refused there).
        check_independence: enforce the sample-independence rule (see
            :mod:`hoderiv_ext.core.independence`): refuse batch-norm layers in
            training mode, and compare every row of ``f(x)`` with ``f`` on the
            even and the odd samples, each half in reverse order (one extra
            forward pass over the batch without a graph; skipped for an
            ``nn.Sequential`` of Linear layers, supported activations and
            no-ops, which is per-sample by construction).

    Returns:
        A :class:`~hoderiv_ext.core.results.Derivatives`; for x (N, d) and scalar
        f: value (N,), gradient (N, d), and the one requested of hessian
        (N, d, d), hessian_rows (N, k, d), hessian_diagonal (N, d),
        laplacian (N,). Other layouts: :mod:`hoderiv_ext.core.results`.

    Raises:
        TypeError: f not callable; x not a floating-point tensor; f returning
            a non-tensor or a non-floating tensor.
        ValueError: x with more than 2 axes; a bad ``hessian=``; f returning
            the wrong shape; f mixing samples.
        NotServed: (a RuntimeError) backend="kernel" and the Taylor engine cannot serve the call.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        >>> out = derivatives(net, torch.randn(128, 2), hessian="laplacian")
        >>> out.value.shape, out.gradient.shape, out.laplacian.shape
        (torch.Size([128]), torch.Size([128, 2]), torch.Size([128]))
    """
    f = check_callable(f)
    x = check_x(x)
    select.check_backend(backend)
    create_graph = check_create_graph(create_graph)
    x2d, has_batch_axis, has_input_axis = canonical_input(f, x)
    n, d = x2d.shape
    request = parse_hessian_request(hessian, d)
    remembered = select.remembered_choice(f, x2d, request, backend)
    if remembered is not None:  # a plain network this request, width, dtype and device have run on before
        if remembered.prepared is not None:
            value, jacobian, second = taylor_engine.run_prepared(remembered.prepared, x2d, bool(create_graph))
        else:
            assert remembered.plan is not None
            value, jacobian, second = taylor_engine.run(remembered.plan, x2d, request, bool(create_graph),
                                                        remembered.algorithm)
        return _finish((value, jacobian, second), request, has_batch_axis, has_input_axis, "taylor",
                       remembered.algorithm)
    directions = _directions(request, x2d)
    choice = select.choose_engine(f, x2d, request, backend, check_independence)
    # A network of the Taylor engine's layers (Linear, activations, no-ops; no
    # batch norm, no dropout in training, no hooks) acts on each sample alone:
    # nothing for the independence checks to find, whichever engine serves the
    # call. Anything else is checked (and probed, for N >= 2).
    probe = check_independence and not choice.per_sample and static_independence_check(f, choice.checked_modules)
    select.warn_if_not_served(choice, f)  # after the checks: a refused f gets the error, not a warning too

    if choice.engine == "taylor":  # the Taylor kernels handle N = 0 themselves
        served_by = choice.plan if choice.program is None else choice.program
        assert served_by is not None
        value, jacobian, second = taylor_engine.run(served_by, x2d, request, bool(create_graph), choice.algorithm,
                                                    directions)
    elif n == 0:  # the autograd engine on the empty batch, or zeros when f rejects one
        value, jacobian, second = _empty_batch(f, x2d, request, bool(create_graph), directions)
    else:
        value, jacobian, second = autograd_engine.run(f, x2d, request, create_graph=bool(create_graph),
                                                      directions=directions)
        if probe and n >= 2:
            probe_independence(f, x2d, value)

    return _finish((value, jacobian, second), request, has_batch_axis, has_input_axis, choice.engine,
                   choice.algorithm)


def _finish(canonical: Canonical, request: HessianRequest, has_batch_axis: bool, has_input_axis: bool,
            engine: Engine, algorithm: str) -> Derivatives:
    """The user's result from the canonical (value (N, o), jacobian (N, o, d), second), in x's and f's layout."""
    value, jacobian, second = canonical
    o = value.shape[1] if isinstance(value, Tensor) and value.dim() == 2 else 0
    layout = Layout(has_batch_axis=has_batch_axis, has_input_axis=has_input_axis, has_output_axis=o > 1)
    return finalize(value, jacobian, second, request, layout=layout, engine=engine, algorithm=algorithm)
