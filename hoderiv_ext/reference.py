"""The reference (autograd) engine: input derivatives of any batched callable.

``reference_derivatives(f, x, request, create_graph=..., method=...)`` takes the
canonical batch ``x`` (N, d), calls ``f`` on batches of it and returns the
canonical ``(value (N, o), jacobian (N, o, d), second)`` of
:mod:`hoderiv_ext.results`.

Mechanisms (``method=``):

* ``"func"`` -- torch.func: vmap over samples of jacrev and forward-over-reverse
  Hessian-vector products with the selected unit vectors
  (:mod:`hoderiv_ext._reference_func`).
* ``"autograd"`` -- nested ``torch.autograd.grad`` of the batch sum, the passes
  over outputs / Hessian rows batched with ``is_grads_batched=True``, one
  after the other if that fails (:mod:`hoderiv_ext._reference_autograd`).
* ``"autograd_loop"`` -- the same, one backward pass per (output, row) pair.
* ``"auto"`` -- the measured choice below (today one of the two autograd
  mechanisms). Should the choice be ``"func"`` (a future measurement, another
  device) and torch.func raise (an operation it cannot transform,
  data-dependent control flow, ``.item()``), it falls back to ``"autograd"``.

Every mechanism's cost grows with the number of Hessian rows asked for
(k rows: k Hessian-vector products or k backward passes), not with d.

What "auto" picks, and why
--------------------------
Measured with ``benchmarks/bench_reference_methods.py`` (tanh MLP, width 128,
depth 4, float32, one output; 2-core CPU, torch 2.14.1, 2026-11-22; each time
relative to the fastest mechanism of its row; the Laplacian needs all d
Hessian rows; docs/benchmarks.md has the full table):

=====  ===  ==========  ==========  =============  ==========
N      d    func        autograd    autograd_loop  fastest
=====  ===  ==========  ==========  =============  ==========
64     2    3.1-3.8     1.06-1.25   1.00           loop
64     8    1.9-2.2     1.00        1.40-1.43      batched
64     32   1.5         1.00        1.38-1.52      batched
256    4    1.6-1.7     1.00-1.07   1.00-1.04      even
256    16   1.3         1.00-1.04   1.00-1.09      even
1024   16   1.7-1.9     1.13-1.36   1.00           loop
4096   2    1.4-1.7     1.06-1.25   1.00           loop
4096   8    1.1         1.00-1.09   1.00-1.02      even
4096   32   1.9-2.7     1.96-2.12   1.00           loop
=====  ===  ==========  ==========  =============  ==========

(ranges: create_graph True / False; the N = 256 and 1024 rows come from a
second run, ``--n 256 1024 --dims 4 16``). With one requested row the two
autograd mechanisms run the same code; func is 1.6-6x slower there.

So on CPU torch.func is never the fastest (vmap over batch-of-one calls costs
more than the batched calls autograd makes). Batching the passes over rows
pays while the batch is small and there are several passes (N < 256 and at
least 4 passes: the passes are overhead-bound) and costs at large N (k copies
of every intermediate no longer fit in cache). ``auto`` therefore picks
``"autograd"`` for N < 256 with at least 4 passes (outputs x rows), and
``"autograd_loop"`` otherwise -- at large N the seeds' algorithm (one backward
pass per row), without their per-sample loops. On CUDA nothing was measured
(no GPU in that session): ``auto`` batches the passes while N times the number
of passes stays below 2^20 rows of work, on the grounds that GPU passes of that
size are launch-bound; replace this with a measurement.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from hoderiv_ext._reference_autograd import Canonical, autograd_derivatives
from hoderiv_ext._reference_func import func_derivatives
from hoderiv_ext._validation import BatchFunction, check_callable, check_x
from hoderiv_ext.requests import HessianRequest

Method = Literal["auto", "func", "autograd", "autograd_loop"]
METHODS: tuple[str, ...] = ("auto", "func", "autograd", "autograd_loop")


# On CPU, batching the backward passes pays below this many samples, from this many passes (module docstring).
CPU_BATCHED_BELOW_N = 256
CPU_BATCHED_FROM_PASSES = 4
# On CUDA (not measured yet): batch while samples x passes stay below this many rows of work.
CUDA_BATCHED_BELOW_WORK = 1 << 20


def batch_the_passes(device: torch.device, n: int, passes: int) -> bool:
    """Whether ``passes`` backward passes over a batch of ``n`` samples run faster as one batched pass."""
    if device.type == "cuda":
        return n * passes < CUDA_BATCHED_BELOW_WORK
    return n < CPU_BATCHED_BELOW_N and passes >= CPU_BATCHED_FROM_PASSES


def choose_method(
    x: Tensor, request: HessianRequest, outputs: int = 1
) -> Literal["func", "autograd", "autograd_loop"]:
    """The mechanism ``method="auto"`` uses for the batch ``x`` (N, d), ``request`` and ``outputs`` o.

    See the module docstring for the measurements behind it. (Inside a call,
    "auto" applies :func:`batch_the_passes` to each group of passes once o is
    known: the o passes of the Jacobian, the o * k passes of the rows.)
    """
    n, d = x.shape
    passes = max(1, len(request.hessian_rows_needed(d))) * outputs
    return "autograd" if batch_the_passes(x.device, n, passes) else "autograd_loop"


def _check_request(request: object, d: int) -> HessianRequest:
    if not isinstance(request, HessianRequest):
        raise TypeError(
            f"request must be a HessianRequest (see hoderiv_ext.requests.parse_hessian_request), "
            f"got {type(request).__name__}"
        )
    if request.kind == "rows" and not all(0 <= r < d for r in request.rows):
        raise ValueError(f"request rows {request.rows} are out of range for d = {d}")
    return request


def reference_derivatives(
    f: BatchFunction,
    x: Tensor,
    request: HessianRequest,
    *,
    create_graph: bool,
    method: Method = "auto",
) -> Canonical:
    """Value, Jacobian and the requested second derivatives of ``f`` at every sample of ``x``.

    Args:
        f: a batched function (N, d) -> (N,), (N, 1) or (N, o) whose output row n
            depends on input row n only (see :mod:`hoderiv_ext.independence`).
        x: the canonical batch, a floating-point tensor (N, d).
        request: what second-order information to compute.
        create_graph: keep the autograd graph so the results can be
            differentiated again (with respect to f's parameters, and to x if
            x requires grad); False returns detached tensors and frees the
            graphs as it goes.
        method: ``"auto"``, ``"func"``, ``"autograd"`` or ``"autograd_loop"``
            (see the module docstring).

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
    create_graph = bool(create_graph)

    if x.shape[0] == 0:  # vmap cannot map over zero samples; autograd handles an empty batch
        return autograd_derivatives(f, x, request, create_graph=create_graph)
    if method == "func":
        return func_derivatives(f, x, request, create_graph=create_graph)
    if method == "autograd":
        return autograd_derivatives(f, x, request, create_graph=create_graph, batched=True)
    if method == "autograd_loop":
        return autograd_derivatives(f, x, request, create_graph=create_graph, batched=False)

    if choose_method(x, request) == "func":
        try:
            return func_derivatives(f, x, request, create_graph=create_graph)
        except Exception:  # noqa: BLE001 - torch.func cannot transform f: the autograd path can
            pass
    n = x.shape[0]
    return autograd_derivatives(
        f, x, request, create_graph=create_graph, batched=lambda passes: batch_the_passes(x.device, n, passes)
    )
