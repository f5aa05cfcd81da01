"""The Taylor engine's entry point: run a plan with the algorithm the selection step chose."""

from __future__ import annotations

import torch
from torch import Tensor

from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.engines.taylor.bilaplacian import run_bilaplacian
from hoderiv_ext.engines.taylor.collapsed_reverse import run_collapsed_reverse
from hoderiv_ext.engines.taylor.forward import PreparedForward, run_forward
from hoderiv_ext.engines.taylor.forward_over_reverse import run_forward_over_reverse
from hoderiv_ext.engines.taylor.mixed import run_mixed
from hoderiv_ext.engines.taylor.plan import TaylorPlan
from hoderiv_ext.engines.taylor.reverse import run_reverse
from hoderiv_ext.engines.taylor.traced.capture import TracedProgram
from hoderiv_ext.engines.taylor.traced.mixed import run_traced_mixed
from hoderiv_ext.engines.taylor.traced.run import run_traced
from hoderiv_ext.engines.taylor.univariate import run_univariate

ALGORITHMS: tuple[str, ...] = ("forward", "mixed", "forward_over_reverse", "reverse", "univariate",
                               "bilaplacian", "collapsed_reverse", "traced", "traced_mixed")
TRACED_ALGORITHMS = ("traced", "traced_mixed")
_RUNNERS = {
    "forward": run_forward,
    "mixed": run_mixed,
    "forward_over_reverse": run_forward_over_reverse,
    "reverse": run_reverse,
}


def run(
    plan: TaylorPlan | TracedProgram, x: Tensor, request: HessianRequest, create_graph: bool, algorithm: str,
    directions: Tensor | None = None,
) -> Canonical:
    """Canonical (value (N, o), jacobian (N, o, d), second) for x (N, d); see :mod:`hoderiv_ext.core.results`.

    ``algorithm``: "forward" (forward Taylor mode, the fused jet kernels),
    "mixed" (forward tangents + reverse sweep, scalar outputs only) or
    "forward_over_reverse" (k directional tangents + reverse sweep,
    Hessian-rows requests of scalar-output networks only) or "reverse"
    (value and gradient only, scalar-output networks only) or "bilaplacian"
    (the exact bi-Laplacian, :mod:`~hoderiv_ext.engines.taylor.bilaplacian`) or
    "univariate" (its randomized estimate). The choice is made
    by :func:`hoderiv_ext.engines.select.taylor_algorithm`; "traced" (forward
    Taylor mode over a traced program, ``plan`` a
    :class:`~hoderiv_ext.engines.taylor.traced.capture.TracedProgram`) or
    "traced_mixed" (its mixed mode, :mod:`~hoderiv_ext.engines.taylor.traced.mixed`).
    ``directions``: sigma of a weighted or randomized Laplacian (forward
    Taylor mode only).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if isinstance(plan, TracedProgram) != (algorithm in TRACED_ALGORITHMS):
        raise ValueError(f"algorithm in {TRACED_ALGORITHMS} runs a traced program, the others a plan")
    if isinstance(plan, TracedProgram):
        with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
            if algorithm == "traced_mixed":
                return run_traced_mixed(plan, x, request)
            return run_traced(plan, x, request, directions)
    if algorithm not in ("forward", "univariate", "bilaplacian") and plan.output_width(x.shape[1]) != 1:  # one reverse sweep
        raise ValueError(f"algorithm={algorithm!r} serves scalar-output networks only")
    with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
        if algorithm == "bilaplacian":
            return run_bilaplacian(plan, x, request)
        if algorithm == "univariate":
            return run_univariate(plan, x, request, directions)
        if algorithm == "collapsed_reverse":
            return run_collapsed_reverse(plan, x, request, directions)
        if directions is not None:
            return run_forward(plan, x, request, directions)
        return _RUNNERS[algorithm](plan, x, request)


def run_prepared(prepared: PreparedForward, x: Tensor, create_graph: bool) -> Canonical:
    """:func:`run` for a remembered forward-Taylor choice (:func:`hoderiv_ext.engines.select.remembered_choice`)."""
    if create_graph and torch.is_grad_enabled():  # grad mode as it is: no context to enter
        return prepared.run(x)
    with torch.no_grad():
        return prepared.run(x)
