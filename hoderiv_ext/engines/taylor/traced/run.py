"""Forward Taylor mode over a traced program: the canonical results of one call.

The seed jet of x (N, d) is the value x with the d unit tangents (or, for a
weighted Laplacian, the d unit tangents and the r columns of sigma, summed
into one collapsed slot), shared by every sample and never materialised per
sample. An exact bi-Laplacian carries the full-Hessian jet over its inputs D
and the extra slots of :mod:`~hoderiv_ext.engines.taylor.bilaplacian`. The program's output jet (N, S, *rest) is read back as (value (N, o),
jacobian (N, o, d), second) exactly as the plain-network forward mode does.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.core.validation import check_output
from hoderiv_ext.engines.taylor.bilaplacian import bilaplacian_layout
from hoderiv_ext.engines.taylor.slots import layout_for, second_from_slots
from hoderiv_ext.engines.taylor.traced.capture import TracedProgram
from hoderiv_ext.engines.taylor.traced.jets import BadOutput, SeedJet, Slots, as_full, is_jet
from hoderiv_ext.engines.taylor.traced.rules import constant_jet, value_of
from hoderiv_ext.ops.layout import JetLayout


def output_jet(program: TracedProgram, x: Tensor, slots: Slots, tangents: Tensor | None,
               check: bool = False) -> Tensor:
    """The output jet (N, S, o) of the program at x in ``slots`` along the layout's tangents (None: the unit vectors).

    ``check``: check f's output as the autograd engine does (:func:`~hoderiv_ext.core.validation.check_output`),
    raising :class:`BadOutput`.
    """
    assert program.interpreter is not None
    n = x.shape[0]
    seed = SeedJet(x.unsqueeze(1), tangents)
    out = program.interpreter.run(slots, seed)
    if check:
        try:
            check_output(value_of(out) if is_jet(out) else out, n, like=x)  # type: ignore[arg-type]
        except (TypeError, ValueError) as error:
            raise BadOutput(error) from None
    if isinstance(out, (tuple, list)) or not (is_jet(out) or isinstance(out, Tensor)):
        raise NotServed(f"f returned {type(out).__name__}, not one tensor")
    if not is_jet(out):  # f does not depend on x
        out = constant_jet(slots, out, seed)
    data = as_full(out, slots).data  # type: ignore[arg-type]
    if data.dim() > 3 or data.shape[0] != n:
        raise NotServed(f"f returned a tensor of shape {(n, *data.shape[2:])}; expected (N,), (N, 1) or (N, o)")
    return data.reshape(n, slots.s, -1)


def run_traced(program: TracedProgram, x: Tensor, request: HessianRequest, directions: Tensor | None = None) -> Canonical:
    """Canonical (value (N, o), jacobian (N, o, d), second) for x (N, d); see :mod:`hoderiv_ext.core.results`."""
    n, d = x.shape
    if n == 0:  # run one zero sample for the shapes, keep none of it
        value, jacobian, second = run_traced(program, x.new_zeros(1, d), request, directions)
        return value[:0], jacobian[:0], None if second is None else second[:0]
    if request.kind == "bilaplacian":
        if directions is not None:
            raise NotServed("traced programs serve the exact bi-Laplacian, not its randomized estimate (samples=)")
        chosen = request.dims if request.dims is not None else tuple(range(d))
        slots = Slots(bilaplacian_layout(d, request.dims), x.device, x.dtype, bilaplacian_dims=chosen)
        data = output_jet(program, x, slots, None)
        return data[:, 0], data[:, 1:1 + d].transpose(1, 2), data[:, -1]
    if directions is None:
        layout = layout_for(request, d)
        data = output_jet(program, x, Slots(layout, x.device, x.dtype), None)
        t = layout.num_tangents
        return data[:, 0], data[:, 1:1 + t].transpose(1, 2), second_from_slots(data[:, 1 + t:], request, d)
    r = directions.shape[-1]
    unit = torch.eye(d, dtype=x.dtype, device=x.device)
    if directions.dim() == 2:
        along = torch.cat([unit, directions.t()], dim=0).unsqueeze(0)  # (1, d + r, d)
    else:
        along = torch.cat([unit.unsqueeze(0).expand(n, d, d), directions.transpose(1, 2)], dim=1)  # (N, d + r, d)
    layout = JetLayout(d + r, collapsed=tuple(range(d, d + r)))
    data = output_jet(program, x, Slots(layout, x.device, x.dtype), along)
    return data[:, 0], data[:, 1:1 + d].transpose(1, 2), data[:, -1]


def dry_run(program: TracedProgram, x: Tensor) -> None:
    """Run a new program once on two samples: with tangents, a pair slot and a collapsed slot, then with a
    bi-Laplacian's extra slots over the first input (every rule's every branch that a later call can take)."""
    d = x.shape[1]
    sample = x.detach()[:2] if x.shape[0] >= 2 else torch.randn(2, d, dtype=x.dtype, device=x.device)
    with torch.no_grad():
        layout = JetLayout(d, pairs=((0, d - 1),), collapsed=tuple(range(d)))
        output_jet(program, sample, Slots(layout, x.device, x.dtype), None, check=True)
        bilaplacian = Slots(bilaplacian_layout(d, (0,)), x.device, x.dtype, bilaplacian_dims=(0,))
        output_jet(program, sample, bilaplacian, None)
