"""Jet rules of the unary nonlinear ops: the fused kernels of the function table, the rest in torch ops.

Unary phi (v' = phi(v)):
    T'_k = phi'(v) T_k,  Q'_s = phi'(v) Q_s + phi''(v) T_{i_s} T_{j_s},
    collapsed: Q' = phi'(v) Q + phi''(v) sum_{k in C} T_k^2,
    a bi-Laplacian's extra slots: phi^(1..4)(v) and the chain rule of
    :mod:`~hoderiv_ext.engines.taylor.bilaplacian`.
A function of the compiled function table (tanh, sigmoid, softplus, silu,
gelu, sin, cos, exp, relu, leaky_relu, elu) runs as ONE fused kernel over the
jet (``jet_activation``; ``jet_activation_first`` on the affine prefix, whose
tangents are the same for every sample; a pending Linear bias folded in). The
others (log, log1p, expm1, sqrt, rsqrt, reciprocal, pow with a scalar
exponent, erf, atan, tan, sinh, cosh, abs) apply the formula above in torch
ops, with phi, phi', phi'' (to phi'''' for a bi-Laplacian) written out below
(differentiable: the results go into training losses).

Univariate jets (``Slots.univariate``, order K): T'_k = phi'(v) T_k and the
coefficients by composition (:func:`~hoderiv_ext.engines.taylor.traced.series.compose`)
with phi^(0..K) at the value: the table's functions through the fused op
``jet_univariate`` when the extension has it, else phi^(0..K) from the
elementwise op and the composition in torch ops; the torch-op functions
above have closed forms or short recurrences for every order (phi(v, order)
below; a phi whose ``max_order`` attribute is below K refuses with
:class:`~hoderiv_ext.engines.taylor.traced.jets.OrderNotServed`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable

import torch
from torch import Tensor

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.engines.taylor.traced import series
from hoderiv_ext.engines.taylor.traced.jets import FullJet, OrderNotServed, SeedJet, Slots, as_full, is_jet
from hoderiv_ext.engines.taylor.traced.rules import RULES, plain, rule
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
        return FullJet(data)
    if isinstance(jet, SeedJet):
        jet = jet.full(slots)
    bias = jet.bias if jet.bias is not None and len(primal) == 2 else None
    source = (jet.data if bias is not None else jet.settled().data).reshape(n, slots.s, m)
    if not slots.e:
        data = jet_ops.jet_activation(source, bias, name, params, slots.layout)
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


# phi^(k)(v) for k <= order (2, 4 for a bi-Laplacian, K <= 8 for a univariate jet), each written out (autograd
# differentiates them): a closed form or a short recurrence for every order.

def _log(v: Tensor, order: int) -> list[Tensor]:
    return [v.log(), *_reciprocal_powers(v.reciprocal(), order)]


def _log1p(v: Tensor, order: int) -> list[Tensor]:
    return [v.log1p(), *_reciprocal_powers((1 + v).reciprocal(), order)]


def _reciprocal_powers(r: Tensor, order: int) -> list[Tensor]:
    """d^k/dv^k log v for k = 1..order, from r = 1/v: (-1)^(k-1) (k-1)! r^k."""
    out, power = [], r
    for k in range(1, order + 1):
        out.append(power if k == 1 else ((-1) ** (k - 1) * math.factorial(k - 1)) * power)
        power = power * r
    return out


def _expm1(v: Tensor, order: int) -> list[Tensor]:
    e = v.exp()
    return [v.expm1(), *([e] * order)]


def _falling(exponent: float, k: int) -> float:
    """exponent (exponent - 1) ... (exponent - k + 1)."""
    return math.prod(exponent - i for i in range(k))


def _scaled_powers(value: Tensor, v: Tensor, exponent: float, order: int) -> list[Tensor]:
    """d^k/dv^k v^exponent = falling(exponent, k) value / v^k for k = 0..order, value = v^exponent."""
    out, quotient = [value], value
    for k in range(1, order + 1):
        quotient = quotient / v
        out.append(_falling(exponent, k) * quotient)
    return out


def _sqrt(v: Tensor, order: int) -> list[Tensor]:
    return _scaled_powers(v.sqrt(), v, 0.5, order)


def _rsqrt(v: Tensor, order: int) -> list[Tensor]:
    return _scaled_powers(v.rsqrt(), v, -0.5, order)


def _reciprocal(v: Tensor, order: int) -> list[Tensor]:
    r = v.reciprocal()
    out, power = [r], r
    for k in range(1, order + 1):
        power = power * r
        out.append(((-1) ** k * math.factorial(k)) * power)
    return out


def _erf(v: Tensor, order: int) -> list[Tensor]:
    first = (2 / math.sqrt(math.pi)) * torch.exp(-v * v)
    out = [torch.erf(v), first, -2 * v * first]
    if 2 < order <= 4:  # erf^(k+1) = H-polynomials times first: (4v^2 - 2), (12v - 8v^3)
        square = v * v
        out += [(4 * square - 2) * first, (12 - 8 * square) * v * first]
    elif order > 4:  # erf^(k+1) = (-1)^k H_k(v) first, H_{k+1} = 2v H_k - 2k H_{k-1} (physicists' Hermite)
        previous, hermite = torch.ones_like(v), 2 * v
        for k in range(2, order):
            previous, hermite = hermite, 2 * v * hermite - 2 * (k - 1) * previous
            out.append((hermite if k % 2 == 0 else -hermite) * first)
    return out[:order + 1]


def _atan(v: Tensor, order: int) -> list[Tensor]:
    r = (1 + v * v).reciprocal()
    out = [v.atan(), r, -2 * v * r * r]
    if 2 < order <= 4:
        square, cube = v * v, r * r * r
        out += [(6 * square - 2) * cube, 24 * v * (1 - square) * cube * r]
    elif order > 4:  # g = atan' = 1 / (1 + v^2): g^(n+1) = -r (2 (n+1) v g^(n) + n (n+1) g^(n-1))
        for n in range(1, order - 1):
            out.append(-r * (2 * (n + 1) * v * out[n + 1] + n * (n + 1) * out[n]))
    return out[:order + 1]


def _tan_polynomials(order: int) -> list[list[int]]:
    """Integer coefficients (lowest power first) of P_k with tan^(k)(v) = P_k(tan v), k = 0..order:
    P_0 = t, P_{k+1} = P_k' (1 + t^2)."""
    polynomials = [[0, 1]]
    for _ in range(order):
        p = polynomials[-1]
        derivative = [i * p[i] for i in range(1, len(p))]
        following = [0] * (len(derivative) + 2)
        for i, coefficient in enumerate(derivative):
            following[i] += coefficient
            following[i + 2] += coefficient
        polynomials.append(following)
    return polynomials


def _tan(v: Tensor, order: int) -> list[Tensor]:
    t = v.tan()
    s = 1 + t * t  # sec^2
    out = [t, s, 2 * t * s]
    if 2 < order <= 4:
        out += [2 * s * s + 4 * t * t * s, (16 * s + 8 * t * t) * t * s]
    elif order > 4:
        for polynomial in _tan_polynomials(order)[3:]:
            value = torch.full_like(t, float(polynomial[-1]))
            for coefficient in reversed(polynomial[:-1]):  # Horner's rule in t
                value = value * t + coefficient
            out.append(value)
    return out[:order + 1]


def _sinh(v: Tensor, order: int) -> list[Tensor]:
    s, c = v.sinh(), v.cosh()
    return [s if k % 2 == 0 else c for k in range(order + 1)]


def _cosh(v: Tensor, order: int) -> list[Tensor]:
    s, c = v.sinh(), v.cosh()
    return [c if k % 2 == 0 else s for k in range(order + 1)]


def _abs(v: Tensor, order: int) -> list[Tensor]:
    zero = torch.zeros_like(v)
    return [v.abs(), v.sign(), *([zero] * (order - 1))]


def _power(exponent: float) -> Phi:
    def phi(v: Tensor, order: int) -> list[Tensor]:
        if exponent == int(exponent) and exponent >= 0:  # a polynomial: exact at v = 0, zeros above its degree
            e = int(exponent)
            return [_falling(exponent, k) * v.pow(e - k) if k < e else
                    torch.full_like(v, _falling(exponent, k)) for k in range(order + 1)]
        low = v.pow(exponent - order)
        out = [low * v.pow(order - k) * _falling(exponent, k) for k in range(order + 1)]
        return out
    return phi


def _exponential(base: float) -> Phi:
    log_base = math.log(base)

    def phi(v: Tensor, order: int) -> list[Tensor]:
        value = torch.pow(base, v)
        return [value * log_base ** k if k else value for k in range(order + 1)]
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
