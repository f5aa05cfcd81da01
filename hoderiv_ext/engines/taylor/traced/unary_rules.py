"""Jet rules of the unary nonlinear ops: the fused kernels of the function table, the rest in torch ops.

Unary phi (v' = phi(v)):
    T'_k = phi'(v) T_k,  Q'_s = phi'(v) Q_s + phi''(v) T_{i_s} T_{j_s},
    collapsed: Q' = phi'(v) Q + phi''(v) sum_{k in C} T_k^2.
A function of the compiled function table (tanh, sigmoid, softplus, silu,
gelu, sin, cos, exp, relu, leaky_relu, elu) runs as ONE fused kernel over the
jet (``jet_activation``; ``jet_activation_first`` on the affine prefix, whose
tangents are the same for every sample; a pending Linear bias folded in). The
others (log, log1p, expm1, sqrt, rsqrt, reciprocal, pow with a scalar
exponent, erf, atan, tan, sinh, cosh, abs) apply the formula above in torch
ops, with phi, phi', phi'' written out below (differentiable: the results go
into training losses).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.engines.taylor.traced.jets import FullJet, SeedJet, Slots, as_full, is_jet
from hoderiv_ext.engines.taylor.traced.rules import RULES, plain, rule
from hoderiv_ext.ops import jet as jet_ops
from hoderiv_ext.ops import jet_composite

aten = torch.ops.aten
AnyJet = SeedJet | FullJet
Phi = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]

# ----------------------------------------------------------------------------- unary through the fused kernel


def kernel_unary(slots: Slots, jet: AnyJet, name: str, params: tuple[float, ...] = ()) -> FullJet:
    """phi(jet) for a function of the compiled table: one fused kernel over the jet."""
    primal = jet.primal_shape
    n, m = primal[0], math.prod(primal[1:])
    if isinstance(jet, SeedJet) and jet.tangents is not None and jet.tangents.shape[0] == 1 and jet.value.dim() == 3:
        preactivation = jet.value[:, 0]
        shared = jet.tangents[0].contiguous()  # (t, m)
        data = jet_ops.jet_activation_first(preactivation, shared.t(), name, params, slots.layout)
        return FullJet(data)
    if isinstance(jet, SeedJet):
        jet = jet.full(slots)
    bias = jet.bias if jet.bias is not None and len(primal) == 2 else None
    source = jet.data if bias is not None else jet.settled().data
    data = jet_ops.jet_activation(source.reshape(n, slots.s, m), bias, name, params, slots.layout)
    return FullJet(data.reshape(n, slots.s, *primal[1:]))


FUSED_OPS: set[object] = set()  # the ops served by kernel_unary: a Linear's bias folds into them


def _fused(*ops: object) -> Callable[[Callable[..., FullJet]], Callable[..., FullJet]]:
    FUSED_OPS.update(ops)
    return rule(*ops)


def _kernel(name: str, params: Callable[..., tuple[float, ...]] = lambda *a, **k: ()) -> Callable[..., FullJet]:
    def apply(slots: Slots, jet: AnyJet, *args: object, **kwargs: object) -> FullJet:
        return kernel_unary(slots, jet, name, params(*args, **kwargs))
    return apply


for _op, _name in ((aten.tanh.default, "tanh"), (aten.sigmoid.default, "sigmoid"), (aten.sin.default, "sin"),
                   (aten.cos.default, "cos"), (aten.exp.default, "exp"), (aten.relu.default, "relu"),
                   (aten.silu.default, "silu")):
    _fused(_op)(_kernel(_name))
_fused(aten.softplus.default)(_kernel("softplus", lambda beta=1.0, threshold=20.0: (float(beta), float(threshold))))
_fused(aten.leaky_relu.default)(_kernel("leaky_relu", lambda slope=0.01: (float(slope),)))


@_fused(aten.gelu.default)
def _gelu(slots: Slots, jet: AnyJet, *, approximate: str = "none") -> FullJet:
    return kernel_unary(slots, jet, "gelu_tanh" if approximate == "tanh" else "gelu")


@_fused(aten.elu.default)
def _elu(slots: Slots, jet: AnyJet, alpha: float = 1.0, scale: float = 1.0, input_scale: float = 1.0) -> AnyJet:
    if scale != 1 or input_scale != 1:
        raise NotServed("elu with scale or input_scale other than 1 (selu, celu)")
    return kernel_unary(slots, jet, "elu", (float(alpha),))


# ----------------------------------------------------------------------------- unary in torch ops


def torch_unary(slots: Slots, jet: AnyJet, phi: Phi) -> FullJet:
    """phi(jet) by the formula of the module docstring; ``phi(v)`` returns (phi, phi', phi'') at v."""
    data = as_full(jet, slots).data
    return FullJet(jet_composite.unary_step(data, phi(data[:, 0]), slots.layout))


def _log(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r = v.reciprocal()
    return v.log(), r, -r * r


def _log1p(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r = (1 + v).reciprocal()
    return v.log1p(), r, -r * r


def _expm1(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    e = v.exp()
    return v.expm1(), e, e


def _sqrt(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    s = v.sqrt()
    first = 0.5 / s
    return s, first, -0.5 * first / v


def _rsqrt(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r = v.rsqrt()
    first = -0.5 * r / v
    return r, first, -1.5 * first / v


def _reciprocal(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r = v.reciprocal()
    return r, -r * r, 2 * r * r * r


def _erf(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    first = (2 / math.sqrt(math.pi)) * torch.exp(-v * v)
    return torch.erf(v), first, -2 * v * first


def _atan(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    first = (1 + v * v).reciprocal()
    return v.atan(), first, -2 * v * first * first


def _tan(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    t = v.tan()
    first = 1 + t * t
    return t, first, 2 * t * first


def _sinh(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    s, c = v.sinh(), v.cosh()
    return s, c, s


def _cosh(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    s, c = v.sinh(), v.cosh()
    return c, s, c


def _abs(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return v.abs(), v.sign(), torch.zeros_like(v)


def _power(exponent: float) -> Phi:
    def phi(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if exponent == 2:
            return v * v, 2 * v, torch.full_like(v, 2.0)
        if exponent == 1:
            return v, torch.ones_like(v), torch.zeros_like(v)
        if exponent == 0:
            return torch.ones_like(v), torch.zeros_like(v), torch.zeros_like(v)
        low = v.pow(exponent - 2)
        return low * v * v, exponent * low * v, exponent * (exponent - 1) * low
    return phi


def _exponential(base: float) -> Phi:
    log_base = math.log(base)

    def phi(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        value = torch.pow(base, v)
        return value, log_base * value, log_base * log_base * value
    return phi


for _op, _phi in ((aten.log.default, _log), (aten.log1p.default, _log1p), (aten.expm1.default, _expm1),
                  (aten.sqrt.default, _sqrt), (aten.rsqrt.default, _rsqrt), (aten.reciprocal.default, _reciprocal),
                  (aten.erf.default, _erf), (aten.atan.default, _atan), (aten.tan.default, _tan),
                  (aten.sinh.default, _sinh), (aten.cosh.default, _cosh), (aten.abs.default, _abs)):
    RULES[_op] = (lambda phi: lambda slots, jet: torch_unary(slots, jet, phi))(_phi)


@rule(aten.square.default)
def _square(slots: Slots, jet: AnyJet) -> FullJet:
    return torch_unary(slots, jet, _power(2.0))


@rule(aten.pow.Tensor_Scalar)
def _pow(slots: Slots, jet: AnyJet, exponent: float) -> FullJet:
    return torch_unary(slots, jet, _power(float(exponent)))


@rule(aten.pow.Scalar)
def _pow_scalar_base(slots: Slots, base: float, jet: AnyJet) -> FullJet:
    if base <= 0:
        raise NotServed(f"pow with base {base} <= 0 and an exponent computed from x")
    return torch_unary(slots, jet, _exponential(float(base)))


@rule(aten.pow.Tensor_Tensor)
def _pow_tensor(slots: Slots, a: object, b: object) -> FullJet:
    if is_jet(a) and not is_jet(b) and isinstance(plain(b), Tensor) and plain(b).dim() == 0:  # type: ignore[union-attr]
        return torch_unary(slots, a, _power(float(plain(b))))  # type: ignore[arg-type]
    raise NotServed("pow with a tensor exponent")
