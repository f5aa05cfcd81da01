"""The forward and reverse sweeps over a plan's layers, written once for every Taylor algorithm.

Forward sweep: the jet of f along t input directions u_k (rows of
``directions`` (t, d), or (N, t, d) per sample; the unit vectors when None),
carrying the slots of a :class:`~hoderiv_ext.ops.layout.JetLayout`. Layers before the first
activation are affine: their value goes through F.linear and their tangents
are the same for every sample (a (m, t) matrix, the product of the weights
with the directions), so the first activation reads them from that matrix
(``jet_activation_first``) and no per-sample tangents or zero second-order
slots are ever materialised (with per-sample directions the tangents are
per-sample from the start, and the first activation reads a materialised
jet). From then on the jet is one tensor (N, S, m):
a Linear is ONE GEMM on it viewed as (N*S, m) (its bias is added to slot 0
inside the next activation kernel) and an activation is ONE fused kernel.

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

from hoderiv_ext.engines.taylor.plan import LinearStep, TaylorPlan
from hoderiv_ext.ops import elementwise as elementwise_ops
from hoderiv_ext.ops import jet as jet_ops
from hoderiv_ext.ops.layout import JetLayout


@dataclass(frozen=True)
class ActivationInput:
    """What the forward sweep fed an activation: a = v + bias (N, m) and its tangents along the directions.

    ``tangents`` is (N, t, m), or (t, m) when they are the same for every sample
    (the first activation); it broadcasts against (N, t, m) either way.
    """

    preactivation: Tensor
    tangents: Tensor


@dataclass(frozen=True)
class Jet:
    """The forward sweep's result: f's value (N, o), tangents (N, t, o), second-order slots (N, s, o)."""

    value: Tensor
    tangents: Tensor
    second: Tensor
    inputs: tuple[ActivationInput, ...]  # per activation, when recorded


def forward_sweep(
    plan: TaylorPlan, x: Tensor, layout: JetLayout, directions: Tensor | None = None, record: bool = False
) -> Jet:
    """The jet of f at x (N, d) along ``directions`` (t, d) or (N, t, d) (None: the d unit vectors), in ``layout``.

    ``record``: keep each activation's input for a reverse sweep.
    """
    n, t = x.shape[0], layout.num_tangents
    if directions is not None and directions.dim() == 3:
        return _per_sample_sweep(plan, x, layout, directions, record)
    value = x  # the affine prefix's value (N, m) ...
    matrix = None if directions is None else directions.t()  # ... and its tangents (m, t); None = identity
    jet: Tensor | None = None  # (N, S, m) once the first activation has run
    pending_bias: Tensor | None = None  # a Linear's bias not yet added to slot 0
    inputs: list[ActivationInput] = []

    for step in plan.steps:
        if isinstance(step, LinearStep):
            if jet is None:
                value = F.linear(value, step.weight, step.bias)
                matrix = step.weight if matrix is None else step.weight @ matrix
            else:
                if pending_bias is not None:  # two Linear layers in a row
                    jet = torch.cat([(jet[:, 0] + pending_bias).unsqueeze(1), jet[:, 1:]], dim=1)
                jet = F.linear(jet, step.weight)
                pending_bias = step.bias
            continue
        name, params = step.function.name, step.function.params
        if jet is None:
            if matrix is None:
                matrix = torch.eye(t, dtype=x.dtype, device=x.device)
            if record:
                inputs.append(ActivationInput(value, matrix.t()))
            jet = jet_ops.jet_activation_first(value, matrix, name, params, layout)
        else:
            if record:
                a = jet[:, 0] if pending_bias is None else jet[:, 0] + pending_bias
                inputs.append(ActivationInput(a, jet[:, 1 : 1 + t]))
            jet = jet_ops.jet_activation(jet, pending_bias, name, params, layout)
            pending_bias = None

    if jet is None:  # an affine network: constant tangents, zero second derivatives
        if matrix is None:
            matrix = torch.eye(t, dtype=x.dtype, device=x.device)
        o = value.shape[1]
        tangents = matrix.t().unsqueeze(0).expand(n, t, o)
        return Jet(value, tangents, x.new_zeros((n, layout.num_second, o)), tuple(inputs))
    out_value = jet[:, 0] if pending_bias is None else jet[:, 0] + pending_bias
    return Jet(out_value, jet[:, 1 : 1 + t], jet[:, 1 + t :], tuple(inputs))


def _per_sample_sweep(plan: TaylorPlan, x: Tensor, layout: JetLayout, directions: Tensor, record: bool) -> Jet:
    """forward_sweep for directions (N, t, d) that differ per sample: the jet is materialised from the first layer."""
    n, t = x.shape[0], layout.num_tangents
    value, tangents = x, directions  # (N, m), (N, t, m)
    jet: Tensor | None = None
    pending_bias: Tensor | None = None
    inputs: list[ActivationInput] = []
    for step in plan.steps:
        if isinstance(step, LinearStep):
            if jet is None:
                value, tangents = F.linear(value, step.weight, step.bias), F.linear(tangents, step.weight)
            else:
                if pending_bias is not None:
                    jet = torch.cat([(jet[:, 0] + pending_bias).unsqueeze(1), jet[:, 1:]], dim=1)
                jet = F.linear(jet, step.weight)
                pending_bias = step.bias
            continue
        if jet is None:
            zeros = value.new_zeros((n, layout.num_second, value.shape[1]))
            jet = torch.cat([value.unsqueeze(1), tangents, zeros], dim=1)
        if record:
            a = jet[:, 0] if pending_bias is None else jet[:, 0] + pending_bias
            inputs.append(ActivationInput(a, jet[:, 1 : 1 + t]))
        jet = jet_ops.jet_activation(jet, pending_bias, step.function.name, step.function.params, layout)
        pending_bias = None
    if jet is None:  # an affine network
        return Jet(value, tangents, value.new_zeros((n, layout.num_second, value.shape[1])), ())
    out_value = jet[:, 0] if pending_bias is None else jet[:, 0] + pending_bias
    return Jet(out_value, jet[:, 1 : 1 + t], jet[:, 1 + t :], tuple(inputs))


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
        phi = elementwise_ops.elementwise_derivatives(recorded.preactivation, step.function.name, step.function.params, 2)
        curvature = delta * phi[2]
        curvatures.append(curvature)
        if directional:
            term = curvature.unsqueeze(1) * recorded.tangents
            delta_dot = term if delta_dot is None else delta_dot * phi[1].unsqueeze(1) + term
        delta = delta * phi[1]
    curvatures.reverse()
    return Adjoint(delta, tuple(curvatures), delta_dot)
