"""The forward and reverse sweeps over a plan's layers, written once for every Taylor algorithm.

Forward sweep: the jet of f along t input directions u_k (rows of
``directions`` (t, d), or (N, t, d) per sample; the unit vectors when None),
carrying the slots of a :class:`~hoderiv_ext.ops.layout.JetLayout`. Layers
before the first activation are affine: their value goes through F.linear
and their tangents are the same for every sample (a (m, t) matrix, the
product of the weights with the directions), so the first activation reads
them from that matrix and no per-sample tangents or zero second-order slots
are ever materialised (with per-sample directions the tangents are
per-sample from the start). From then on the jet is one tensor (N, S, m): a
Linear is ONE GEMM on it viewed as (N*S, m), its bias added to slot 0 inside
the next activation.

An activation is, depending on what the sweep carries:

* ``"jet"`` -- ONE fused kernel (``jet_activation``, ``jet_activation_first``)
  for any layout: forward Taylor mode, the collapsed slots;
* ``"tangents"`` -- for a first-order jet kept for a reverse sweep (mixed
  mode, forward-over-reverse): ONE fused elementwise pass gives phi, phi'
  and phi'' at a, the tangents are scaled by phi', and phi', phi'' are kept
  for the reverse sweep (which then reads no activation again).

Reverse sweep (scalar outputs): delta = df/dh back through the layers, with
per activation the curvature c_l = delta_l * phi''(a_l) that mixed mode
contracts, and, on request, the directional adjoint dot(delta) along the
forward tangents (forward-over-reverse):

    Linear  h' = W h + b:  delta <- delta W,            dot(delta) <- dot(delta) W
    phi     h' = phi(a):   delta <- delta * phi'(a),    dot(delta) <- dot(delta) * phi'(a) + c_l * dot(a)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hoderiv_ext.engines.taylor.plan import ActivationStep, LinearStep, TaylorPlan
from hoderiv_ext.ops import elementwise as elementwise_ops
from hoderiv_ext.ops import jet as jet_ops
from hoderiv_ext.ops.layout import JetLayout


@dataclass(frozen=True)
class ActivationInput:
    """What the forward sweep fed an activation: a = v + bias (N, m), its tangents, and phi'(a), phi''(a) if known.

    ``tangents`` is (N, t, m), or (t, m) when they are the same for every sample
    (the first activation); it broadcasts against (N, t, m) either way.
    """

    preactivation: Tensor
    tangents: Tensor
    first: Tensor | None = None
    second: Tensor | None = None


@dataclass(frozen=True)
class Jet:
    """The forward sweep's result: f's value (N, o), tangents (N, t, o), second-order slots (N, s, o)."""

    value: Tensor
    tangents: Tensor
    second: Tensor
    inputs: tuple[ActivationInput, ...]  # per activation, when recorded


class CarriedJet:
    """The sweep's state: the affine prefix (value, shared tangent matrix), then the jet or value + tangents."""

    def __init__(self, x: Tensor, layout: JetLayout, directions: Tensor | None, mode: str, record: bool) -> None:
        self.layout, self.mode, self.record = layout, mode, record
        self.value = x  # the affine prefix's value (N, m), and in "tangents" mode always the value
        self.per_sample = directions is not None and directions.dim() == 3
        # Tangents of the current value: (t, m) shared while affine (None = identity; after one Linear the
        # transposed view of its weight: the first activation then reads the weight itself and the GEMMs a
        # transposed operand, neither with a copy), or (N, t, m) per sample.
        self.shared: Tensor | None = None if directions is None or self.per_sample else directions
        self.tangents: Tensor | None = directions if self.per_sample else None
        self.jet: Tensor | None = None  # (N, S, m) once the first activation has run ("jet" mode)
        self.bias: Tensor | None = None  # a Linear's bias not yet added (to slot 0 of the jet)
        self.inputs: list[ActivationInput] = []

    def linear(self, step: LinearStep) -> None:
        if self.jet is not None:
            if self.bias is not None:  # two Linear layers in a row
                self.jet = torch.cat([(self.jet[:, 0] + self.bias).unsqueeze(1), self.jet[:, 1:]], dim=1)
            self.jet, self.bias = F.linear(self.jet, step.weight), step.bias
            return
        self.value = F.linear(self.value, step.weight, step.bias)
        if self.tangents is not None:
            self.tangents = F.linear(self.tangents, step.weight)
        else:
            self.shared = step.weight.t() if self.shared is None else F.linear(self.shared, step.weight)

    def shared_tangents(self, like: Tensor) -> Tensor:
        """The tangents (t, m) of the affine prefix, the same for every sample (the identity when nothing was applied)."""
        if self.shared is None:
            self.shared = torch.eye(self.layout.num_tangents, dtype=like.dtype, device=like.device)
        return self.shared

    def activation(self, step: ActivationStep) -> None:
        name, params = step.function.name, step.function.params
        if self.mode == "tangents":
            # The shared tangents are W^T, a transposed view: made contiguous (t, m), so that the product below
            # is laid out as (N, t, m) and the next Linear reads it without a copy.
            tangents = self.tangents if self.tangents is not None else self.shared_tangents(self.value).contiguous()
            phi = elementwise_ops.elementwise_derivatives(self.value, name, params, 2)  # phi, phi', phi''
            if self.record:
                self.inputs.append(ActivationInput(self.value, tangents, phi[1], phi[2]))
            self.value, self.tangents = phi[0], phi[1].unsqueeze(1) * tangents
            return
        if self.jet is None and self.tangents is None:  # the first activation reads the shared tangents
            shared = self.shared_tangents(self.value)
            if self.record:
                self.inputs.append(ActivationInput(self.value, shared))
            self.jet = jet_ops.jet_activation_first(self.value, shared.t(), name, params, self.layout)
            return
        if self.jet is None:  # per-sample tangents: materialise the first layer's jet
            zeros = self.value.new_zeros((self.value.shape[0], self.layout.num_second, self.value.shape[1]))
            self.jet = torch.cat([self.value.unsqueeze(1), self.tangents, zeros], dim=1)
        t = self.layout.num_tangents
        if self.record:
            self.inputs.append(ActivationInput(self.preactivation(), self.jet[:, 1 : 1 + t]))
        self.jet, self.bias = jet_ops.jet_activation(self.jet, self.bias, name, params, self.layout), None

    def preactivation(self) -> Tensor:
        """Slot 0 of the jet with the pending bias added (the next activation's input a); the jet must exist."""
        assert self.jet is not None
        value = self.jet.select(1, 0)
        return value if self.bias is None else value + self.bias

    def result(self) -> Jet:
        n, t, s = self.value.shape[0], self.layout.num_tangents, self.layout.num_second
        if self.jet is not None:
            value = self.preactivation()
            return Jet(value, self.jet.narrow(1, 1, t), self.jet.narrow(1, 1 + t, s), tuple(self.inputs))
        o = self.value.shape[1]
        tangents = self.tangents if self.tangents is not None else \
            self.shared_tangents(self.value).unsqueeze(0).expand(n, t, o)
        return Jet(self.value, tangents, self.value.new_zeros((n, s, o)), tuple(self.inputs))


def forward_sweep(
    plan: TaylorPlan, x: Tensor, layout: JetLayout, directions: Tensor | None = None, record: bool = False
) -> Jet:
    """The jet of f at x (N, d) along ``directions`` (t, d) or (N, t, d) (None: the d unit vectors), in ``layout``.

    ``record``: keep each activation's input for a reverse sweep; a first-order
    layout recorded for one runs in "tangents" mode (module docstring).

    Eagerly, along the unit directions and without ``record``, the sweep is one
    op call (:func:`network_jet_sweep`: the same steps in C++, the same result
    to the bit). Under torch.compile, and otherwise, the steps run from Python
    (:func:`python_forward_sweep`) and are traced.
    """
    if directions is None and not record and layout.num_tangents == x.shape[1] and not torch.compiler.is_compiling():
        network = plan.network_jet_arguments()
        if network is not None:
            return network_jet_sweep(x, jet_ops.network_jet_operands(network, layout), layout)
    return python_forward_sweep(plan, x, layout, directions, record)


def network_jet_sweep(x: Tensor, operands: tuple, layout: JetLayout) -> Jet:
    """:func:`forward_sweep` of a plan with an activation along the d unit directions, as one op call.

    ``operands``: :func:`hoderiv_ext.ops.jet.network_jet_operands` of the plan's
    :meth:`~hoderiv_ext.engines.taylor.plan.TaylorPlan.network_jet_arguments` and ``layout``. The op
    returns the last jet (N, S, o) and the value (N, o); the tangents and second-order slots are views
    of the jet.
    """
    jet, value = jet_ops.network_jet_with(x, operands)
    t, s = layout.num_tangents, layout.num_second
    return Jet(value, jet.narrow(1, 1, t), jet.narrow(1, 1 + t, s), ())


def python_forward_sweep(
    plan: TaylorPlan, x: Tensor, layout: JetLayout, directions: Tensor | None = None, record: bool = False
) -> Jet:
    """:func:`forward_sweep` one Python op call per step (the steps of the module docstring)."""
    mode = "tangents" if record and layout.num_second == 0 else "jet"
    carried = CarriedJet(x, layout, directions, mode, record)
    for step in plan.steps:
        if isinstance(step, LinearStep):
            carried.linear(step)
        else:
            carried.activation(step)
    return carried.result()


@dataclass(frozen=True)
class Adjoint:
    """The reverse sweep's result for a scalar-output network.

    gradient: df/dx (N, d). curvatures: c_l = delta_l * phi''(a_l) (N, m_l) per
    activation, in forward order. directional: dot(delta) at the input
    (N, t, d) = H u_k for each forward direction u_k, when asked for.
    """

    gradient: Tensor
    curvatures: tuple[Tensor, ...]
    directional: Tensor | None


def reverse_sweep(plan: TaylorPlan, inputs: tuple[ActivationInput, ...], x: Tensor, directional: bool) -> Adjoint:
    """delta = df/dh from the (scalar) output back to x, using the forward sweep's recorded ``inputs``."""
    n = x.shape[0]
    delta = torch.ones((n, 1), dtype=x.dtype, device=x.device)
    delta_dot: Tensor | None = None  # (N, t, m); None = zero
    curvatures: list[Tensor] = []
    index = len(inputs)
    for step in reversed(plan.steps):
        if isinstance(step, LinearStep):
            delta = delta @ step.weight
            delta_dot = None if delta_dot is None else delta_dot @ step.weight
            continue
        index -= 1
        recorded = inputs[index]
        first, second = recorded.first, recorded.second
        if first is None or second is None:  # recorded in "jet" mode: phi at a once more
            phi = elementwise_ops.elementwise_derivatives(recorded.preactivation, step.function.name,
                                                          step.function.params, 2)
            first, second = phi[1], phi[2]
        curvature = delta * second
        curvatures.append(curvature)
        if directional:
            term = curvature.unsqueeze(1) * recorded.tangents
            delta_dot = term if delta_dot is None else delta_dot * first.unsqueeze(1) + term
        delta = delta * first
    curvatures.reverse()
    return Adjoint(delta, tuple(curvatures), delta_dot)
