"""Elementwise functions the compiled kernels know, and how users name them.

A function can be given as
  * a name: "tanh", "sigmoid", "softplus", "sin", "cos", "exp", "silu",
    "gelu", "gelu_tanh", "relu", "leaky_relu", "elu", "identity", "log",
    "log1p", "expm1", "sqrt", "rsqrt", "reciprocal", "square", "pow"
    (parameter ``exponent``: x ** exponent), "erf", "atan", "tan", "sinh",
    "cosh", "abs", "scaled_sin" (parameter ``frequency``: sin(frequency * x),
    a SIREN activation);
  * an activation module instance with its parameters: nn.Tanh(),
    nn.Softplus(beta=2, threshold=10), nn.GELU(approximate="tanh"),
    nn.LeakyReLU(0.2), nn.ELU(alpha=0.5), nn.SiLU(), nn.ReLU(), nn.Identity();
  * a torch function: torch.tanh, torch.sin, torch.log, torch.sqrt, F.silu, ...
    (``torch.pow`` takes an exponent: pass ``by_name("pow", exponent=p)``;
    the name "pow" alone is x ** 2);
  * a :class:`Polynomial` (coefficients, possibly requiring grad);
  * any other elementwise callable, served by autograd only.

The names, their order and their parameter counts come from the compiled
extension's one function table (csrc/include/hoderiv/functions.def, read
through :func:`hoderiv_ext.ops.library.function_table`); this module adds
what only Python knows: each function's torch implementation (what the
autograd engine differentiates, so the tests compare the two), its default
parameters and the modules and torch functions that compute it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hoderiv_ext.core.errors import NotServed
from hoderiv_ext.ops.library import function_table


@dataclass(frozen=True)
class KernelFunction:
    """An elementwise function the kernels serve: name, scalar params, and its torch implementation."""

    name: str
    params: tuple[float, ...] = ()
    torch_function: Callable[[Tensor], Tensor] = field(default=lambda x: x, compare=False, repr=False)

    def __call__(self, x: Tensor) -> Tensor:
        return self.torch_function(x)


def _softplus(beta: float = 1.0, threshold: float = 20.0) -> KernelFunction:
    if beta == 0:
        raise ValueError("softplus: beta must be non-zero")
    return KernelFunction("softplus", (float(beta), float(threshold)), lambda x: F.softplus(x, beta, threshold))


def _leaky_relu(negative_slope: float = 0.01) -> KernelFunction:
    return KernelFunction("leaky_relu", (float(negative_slope),), lambda x: F.leaky_relu(x, negative_slope))


def _elu(alpha: float = 1.0) -> KernelFunction:
    return KernelFunction("elu", (float(alpha),), lambda x: F.elu(x, alpha))


def _pow(exponent: float = 2.0) -> KernelFunction:
    """x ** p for a scalar p (torch.pow with a Python number): phi^(k)(x) = p (p-1) ... (p-k+1) x^(p-k),
    exactly 0 above order p for an integer p >= 0 (torch's autograd convention, also at x = 0)."""
    exponent = float(exponent)
    if not math.isfinite(exponent):
        raise ValueError(f"pow: exponent must be finite, got {exponent}")
    return KernelFunction("pow", (exponent,), lambda x: torch.pow(x, exponent))


def _scaled_sin(frequency: float = 1.0) -> KernelFunction:
    """sin(w x) for a scalar frequency w (a SIREN layer's omega_0): phi^(k)(x) = w^k sin(w x + k pi / 2)."""
    frequency = float(frequency)
    if not math.isfinite(frequency):
        raise ValueError(f"scaled_sin: frequency must be finite, got {frequency}")
    return KernelFunction("scaled_sin", (frequency,), lambda x: torch.sin(frequency * x))


def _plain(name: str, torch_function: Callable[[Tensor], Tensor]) -> Callable[[], KernelFunction]:
    return lambda: KernelFunction(name, (), torch_function)


_BY_NAME: dict[str, Callable[..., KernelFunction]] = {
    "identity": lambda: KernelFunction("identity", (), lambda x: x),
    "tanh": lambda: KernelFunction("tanh", (), torch.tanh),
    "sigmoid": lambda: KernelFunction("sigmoid", (), torch.sigmoid),
    "softplus": _softplus,
    "sin": lambda: KernelFunction("sin", (), torch.sin),
    "cos": lambda: KernelFunction("cos", (), torch.cos),
    "exp": lambda: KernelFunction("exp", (), torch.exp),
    "silu": lambda: KernelFunction("silu", (), F.silu),
    "gelu": lambda: KernelFunction("gelu", (), lambda x: F.gelu(x, approximate="none")),
    "gelu_tanh": lambda: KernelFunction("gelu_tanh", (), lambda x: F.gelu(x, approximate="tanh")),
    "relu": lambda: KernelFunction("relu", (), F.relu),
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "log": _plain("log", torch.log),
    "log1p": _plain("log1p", torch.log1p),
    "expm1": _plain("expm1", torch.expm1),
    "sqrt": _plain("sqrt", torch.sqrt),
    "rsqrt": _plain("rsqrt", torch.rsqrt),
    "reciprocal": _plain("reciprocal", torch.reciprocal),
    "square": _plain("square", torch.square),
    "pow": _pow,
    "erf": _plain("erf", torch.erf),
    "atan": _plain("atan", torch.atan),
    "tan": _plain("tan", torch.tan),
    "sinh": _plain("sinh", torch.sinh),
    "cosh": _plain("cosh", torch.cosh),
    "abs": _plain("abs", torch.abs),
    "scaled_sin": _scaled_sin,
}


def _kernel_function_names() -> tuple[str, ...]:
    """The compiled table's names (every one must have a torch implementation here), or this module's."""
    table = function_table()
    if table is None:
        return tuple(_BY_NAME)
    names = tuple(entry["name"] for entry in table)
    missing = [name for name in names if name not in _BY_NAME]
    if missing:  # pragma: no cover - a build whose table this Python package does not know
        raise ImportError(f"hoderiv_ext: the compiled function table has functions unknown to Python: {missing}")
    return names


KERNEL_FUNCTION_NAMES: tuple[str, ...] = _kernel_function_names()
# For membership tests: under torch.compile, `in` on the tuple guards on each of its names.
_KERNEL_FUNCTION_SET: frozenset[str] = frozenset(KERNEL_FUNCTION_NAMES)

_TORCH_FUNCTIONS: dict[Callable, str] = {
    torch.tanh: "tanh",
    torch.sigmoid: "sigmoid",
    torch.sin: "sin",
    torch.cos: "cos",
    torch.exp: "exp",
    torch.relu: "relu",
    F.relu: "relu",
    F.silu: "silu",
    F.tanh: "tanh",
    F.sigmoid: "sigmoid",
    F.softplus: "softplus",
    F.gelu: "gelu",
    F.elu: "elu",
    F.leaky_relu: "leaky_relu",
    torch.log: "log",
    torch.log1p: "log1p",
    torch.special.log1p: "log1p",
    torch.expm1: "expm1",
    torch.special.expm1: "expm1",
    torch.sqrt: "sqrt",
    torch.rsqrt: "rsqrt",
    torch.reciprocal: "reciprocal",
    torch.square: "square",
    torch.erf: "erf",
    torch.special.erf: "erf",
    torch.atan: "atan",
    torch.arctan: "atan",
    torch.tan: "tan",
    torch.sinh: "sinh",
    torch.cosh: "cosh",
    torch.abs: "abs",
    torch.absolute: "abs",
}


aten = torch.ops.aten


def _plain_op(name: str) -> Callable[..., tuple[str, tuple[float, ...]]]:
    return lambda: (name, ())


def _gelu_op(*, approximate: str = "none") -> tuple[str, tuple[float, ...]]:
    if approximate not in ("none", "tanh"):
        raise NotServed(f"gelu with approximate={approximate!r}")
    return ("gelu_tanh" if approximate == "tanh" else "gelu"), ()


def _elu_op(alpha: float = 1.0, scale: float = 1.0, input_scale: float = 1.0) -> tuple[str, tuple[float, ...]]:
    if scale != 1 or input_scale != 1:
        raise NotServed("elu with scale or input_scale other than 1 (selu, celu)")
    return "elu", (float(alpha),)


def _pow_op(exponent: float) -> tuple[str, tuple[float, ...]]:
    """x ** p for a number p: the table's "pow" (x ** 2 as "square", without a pow call)."""
    exponent = float(exponent)
    if not math.isfinite(exponent):
        raise NotServed(f"pow with the exponent {exponent}")
    return ("square", ()) if exponent == 2.0 else ("pow", (exponent,))


# The aten ops that apply a function of the table to their first argument, as a traced graph records them:
# each maps the op's other arguments to (name, params), or raises NotServed for arguments the table has no
# function for. The traced programs' unary rules and the plans of user-defined activation modules read it.
ATEN_FUNCTIONS: dict[object, Callable[..., tuple[str, tuple[float, ...]]]] = {
    **{op: _plain_op(name) for op, name in (
        (aten.tanh.default, "tanh"), (aten.sigmoid.default, "sigmoid"), (aten.sin.default, "sin"),
        (aten.cos.default, "cos"), (aten.exp.default, "exp"), (aten.relu.default, "relu"),
        (aten.silu.default, "silu"), (aten.log.default, "log"), (aten.log1p.default, "log1p"),
        (aten.expm1.default, "expm1"), (aten.sqrt.default, "sqrt"), (aten.rsqrt.default, "rsqrt"),
        (aten.reciprocal.default, "reciprocal"), (aten.square.default, "square"), (aten.erf.default, "erf"),
        (aten.atan.default, "atan"), (aten.tan.default, "tan"), (aten.sinh.default, "sinh"),
        (aten.cosh.default, "cosh"), (aten.abs.default, "abs"))},
    aten.softplus.default: lambda beta=1.0, threshold=20.0: ("softplus", (float(beta), float(threshold))),
    aten.leaky_relu.default: lambda negative_slope=0.01: ("leaky_relu", (float(negative_slope),)),
    aten.gelu.default: _gelu_op,
    aten.elu.default: _elu_op,
    aten.pow.Tensor_Scalar: _pow_op,
}


def function_of_aten_op(target: object, args: Sequence[object],
                        kwargs: dict[str, object]) -> tuple[str, tuple[float, ...]] | None:
    """(name, params) of the kernel function the aten op ``target`` computes of its first argument, given its
    other arguments ``args`` and ``kwargs``; None when the table has none for them."""
    function_of = ATEN_FUNCTIONS.get(target)
    if function_of is None:
        return None
    try:
        return function_of(*args, **kwargs)
    except (NotServed, TypeError, ValueError):
        return None


def activation_from_module(module: nn.Module) -> KernelFunction | None:
    """The kernel function an activation module computes, or None if unsupported.

    Matches exact types, so a subclass overriding ``forward`` is not mistaken
    for its parent.
    """
    kind = type(module)
    if kind is nn.Identity:
        return by_name("identity")
    if kind is nn.Tanh:
        return by_name("tanh")
    if kind is nn.Sigmoid:
        return by_name("sigmoid")
    if kind is nn.Softplus:
        return _softplus(module.beta, module.threshold)
    if kind is nn.SiLU:
        return by_name("silu")
    if kind is nn.GELU:
        if module.approximate not in ("none", "tanh"):
            return None
        return by_name("gelu" if module.approximate == "none" else "gelu_tanh")
    if kind is nn.ReLU:
        return by_name("relu")
    if kind is nn.LeakyReLU:
        return _leaky_relu(module.negative_slope)
    if kind is nn.ELU:
        return _elu(module.alpha)
    return None


def by_name(name: str, **params: float) -> KernelFunction:
    """The kernel function called ``name``, with default parameters unless given by keyword.

    ``by_name("pow", exponent=0.5)`` is x ** 0.5; ``by_name("softplus", beta=2.0)``.
    """
    if name not in _KERNEL_FUNCTION_SET:
        raise ValueError(
            f"fn: unknown function name {name!r}; known names: {', '.join(KERNEL_FUNCTION_NAMES)} "
            "(or pass any elementwise callable, served by autograd)"
        )
    return _BY_NAME[name](**params)


class Polynomial:
    """p(x) = sum_j coefficients[j] * x**j, coefficients in ascending powers.

    ``coefficients`` is a 1-D tensor (it may require grad: derivatives are then
    differentiable with respect to it) or a sequence of numbers. x**3 + 2x is
    ``Polynomial([0, 2, 0, 1])``.
    """

    def __init__(self, coefficients: Tensor | Sequence[float]) -> None:
        if isinstance(coefficients, Tensor):
            if coefficients.dim() != 1 or coefficients.numel() == 0:
                raise ValueError(
                    f"coefficients must be a non-empty 1-D tensor, got shape {tuple(coefficients.shape)}"
                )
            if not (coefficients.is_floating_point()):
                raise TypeError(f"coefficients must be a floating-point tensor, got {coefficients.dtype}")
            self.coefficients: Tensor | tuple[float, ...] = coefficients
        else:
            values = tuple(float(c) for c in coefficients)
            if not values:
                raise ValueError("coefficients must not be empty")
            self.coefficients = values

    @property
    def degree(self) -> int:
        return len(self.coefficients) - 1

    def coefficients_for(self, x: Tensor) -> Tensor:
        """The coefficients as a tensor on x's device and dtype (differentiable cast)."""
        if isinstance(self.coefficients, Tensor):
            if self.coefficients.device != x.device:
                raise ValueError(
                    f"coefficients are on {self.coefficients.device} but x is on {x.device}: "
                    "tensors on different devices"
                )
            return self.coefficients.to(dtype=x.dtype)
        return torch.tensor(self.coefficients, dtype=x.dtype, device=x.device)

    def __call__(self, x: Tensor) -> Tensor:
        coefficients = self.coefficients_for(x)
        result = coefficients[-1].expand_as(x)
        for j in range(coefficients.shape[0] - 2, -1, -1):
            result = result * x + coefficients[j]
        return result

    def __repr__(self) -> str:
        return f"Polynomial({self.coefficients!r})"


ElementwiseSpec = KernelFunction | Polynomial | Callable[[Tensor], Tensor]


def resolve_elementwise(fn: object) -> ElementwiseSpec:
    """Turn a user's ``fn`` into a KernelFunction, a Polynomial, or a plain callable."""
    if isinstance(fn, (KernelFunction, Polynomial)):
        return fn
    if isinstance(fn, str):
        return by_name(fn)
    if isinstance(fn, nn.Module):
        known = activation_from_module(fn)
        return known if known is not None else fn
    if callable(fn):
        name = _TORCH_FUNCTIONS.get(fn)  # type: ignore[call-overload]
        return by_name(name) if name is not None else fn  # type: ignore[return-value]
    raise TypeError(
        f"fn must be a function name, an activation module, a Polynomial or a callable, got {type(fn).__name__}"
    )


def describe(spec: ElementwiseSpec) -> str:
    if isinstance(spec, KernelFunction):
        return spec.name
    if isinstance(spec, Polynomial):
        return f"polynomial of degree {spec.degree}"
    return getattr(spec, "__name__", type(spec).__name__)


__all__ = ["KernelFunction", "Polynomial", "KERNEL_FUNCTION_NAMES", "resolve_elementwise", "by_name"]
