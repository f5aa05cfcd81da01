"""Forward Taylor mode over a traced program: the canonical results of one call.

The seed jet of x (N, d) is the value x with the d unit tangents (or, for a
weighted Laplacian, the d unit tangents and the r columns of sigma, summed
into one collapsed slot), shared by every sample and never materialised per
sample. An exact bi-Laplacian carries the full-Hessian jet over its inputs D
and the extra slots of :mod:`~hoderiv_ext.engines.taylor.bilaplacian`. The program's output jet (N, S, *rest) is read back as (value (N, o),
jacobian (N, o, d), second) exactly as the plain-network forward mode does.

Univariate jets (:func:`univariate_jet`): the value, t = d unit tangents (or
none) and the Taylor coefficients c_1..c_K along R directions; they serve
``directional_derivatives`` (R = 1, K = order, no tangents) and the randomized
bi-Laplacian (K = 4 along the r Gaussian directions: (1/3r) Σ_k 4! c_4).
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
from hoderiv_ext.engines.taylor.traced.capture import UNIVARIATE_MAX_ORDER, TracedProgram, first_line
from hoderiv_ext.engines.taylor.traced.jets import (BadOutput, OrderNotServed, SamplesMix, SeedJet, Slots, as_full,
                                                    is_jet)
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
        if directions is not None and directions.dim() == 3:  # per sample: one zero sample's directions
            directions = directions.new_zeros((1, *directions.shape[1:]))
        value, jacobian, second = run_traced(program, x.new_zeros(1, d), request, directions)
        return value[:0], jacobian[:0], None if second is None else second[:0]
    if request.kind == "bilaplacian":
        if directions is not None:  # the randomized estimate from fourth-order coefficients along (N, d, r)
            r = directions.shape[-1]
            value, tangents, coefficients = univariate_jet(program, x, directions.transpose(1, 2), 4)
            return value, tangents.transpose(1, 2), 24 * coefficients[:, :, 3].sum(1) / (3 * r)  # D^4 f[v] = 4! c_4
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


def univariate_jet(program: TracedProgram, x: Tensor, directions: Tensor, order: int,
                   gradient: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """(value (N, o), tangents (N, t, o), coefficients (N, R, K, o)) of f at x (N, d) along ``directions``
    (R, d) shared or (N, R, d) per sample, to ``order`` K; t = d unit tangents when ``gradient``, else 0.

    Coefficient k - 1 of direction r is (1/k!) d^k/ds^k f(x + s v_r) at s = 0.

    Raises:
        NotServed: the program does not serve univariate jets of this order (:func:`check_univariate_order`).
    """
    program.check_univariate_order(order)
    return _univariate_jet(program, x, directions, order, gradient)


def _univariate_jet(program: TracedProgram, x: Tensor, directions: Tensor, order: int,
                    gradient: bool) -> tuple[Tensor, Tensor, Tensor]:
    n, d = x.shape
    r = directions.shape[-2]
    t = d if gradient else 0
    rows = directions.unsqueeze(0) if directions.dim() == 2 else directions  # c_1 = v_r: (1 or N, R, d)
    if t:
        unit = torch.eye(d, dtype=x.dtype, device=x.device).unsqueeze(0).expand(rows.shape[0], d, d)
        rows = torch.cat([unit, rows], dim=1)
    slots = Slots(JetLayout(t), x.device, x.dtype, univariate=(r, order))
    data = output_jet(program, x, slots, rows)
    return data[:, 0], data[:, 1:1 + t], data[:, 1 + t:].reshape(n, r, order, data.shape[-1])


def run_directional(program: TracedProgram, x: Tensor, v: Tensor, order: int) -> Tensor:
    """d^k/ds^k f(x + s v) at s = 0, k = 0..order: (N, o, order + 1), for x (N, d) and v (d,) or (N, d)."""
    n, d = x.shape
    if n == 0:  # one zero sample for the shapes
        return run_directional(program, x.new_zeros(1, d), v if v.dim() == 1 else v.new_zeros(1, d), order)[:0]
    along = v.unsqueeze(0) if v.dim() == 1 else v.unsqueeze(1)  # (1, d) shared or (N, 1, d)
    value, _, coefficients = univariate_jet(program, x, along, max(order, 1), gradient=False)
    if order == 0:
        return value.unsqueeze(-1)
    factorials = torch.arange(1, order + 1, dtype=x.dtype, device=x.device).cumprod(0)  # 1!, ..., order!
    return torch.cat([value.unsqueeze(-1), coefficients[:, 0].transpose(1, 2) * factorials], dim=-1)


def dry_run(program: TracedProgram, x: Tensor) -> None:
    """Run a new program once on two samples: with tangents, a pair slot and a collapsed slot, then with a
    bi-Laplacian's extra slots over the first input (every rule's every branch that a later call can take),
    then with univariate jets (:func:`_dry_run_univariate`)."""
    d = x.shape[1]
    sample = x.detach()[:2] if x.shape[0] >= 2 else torch.randn(2, d, dtype=x.dtype, device=x.device)
    with torch.no_grad():
        layout = JetLayout(d, pairs=((0, d - 1),), collapsed=tuple(range(d)))
        output_jet(program, sample, Slots(layout, x.device, x.dtype), None, check=True)
        bilaplacian = Slots(bilaplacian_layout(d, (0,)), x.device, x.dtype, bilaplacian_dims=(0,))
        output_jet(program, sample, bilaplacian, None)
        program.univariate_order, program.univariate_refusal = _dry_run_univariate(program, sample)


def _dry_run_univariate(program: TracedProgram, sample: Tensor) -> tuple[int, Exception | None]:
    """(the highest order K <= 8 whose univariate jets the program serves, why not higher or None).

    Runs two directions shared by the samples with the gradient's tangents, and one direction per sample
    without tangents, at K = 8, then at the order a refusing rule serves (:class:`OrderNotServed`). A
    refusal here leaves the program's other requests served.
    """
    n, d = sample.shape
    shared = torch.linspace(0.5, 1.5, 2 * d, dtype=sample.dtype, device=sample.device).reshape(2, d)
    per_sample = torch.linspace(-1.0, 1.0, n * d, dtype=sample.dtype, device=sample.device).reshape(n, 1, d)
    order, refusal = UNIVARIATE_MAX_ORDER, None
    while order >= 1:
        try:
            _univariate_jet(program, sample, shared, order, gradient=True)
            _univariate_jet(program, sample, per_sample, order, gradient=False)
            return order, refusal
        except OrderNotServed as error:
            refusal, order = error, min(error.served, order - 1)
        except (SamplesMix, NotServed) as error:
            return 0, error
        except Exception as error:  # noqa: BLE001 - a rule's failure is a refusal, said with its cause
            return 0, NotServed(f"the traced program failed on univariate jets: {type(error).__name__}: "
                                f"{first_line(error)}")
    return 0, refusal
