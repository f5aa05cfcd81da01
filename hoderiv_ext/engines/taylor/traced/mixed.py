"""Mixed-mode Hessians of a traced program: forward tangents, curvature weighted by one reverse sweep.

For a scalar output u of f, the second derivatives come from f's nonlinear nodes alone. With T_a the
tangents (N, d, m) of a node's input a (forward Taylor mode with the d unit tangents and no pair slots)
and abar_v = du/dv (N, m) the adjoint of the node's value v,

    H = sum_{v = phi(z)}  T_z diag(abar_v phi''(z)) T_z^T
      + sum_{v = a * b}   T_a diag(abar_v) T_b^T + T_b diag(abar_v) T_a^T          (N, d, d)

(the second-order slots of forward Taylor mode propagate linearly, with the first derivatives of the
value map as coefficients, so the output's pair slots are sum_v abar_v times the term each node adds;
here those terms are contracted with abar_v instead of being carried through every later GEMM). Linear
nodes (GEMMs, sums, views, indexing, joins, where, scalings) add nothing. The adjoints come from one
reverse sweep (autograd) of the traced graph run on plain values, which returns the values of the
recorded nodes beside its output; phi'' from the elementwise op at the jet's value of z. Rows of the
Hessian are the same terms for the requested rows of T_z on the left.

Cost per layer: 1 + d slots through every GEMM and one reverse GEMM, against 1 + d + d(d+1)/2 slots
for forward Taylor mode (full Hessian), plus N d^2 m for each node's contraction.

Served: scalar outputs; nonlinear nodes that are unary functions of the compiled table (x ** p for a
scalar p, x * x) or elementwise products of two jets of one shape. Any other op on a jet that is not
linear (a quotient of two jets, a layer norm, a product of two jet matrices) makes the program
:class:`~hoderiv_ext.core.errors.NotServed` here, found by the program's dry run; forward Taylor mode
then serves it. The reverse sweep needs autograd: not inside ``torch.inference_mode()`` and not under
torch.compile (the selection step sends those calls to forward Taylor mode).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
from torch import Tensor, fx

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.core.functions import ATEN_FUNCTIONS
from hoderiv_ext.core.requests import HessianRequest, parse_hessian_request
from hoderiv_ext.core.results import Canonical
from hoderiv_ext.engines.taylor.traced import linear_rules, shape_rules
from hoderiv_ext.engines.taylor.traced.capture import first_line
from hoderiv_ext.engines.taylor.traced.interpreter import arg_leaves, op_name
from hoderiv_ext.engines.taylor.traced.jets import SeedJet, Slots, is_jet
from hoderiv_ext.engines.taylor.traced.rules import RULES, plain, value_of
from hoderiv_ext.engines.taylor.traced.run import output_jet, run_traced
from hoderiv_ext.ops import elementwise as elementwise_ops
from hoderiv_ext.ops.gram import shared_weighted_gram, weighted_gram
from hoderiv_ext.ops.layout import JetLayout

aten = torch.ops.aten

# Ops whose rules are linear in their jets (or give values without derivatives): no curvature term.
_LINEAR_OPS: frozenset[object] = frozenset(
    {op for op, function in RULES.items() if function.__module__ in (linear_rules.__name__, shape_rules.__name__)}
    | {operator.getitem, aten.where.self, aten.masked_fill.Scalar, aten.sign.default, aten.isnan.default,
       aten.isinf.default, aten.argmax.default, aten.argmin.default, aten.sym_size.int, aten.sym_numel.default}
    | {getattr(packet, overload) for packet in (aten.eq, aten.ne, aten.gt, aten.ge, aten.lt, aten.le)
       for overload in ("Tensor", "Scalar")}
)
# Products that are linear when one factor is a constant.
_BILINEAR_OPS = frozenset({aten.mul.Tensor, aten.bmm.default})


@dataclass
class Curvature:
    """One nonlinear node of the traced graph: its position (graph node index), its input tangents
    (B, d, *rest) with B = N or 1 (shared by the samples), and what weighs them.

    ``kind`` "unary": ``tangents`` of z, ``second`` phi''(z) (N, *rest); "product": ``tangents`` of a and
    ``other`` of b.
    """

    position: int
    kind: str
    tangents: Tensor
    second: Tensor | None = None
    other: Tensor | None = None


class CurvatureRecorder:
    """Set on :class:`~hoderiv_ext.engines.taylor.traced.jets.Slots` (``slots.curvatures``) for a mixed-mode
    sweep; the interpreter shows it every step that reads a jet before the step's rule runs."""

    def __init__(self) -> None:
        self.terms: list[Curvature] = []

    def observe(self, slots: Slots, position: int, target: object, args: tuple, kwargs: dict,
                values: list[object], where: str) -> None:
        """Record the curvature term of a nonlinear step, or refuse the op (NotServed)."""
        jets = [leaf for leaf in arg_leaves(values) if is_jet(leaf)]
        if not jets or target in _LINEAR_OPS:
            return
        if len(jets) == 1 and (target in _BILINEAR_OPS or (target is aten.div.Tensor and is_jet(args[0]))):
            return  # a product with a constant, a quotient by one
        first = args[0] if args else None
        if target is aten.mul.Tensor and len(args) == 2 and is_jet(args[0]) and is_jet(args[1]):
            a, b = args
            if a is b:
                self._unary(slots, position, a, "square", ())
                return
            if a.primal_shape != b.primal_shape:  # type: ignore[union-attr]
                raise NotServed(f"mixed mode: a broadcasting product of two jets at {where}")
            self.terms.append(Curvature(position, "product", _tangents(slots, a), other=_tangents(slots, b)))
            return
        if len(jets) == 1 and is_jet(first):
            function_of = ATEN_FUNCTIONS.get(target)
            if function_of is not None:
                self._unary(slots, position, first, *function_of(*args[1:], **kwargs))
                return
            if target is aten.pow.Tensor_Tensor:
                exponent = plain(args[1])
                if isinstance(exponent, Tensor) and exponent.dim() == 0 and not exponent.requires_grad:
                    self._unary(slots, position, first, *ATEN_FUNCTIONS[aten.pow.Tensor_Scalar](float(exponent)))
                    return
        raise NotServed(f"mixed mode has no curvature term for {op_name(target)} at {where}")

    def _unary(self, slots: Slots, position: int, jet: object, name: str, params: tuple[float, ...]) -> None:
        z = value_of(jet)  # type: ignore[arg-type]
        second = elementwise_ops.elementwise_derivatives(z, name, params, 2)[2]
        self.terms.append(Curvature(position, "unary", _tangents(slots, jet), second=second))


def _tangents(slots: Slots, jet: object) -> Tensor:
    """The tangents (B, t, *rest) of a jet: shared (B = 1) on the affine prefix, else per sample."""
    if isinstance(jet, SeedJet):
        return jet.tangent_tensor(slots)
    return jet.data[:, 1:1 + slots.t]  # type: ignore[attr-defined]  (a pending bias leaves them as they are)


def adjoint_graph(program: object, positions: tuple[int, ...]) -> fx.GraphModule:
    """The program's graph returning (its output, the values of the nodes at ``positions``), built once per
    program and positions. It reads the same parameters and buffers (its attributes are the program's)."""
    cache = program.adjoint_graphs  # type: ignore[attr-defined]
    module = cache.get(positions)
    if module is None:
        source = program.interpreter.graph_module  # type: ignore[attr-defined]
        nodes = list(source.graph.nodes)
        graph = fx.Graph()
        copies: dict[fx.Node, fx.Node] = {}
        for node in nodes:
            if node.op == "output":
                output = fx.node.map_arg(node.args[0], lambda n: copies[n])
                graph.output((output, *(copies[nodes[p]] for p in positions)))
                break
            copies[node] = graph.node_copy(node, lambda n: copies[n])
        module = fx.GraphModule(source, graph)
        cache[positions] = module
    return module


def run_traced_mixed(program: object, x: Tensor, request: HessianRequest) -> Canonical:
    """Canonical (value (N, 1), jacobian (N, 1, d), second (N, 1, d, d) or rows (N, 1, k, d)) for x (N, d).

    The results carry a graph when grad mode is on (the caller's create_graph), as forward Taylor mode's do.

    Raises:
        NotServed: f's output is not one value per sample, or an op has no curvature term (see the module
            docstring), or inference mode is on.
    """
    if torch.is_inference_mode_enabled():
        raise NotServed("mixed mode needs a reverse sweep, which inference mode does not record")
    n, d = x.shape
    if n == 0:  # one zero sample for the shapes, none of it kept
        value, jacobian, second = run_traced_mixed(program, x.new_zeros(1, d), request)
        return value[:0], jacobian[:0], second[:0]  # type: ignore[index]
    create_graph = torch.is_grad_enabled()
    slots = Slots(JetLayout(d), x.device, x.dtype)
    recorder = CurvatureRecorder()
    slots.curvatures = recorder
    data = output_jet(program, x, slots, None)  # type: ignore[arg-type]
    if data.shape[2] != 1:
        raise NotServed(f"mixed mode serves one output per sample; f has {data.shape[2]}")
    value, jacobian = data[:, 0], data[:, 1:1 + d].transpose(1, 2)
    terms = recorder.terms
    rows = list(request.rows) if request.kind == "rows" else None
    k = d if rows is None else len(rows)
    if not terms:  # f is affine in x
        return value, jacobian, x.new_zeros(n, 1, k, d)
    adjoints = _adjoints(program, x, tuple(term.position for term in terms), create_graph)
    total: Tensor | None = None
    for term, adjoint in zip(terms, adjoints):
        contribution = _contract(term, adjoint, rows, n, d)
        total = contribution if total is None else total + contribution
    assert total is not None
    return value, jacobian, total.unsqueeze(1)


def _adjoints(program: object, x: Tensor, positions: tuple[int, ...], create_graph: bool) -> tuple[Tensor, ...]:
    """du/dv at every node of ``positions``: one reverse sweep of the graph run on plain values."""
    module = adjoint_graph(program, positions)
    with torch.enable_grad():
        if x.requires_grad:  # the adjoints depend on x: keep that dependence for a later derivative in x
            source = x
        else:
            source = (x.detach().clone() if x.is_inference() else x.detach()).requires_grad_(True)
        output, *values = module(source)
        return torch.autograd.grad(output.sum(), values, create_graph=create_graph, allow_unused=True,
                                   materialize_grads=True)


def _contract(term: Curvature, adjoint: Tensor, rows: list[int] | None, n: int, d: int) -> Tensor:
    """The term's (N, k, d) share of the Hessian (rows: the requested rows on the left)."""
    m = math.prod(adjoint.shape[1:])
    weight = adjoint.reshape(n, m)
    left_tangents = term.tangents.reshape(term.tangents.shape[0], d, m)
    if term.kind == "unary":
        assert term.second is not None
        weight = weight * term.second.reshape(n, m)
        right = left_tangents
    else:
        assert term.other is not None
        right = term.other.reshape(term.other.shape[0], d, m)
    left = left_tangents if rows is None else left_tangents[:, rows]
    result = _weighted_products(left, weight, right)  # (N, k, d)
    if term.kind == "product":  # + T_b diag(w) T_a^T: the transpose of the first term for the full Hessian
        if rows is None:
            return result + result.transpose(1, 2)
        result = result + _weighted_products(right[:, rows], weight, left_tangents)
    return result


def _weighted_products(left: Tensor, weight: Tensor, right: Tensor) -> Tensor:
    """(N, k, d): sum_u left_iu w_u right_ju for left (B, k, m), weight (N, m), right (B, d, m), B = N or 1 (the
    affine prefix's tangents, the same for every sample: then one matrix product, ops/gram.py)."""
    (k, m), d, n = left.shape[1:], right.shape[1], weight.shape[0]
    if left.shape[0] == 1 and right.shape[0] == 1:
        return shared_weighted_gram(left[0], weight, right[0])
    # Two views of one tensor stay views of one tensor: the op's kernel computes half of T diag(w) T^T.
    return weighted_gram(left.expand(n, k, m), weight, right.expand(n, d, m))


def dry_run_mixed(program: object, x: Tensor) -> None:
    """Set ``program.mixed_refusal``: None when mixed mode serves the program's full Hessian on two samples of
    x and matches forward Taylor mode there, else why not (the op without a curvature term, a vector
    output, a mismatch)."""
    d = x.shape[1]
    request = parse_hessian_request("full", d)
    try:
        with torch.inference_mode(False), torch.no_grad():
            sample = x.detach()[:2].clone() if x.shape[0] >= 2 else torch.randn(2, d, dtype=x.dtype, device=x.device)
            _, _, mixed = run_traced_mixed(program, sample, request)
            _, _, forward = run_traced(program, sample, request)  # type: ignore[arg-type]  (the reference)
    except NotServed as error:
        program.mixed_refusal = error  # type: ignore[attr-defined]
        return
    except Exception as error:  # noqa: BLE001 - a failure is a refusal, said with its cause
        program.mixed_refusal = NotServed(  # type: ignore[attr-defined]
            f"mixed mode failed: {type(error).__name__}: {first_line(error)}")
        return
    assert forward is not None
    tolerance = 1e-4 if x.dtype == torch.float32 else 1e-9
    scale = float(forward.abs().max()) + 1.0
    if not bool(torch.isfinite(mixed).all()) or float((mixed - forward).abs().max()) > tolerance * scale:
        program.mixed_refusal = NotServed(  # type: ignore[attr-defined]
            "mixed mode's Hessian differs from forward Taylor mode's on the dry run")
        return
    program.mixed_refusal = None  # type: ignore[attr-defined]
