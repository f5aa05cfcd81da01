"""The autograd engine: input derivatives of any batched callable, the reference every fast path is tested against.

``run(f, x, request, create_graph=..., method=...)`` takes the canonical batch
``x`` (N, d), calls ``f`` on batches of it and returns the canonical
``(value (N, o), jacobian (N, o, d), second)`` of :mod:`hoderiv_ext.core.results`.

Mechanisms (``method=``):

* ``"func"`` -- torch.func: vmap over samples of jacrev and forward-over-reverse
  Hessian-vector products with the selected unit vectors
  (:mod:`hoderiv_ext.engines.autograd.func`).
* ``"batched"`` -- nested ``torch.autograd.grad`` of the batch sum, the passes
  over outputs / Hessian rows batched with ``is_grads_batched=True``, one
  after the other if that fails (:mod:`hoderiv_ext.engines.autograd.nested`).
* ``"loop"`` -- the same, one backward pass per (output, row) pair.
* ``"auto"`` -- per group of passes, the measured rule
  :func:`hoderiv_ext.engines.select.batch_autograd_passes`.

Every mechanism's cost grows with the number of Hessian rows asked for
(k rows: k Hessian-vector products or k backward passes), not with d.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.core.validation import BatchFunction, check_callable, check_x, inference_mode_enabled
from hoderiv_ext.engines.autograd.func import func_derivatives
from hoderiv_ext.engines.autograd.modes import outside_inference_mode
from hoderiv_ext.engines.autograd.nested import BatchRule, nested_derivatives
from hoderiv_ext.engines.autograd.operators import directional_coefficients, operator_derivatives
from hoderiv_ext.engines.select import batch_autograd_passes

Method = Literal["auto", "func", "batched", "loop"]
METHODS: tuple[str, ...] = ("auto", "func", "batched", "loop")


def _check_request(request: object, d: int) -> HessianRequest:
    if not isinstance(request, HessianRequest):
        raise TypeError(
            f"request must be a HessianRequest (see hoderiv_ext.core.requests.parse_hessian_request), "
            f"got {type(request).__name__}"
        )
    if request.kind == "rows" and not all(0 <= r < d for r in request.rows):
        raise ValueError(f"request rows {request.rows} are out of range for d = {d}")
    return request


def run(
    f: BatchFunction,
    x: Tensor,
    request: HessianRequest,
    *,
    create_graph: bool,
    method: Method = "auto",
    directions: Tensor | None = None,
) -> Canonical:
    """Value, Jacobian and the requested second derivatives of ``f`` at every sample of ``x``.

    Args:
        f: a batched function (N, d) -> (N,), (N, 1) or (N, o) whose output row n
            depends on input row n only (see :mod:`hoderiv_ext.core.independence`).
        x: the canonical batch, a floating-point tensor (N, d).
        request: what second-order information to compute.
        create_graph: keep the autograd graph so the results can be
            differentiated again (with respect to f's parameters, and to x if
            x requires grad); False returns detached tensors and frees the
            graphs as it goes.
        method: ``"auto"``, ``"func"``, ``"batched"`` or ``"loop"`` (see the
            module docstring); weighted Laplacians and the bi-Laplacian run on
            nested autograd (:mod:`hoderiv_ext.engines.autograd.operators`).
        directions: sigma (d, r) or (N, d, r) for a weighted or randomized
            Laplacian, the Gaussian directions (N, d, r) of a randomized
            bi-Laplacian; None otherwise.

    Returns:
        ``(value (N, o), jacobian (N, o, d), second)`` with ``second`` None for
        ``request.kind == "none"``, else (N, o, d, d) full, (N, o, k, d) rows,
        (N, o, d) diagonal or (N, o) Laplacian.
    """
    check_callable(f)
    x = check_x(x)
    if x.dim() != 2:
        raise ValueError(f"x must be the canonical batch of shape (N, d), got shape {tuple(x.shape)}")
    request = _check_request(request, x.shape[1])
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    create_graph = bool(create_graph) and not inference_mode_enabled()
    return outside_inference_mode(lambda inputs: _run(f, inputs, request, create_graph, method, directions), x)


def _run(
    f: BatchFunction, x: Tensor, request: HessianRequest, create_graph: bool, method: str, directions: Tensor | None
) -> Canonical:
    n = x.shape[0]
    batched: BatchRule
    if method in ("batched", "loop"):
        batched = method == "batched"
    else:
        batched = lambda passes: batch_autograd_passes(x.device, n, passes)  # noqa: E731
    if request.weighted or request.kind == "bilaplacian":
        return operator_derivatives(f, x, request, directions, create_graph=create_graph, batched=batched)
    if n == 0:  # vmap cannot map over zero samples; autograd handles an empty batch
        return nested_derivatives(f, x, request, create_graph=create_graph)
    if method == "func":
        return func_derivatives(f, x, request, create_graph=create_graph)
    return nested_derivatives(f, x, request, create_graph=create_graph, batched=batched)


def directional(f: BatchFunction, x: Tensor, v: Tensor, order: int, *, create_graph: bool) -> Tensor:
    """d^k/dt^k f(x + t v) at t = 0, k = 0..order, for x (N, d) and v (d,) or (N, d): (N, o, order + 1)."""
    create_graph = bool(create_graph) and not inference_mode_enabled()

    def compute(inputs: Tensor) -> Tensor:
        out = directional_coefficients(f, inputs, v, order, create_graph=create_graph)
        return out if create_graph else out.detach()

    return outside_inference_mode(compute, x)
