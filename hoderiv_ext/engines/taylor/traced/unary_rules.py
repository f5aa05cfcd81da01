"""Jet rules of the unary nonlinear ops: the fused kernels of the function table, the rest in torch ops.

Unary phi (v' = phi(v)):
    T'_k = phi'(v) T_k,  Q'_s = phi'(v) Q_s + phi''(v) T_{i_s} T_{j_s},
    collapsed: Q' = phi'(v) Q + phi''(v) sum_{k in C} T_k^2,
    a bi-Laplacian's extra slots: phi^(1..4)(v) and the chain rule of
    :mod:`~hoderiv_ext.engines.taylor.bilaplacian`.
Every unary op with a function of the compiled function table runs as ONE
fused kernel over the jet (``jet_activation``; ``jet_activation_first`` on the
affine prefix, whose tangents are the same for every sample; a pending Linear
bias folded in): tanh, sigmoid, softplus, silu, gelu, sin, cos, exp, relu,
leaky_relu, elu, log, log1p, expm1, sqrt, rsqrt, reciprocal, square, pow with
a scalar exponent (``x ** p``, also a 0-d constant tensor exponent; integer
exponents exact at 0 as torch's autograd), erf, atan, tan, sinh, cosh, abs.
A skip connection h + phi(v) whose phi has no other consumer is added by the
same kernel (``jet_activation``'s residual, asked for by the interpreter
through ``Slots.residual``). The product rules use the same kernels for x * x (square), 1 / x in a
quotient (reciprocal), std (sqrt) and layer norm (rsqrt). ``base ** x``
(``pow.Scalar``) applies the formula above in torch ops, with phi^(k) =
base^x log(base)^k written out (differentiable: the results go into training
losses).

Univariate jets (``Slots.univariate``, order K): T'_k = phi'(v) T_k and the
coefficients by composition (:func:`~hoderiv_ext.engines.taylor.traced.series.compose`)
with phi^(0..K) at the value: the table's functions through the fused op
``jet_univariate`` when the extension has it, else phi^(0..K) from the
elementwise op and the composition in torch ops; a torch-op rule
(:func:`torch_unary` with phi(v, order)) serves every order unless its phi's
``max_order`` attribute is below K, which refuses with
:class:`~hoderiv_ext.engines.taylor.traced.jets.OrderNotServed`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable

import torch
from torch import Tensor

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.core.functions import ATEN_FUNCTIONS
from hoderiv_ext.engines.taylor.traced import series
from hoderiv_ext.engines.taylor.traced.jets import FullJet, OrderNotServed, SeedJet, Slots, as_full, is_jet
from hoderiv_ext.engines.taylor.traced.rules import plain, rule
from hoderiv_ext.ops import elementwise as elementwise_ops
from hoderiv_ext.ops import jet as jet_ops
from hoderiv_ext.ops import jet_composite

aten = torch.ops.aten
AnyJet = SeedJet | FullJet
Phi = Callable[[Tensor, int], Sequence[Tensor]]

# ----------------------------------------------------------------------------- unary through the fused kernel


def kernel_unary(slots: Slots, jet: AnyJet, name: str, params: tuple[float, ...] = ()) -> FullJet:
    """phi(jet) for a function of the compiled table: one fused kernel over the jet.

    A bi-Laplacian's extra slots: a second fused kernel (``jet_bilaplacian_extra``)
    when the primal is (N, m); else, and on the affine prefix, phi^(0..4) at the value
    (the elementwise op) and :func:`~hoderiv_ext.ops.jet_composite.bilaplacian_extra_step`.
    """
    if slots.u:
        return _kernel_univariate(slots, jet, name, params)
    primal = jet.primal_shape
    n, m = primal[0], math.prod(primal[1:])
    if isinstance(jet, SeedJet) and jet.tangents is not None and jet.tangents.shape[0] == 1 and jet.value.dim() == 3:
        preactivation = jet.value[:, 0]
        shared = jet.tangents[0].contiguous()  # (t, m)
        data = jet_ops.jet_activation_first(preactivation, shared.t(), name, params, slots.layout)
        if slots.e:
            phi = elementwise_ops.elementwise_derivatives(preactivation, name, params, 4)
            extra = jet_composite.first_bilaplacian_extra_step(phi, slots.bilaplacian_tangents(shared, axis=0))
            data = torch.cat([data, extra], dim=1)
        _add_residual_in_place(slots, primal, data)
        return FullJet(data)
    if isinstance(jet, SeedJet):
        jet = jet.full(slots)
    bias = jet.bias if jet.bias is not None and len(primal) == 2 else None
    source = (jet.data if bias is not None else jet.settled().data).reshape(n, slots.s, m)
    if not slots.e:
        residual = _residual_of(slots, primal, source)
        data = jet_ops.jet_activation(source, bias, name, params, slots.layout, residual)
        slots.residual_added = residual is not None
    else:
        main_jet = source[:, :slots.main]
        main = jet_ops.jet_activation(main_jet, bias, name, params, slots.layout)
        if len(primal) == 2:  # (N, m): one fused kernel, reading the narrowed views without a copy
            assert slots.bilaplacian_dims is not None
            extra = jet_ops.jet_bilaplacian_extra(main_jet, bias, source[:, slots.main:], name, params, slots.t,
                                                  slots.bilaplacian_dims)
        else:
            preactivation = source[:, 0] if bias is None else source[:, 0] + bias
            extra = _extra(slots, elementwise_ops.elementwise_derivatives(preactivation, name, params, 4), source)
        data = torch.cat([main, extra], dim=1)
    return FullJet(data.reshape(n, slots.s, *primal[1:]))


def _residual_of(slots: Slots, primal: tuple[int, ...], source: Tensor) -> Tensor | None:
    """The data (N, S, m) of the jet the interpreter asks this activation to add to its output
    (``Slots.residual``, a skip connection h + phi(v)), or None when its kernel cannot add it: no residual,
    one of another shape or dtype (the add then broadcasts or promotes), or not a jet."""
    residual = slots.residual
    if not is_jet(residual) or len(primal) != 2 or residual.primal_shape != primal:  # type: ignore[union-attr]
        return None
    data = as_full(residual, slots).data  # type: ignore[arg-type]
    if data.dtype != source.dtype or data.device != source.device:
        return None
    return data.reshape(source.shape)


def _add_residual_in_place(slots: Slots, primal: tuple[int, ...], data: Tensor) -> None:
    """Add the interpreter's ``Slots.residual`` h to ``data`` (N, S, m), the fresh jet of the first layer's
    activation (its one consumer is the skip connection h + phi(v), so no other value sees the sum).

    An affine-prefix h adds its value and its shared tangents (its second-order slots are zero) without
    being materialised as a full jet; a full jet adds its data.
    """
    residual = slots.residual
    if not is_jet(residual) or len(primal) != 2 or residual.primal_shape != primal:  # type: ignore[union-attr]
        return
    if isinstance(residual, SeedJet):
        if residual.value.dtype != data.dtype or residual.value.device != data.device:
            return
        tangents = residual.tangent_tensor(slots)
        data[:, :1].add_(residual.value)
        data[:, 1:1 + slots.t].add_(tangents)
    else:
        source = residual.settled().data  # type: ignore[union-attr]
        if source.dtype != data.dtype or source.device != data.device:
            return
        data += source
    slots.residual_added = True


def fused_univariate() -> Callable[..., Tensor] | None:
    """The fused univariate step ``jet_univariate(jet, bias, function, params, num_tangents, order)`` when
    this build has it (looked up at call time: its wrapper in hoderiv_ext.ops.jet, then the registered op)."""
    function = getattr(jet_ops, "jet_univariate", None)
    if function is None or not hasattr(torch.ops.hoderiv_ext, "jet_univariate"):
        return None
    return function


def _kernel_univariate(slots: Slots, jet: AnyJet, name: str, params: tuple[float, ...]) -> FullJet:
    """phi(jet) of a univariate jet for a function of the compiled table (a pending Linear bias folded in)."""
    primal = jet.primal_shape
    n, m = primal[0], math.prod(primal[1:])
    if isinstance(jet, SeedJet):
        jet = jet.full(slots)
    bias = jet.bias if jet.bias is not None and len(primal) == 2 else None
    source = (jet.data if bias is not None else jet.settled().data).reshape(n, slots.s, m)
    fused = fused_univariate()
    if fused is not None:
        data = fused(source, bias, name, params, slots.t, slots.k)
    else:
        a = source[:, 0] if bias is None else source[:, 0] + bias
        data = univariate_unary(slots, source, elementwise_ops.elementwise_derivatives(a, name, params, slots.k))
    return FullJet(data.reshape(n, slots.s, *primal[1:]))


def univariate_unary(slots: Slots, data: Tensor, derivatives: Sequence[Tensor] | Tensor) -> Tensor:
    """The univariate jet (B, S, *rest) of phi(v) from v's ``data`` and phi^(0..K) at v (each (B, *rest))."""
    coefficients = series.compose(series.scaled(derivatives, slots.k), slots.coefficients(data))
    parts = [derivatives[0].unsqueeze(1), derivatives[1].unsqueeze(1) * data[:, 1:1 + slots.t],
             coefficients.reshape(data.shape[0], slots.u, *data.shape[2:])]
    return torch.cat(parts, dim=1)


FUSED_OPS: set[object] = set()  # the ops served by kernel_unary: a Linear's bias folds into them


def _fused(*ops: object) -> Callable[[Callable[..., FullJet]], Callable[..., FullJet]]:
    FUSED_OPS.update(ops)
    return rule(*ops)


def _table_rule(function_of: Callable[..., tuple[str, tuple[float, ...]]]) -> Callable[..., FullJet]:
    def apply(slots: Slots, jet: AnyJet, *args: object, **kwargs: object) -> FullJet:
        name, params = function_of(*args, **kwargs)  # NotServed for arguments the table has no function for
        return kernel_unary(slots, jet, name, params)
    return apply


for _op, _function_of in ATEN_FUNCTIONS.items():  # one fused kernel per op of the function table
    _fused(_op)(_table_rule(_function_of))


def power(slots: Slots, jet: AnyJet, exponent: float) -> FullJet:
    """jet ** exponent for a scalar exponent: the table's "pow" (x ** 2 as "square", without a pow call)."""
    return kernel_unary(slots, jet, *ATEN_FUNCTIONS[aten.pow.Tensor_Scalar](exponent))


@_fused(aten.pow.Tensor_Tensor)
def _pow_tensor(slots: Slots, a: object, b: object) -> FullJet:
    exponent = plain(b) if not is_jet(b) else None
    if is_jet(a) and isinstance(exponent, Tensor) and exponent.dim() == 0:
        if exponent.requires_grad:  # its gradient would be lost in the float
            raise NotServed("pow with an exponent that requires grad")
        return power(slots, a, float(exponent))  # type: ignore[arg-type]
    raise NotServed("pow with a tensor exponent")


# ----------------------------------------------------------------------------- unary in torch ops


def torch_unary(slots: Slots, jet: AnyJet, phi: Phi) -> FullJet:
    """phi(jet) by the formula of the module docstring; ``phi(v, order)`` returns phi, phi', ... phi^(order) at v.

    The extra slots of a bi-Laplacian take phi to order 4
    (:func:`~hoderiv_ext.ops.jet_composite.bilaplacian_extra_step`).
    """
    data = as_full(jet, slots).data
    if slots.u:
        served = getattr(phi, "max_order", None)
        if served is not None and slots.k > served:
            raise OrderNotServed(f"its Taylor rule has derivatives up to order {served}", served)
        return FullJet(univariate_unary(slots, data, phi(data[:, 0], slots.k)))
    if not slots.e:
        return FullJet(jet_composite.unary_step(data, phi(data[:, 0], 2), slots.layout))
    derivatives = phi(data[:, 0], 4)
    main = jet_composite.unary_step(data[:, :slots.main], derivatives, slots.layout)
    return FullJet(torch.cat([main, _extra(slots, derivatives, data)], dim=1))


def _extra(slots: Slots, derivatives: Sequence[Tensor], data: Tensor) -> Tensor:
    """The extra bi-Laplacian slots of phi(v) from v's full jet ``data`` and phi^(0..4) at v."""
    t = slots.t
    g = slots.bilaplacian_tangents(data[:, 1:1 + t])
    return jet_composite.bilaplacian_extra_step(derivatives, g, data[:, 1 + t:slots.main], data[:, slots.main:],
                                                slots.hessian_index())


def _exponential(base: float) -> Phi:
    """phi(v) = base ** v: phi^(k)(v) = base^v log(base)^k for k <= order (2, 4 for a bi-Laplacian, K <= 8 for a
    univariate jet), in torch ops (autograd differentiates them)."""
    log_base = math.log(base)

    def phi(v: Tensor, order: int) -> list[Tensor]:
        value = torch.pow(base, v)
        return [value * log_base ** k if k else value for k in range(order + 1)]
    return phi


@rule(aten.pow.Scalar)
def _pow_scalar_base(slots: Slots, base: float, jet: AnyJet) -> FullJet:
    if base <= 0:
        raise NotServed(f"pow with base {base} <= 0 and an exponent computed from x")
    return torch_unary(slots, jet, _exponential(float(base)))
