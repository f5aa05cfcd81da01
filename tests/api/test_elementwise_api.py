"""elementwise_derivatives() (api/elementwise.py): how fn is named, which backend serves it, bad input refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hoderiv_ext import Polynomial, elementwise_derivatives
from hoderiv_ext.core.functions import by_name


def test_torch_functions_map_to_kernels():
    x = torch.linspace(0.1, 2, 9, dtype=torch.float64)  # inside every domain below
    pairs = [(torch.tanh, "tanh"), (torch.sin, "sin"), (F.silu, "silu"), (F.gelu, "gelu"), (torch.log, "log"),
             (torch.log1p, "log1p"), (torch.special.log1p, "log1p"), (torch.expm1, "expm1"),
             (torch.special.expm1, "expm1"), (torch.sqrt, "sqrt"), (torch.rsqrt, "rsqrt"),
             (torch.reciprocal, "reciprocal"), (torch.square, "square"), (torch.erf, "erf"),
             (torch.special.erf, "erf"), (torch.atan, "atan"), (torch.arctan, "atan"), (torch.tan, "tan"),
             (torch.sinh, "sinh"), (torch.cosh, "cosh"), (torch.abs, "abs"), (torch.absolute, "abs")]
    for fn, name in pairs:
        got = elementwise_derivatives(fn, x, 2, backend="kernel")  # a plain callable would be refused here
        expected = elementwise_derivatives(name, x, 2, backend="kernel")
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_pow_takes_its_exponent_by_keyword():
    x = torch.linspace(0.1, 2, 9, dtype=torch.float64)
    power = by_name("pow", exponent=1.5)
    assert power.params == (1.5,)
    y, dy, d2y = elementwise_derivatives(power, x, 2, backend="kernel")
    torch.testing.assert_close(y, x**1.5)
    torch.testing.assert_close(dy, 1.5 * x**0.5)
    torch.testing.assert_close(d2y, 0.75 * x**-0.5)
    torch.testing.assert_close(elementwise_derivatives("pow", x, 1, backend="kernel")[1], 2 * x)  # default: x ** 2
    with pytest.raises(ValueError, match="exponent must be finite"):
        by_name("pow", exponent=float("inf"))
    with pytest.raises(RuntimeError, match="pow parameter exponent must be finite"):
        torch.ops.hoderiv_ext.elementwise_derivatives(x, "pow", [float("nan")], 1)
    with pytest.raises(RuntimeError, match=r"function 'pow' takes 1 parameter\(s\) \(exponent\)"):
        torch.ops.hoderiv_ext.elementwise_derivatives(x, "pow", [], 1)


def test_auto_backend_on_cpu_uses_the_kernels_where_they_measured_faster(monkeypatch):
    import hoderiv_ext.api.elementwise as module
    from hoderiv_ext.engines.select import CPU_ELEMENTWISE_KERNEL_BELOW

    calls = []
    original = module.autograd_elementwise_derivatives
    monkeypatch.setattr(module, "autograd_elementwise_derivatives", lambda *a, **k: calls.append(a) or original(*a, **k))
    elementwise_derivatives("tanh", torch.randn(1 << 20), 2)  # the kernels at every size
    elementwise_derivatives("sin", torch.randn(1 << 20), 2)  # vectorised sin_cos: the kernels at every size
    elementwise_derivatives(Polynomial([0.0, 2.0, 0.0, 1.0]), torch.randn(1 << 20), 2)
    elementwise_derivatives("exp", torch.randn(CPU_ELEMENTWISE_KERNEL_BELOW["exp"] - 1), 2)
    assert calls == []
    elementwise_derivatives("exp", torch.randn(CPU_ELEMENTWISE_KERNEL_BELOW["exp"]), 2)  # torch's exp is faster
    assert len(calls) == 1
    elementwise_derivatives("exp", torch.randn(1 << 15), 2, backend="kernel")
    assert len(calls) == 1
    elementwise_derivatives(torch.sinc, torch.randn(8), 2)  # not a kernel function: autograd
    assert len(calls) == 2


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: elementwise_derivatives("tanh", torch.arange(3), 2), TypeError, "x must be a floating-point"),
        (lambda: elementwise_derivatives("tanh", torch.ones(3, dtype=torch.complex64), 2), TypeError, "floating-point"),
        (lambda: elementwise_derivatives("tanhh", torch.ones(3), 2), ValueError, "unknown function name 'tanhh'"),
        (lambda: elementwise_derivatives("tanh", torch.ones(3), -1), ValueError, "order must be non-negative"),
        (lambda: elementwise_derivatives("tanh", torch.ones(3), 2.0), TypeError, "order must be an int"),
        (lambda: elementwise_derivatives("tanh", torch.ones(3), True), TypeError, "order must be an int"),
        (lambda: elementwise_derivatives("tanh", [1.0], 2), TypeError, "x must be a torch.Tensor"),
        (lambda: elementwise_derivatives(3, torch.ones(3), 2), TypeError, "fn must be"),
        (lambda: elementwise_derivatives("tanh", torch.ones(3), 2, backend="cuda"), ValueError, "backend must be one of"),
        (lambda: elementwise_derivatives("tanh", torch.ones(3), 9, backend="kernel"), RuntimeError, "order 9 exceeds"),
        (lambda: elementwise_derivatives("tanh", torch.ones(3, dtype=torch.float16), 2, backend="kernel"), RuntimeError, "float32 and float64"),
        (lambda: elementwise_derivatives(lambda t: t**2, torch.ones(3), 2, backend="kernel"), RuntimeError, "not a function the kernels know"),
        (lambda: elementwise_derivatives(Polynomial(torch.ones(3, device="meta")), torch.ones(3), 2), ValueError, "different devices"),
        (lambda: elementwise_derivatives(lambda t: t.sum(), torch.ones(3), 2), ValueError, "fn must be elementwise"),
        (lambda: Polynomial([]), ValueError, "must not be empty"),
        (lambda: Polynomial(torch.ones(2, 2)), ValueError, "1-D"),
        (lambda: nn.Softplus(beta=0.0) and elementwise_derivatives(nn.Softplus(beta=0.0), torch.ones(3)), ValueError, "beta must be non-zero"),
    ],
)
def test_bad_input_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
