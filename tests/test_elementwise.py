"""Elementwise derivatives: the kernel path against the autograd path, and properties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

import hoderiv_ext
from hoderiv_ext import Polynomial, elementwise_derivatives
from hoderiv_ext.core.functions import KERNEL_FUNCTION_NAMES

from conftest import DEVICES, DTYPES, tolerances

FUNCTIONS = [
    "identity", "tanh", "sigmoid", "softplus", "sin", "cos", "exp", "silu", "gelu", "gelu_tanh", "relu",
    "leaky_relu", "elu",
]
MODULES = [
    nn.Softplus(beta=2.0, threshold=5.0), nn.GELU(approximate="tanh"), nn.GELU(), nn.LeakyReLU(0.3),
    nn.ELU(alpha=0.6), nn.SiLU(), nn.Tanh(), nn.Sigmoid(), nn.ReLU(), nn.Identity(),
]
# Points on both sides of every kink, in the tails, and exactly at the kinks.
GRID = [-30.0, -12.5, -5.0, -2.0, -1.0, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 12.5, 20.0, 30.0]


def test_function_list_matches_the_kernels():
    assert set(FUNCTIONS) == set(KERNEL_FUNCTION_NAMES)


def _compare(fn, x: torch.Tensor, order: int) -> None:
    kernel = elementwise_derivatives(fn, x, order, backend="kernel")
    # The reference is autograd in float64: float32 kernels must match it to float32 accuracy.
    reference = elementwise_derivatives(fn, x.double(), order, backend="autograd")
    _assert_matches_reference(fn, x, kernel, reference)


def _assert_matches_reference(fn, x: torch.Tensor, kernel, reference) -> None:
    assert len(kernel) == len(reference)
    for k, (got, expected) in enumerate(zip(kernel, reference)):
        assert got.shape == x.shape and got.dtype == x.dtype and got.device == x.device
        # torch's own autograd is not stable everywhere (gelu_tanh's third
        # derivative is NaN at |x| = 30 in float64): there the kernel must be
        # finite, and the comparison uses the points where the reference is.
        reference_finite = torch.isfinite(expected)
        assert torch.isfinite(got[~reference_finite]).all(), f"{fn} derivative {k} not finite where autograd fails"
        got, expected = got[reference_finite], expected[reference_finite]
        scale = expected.abs().max().item() if expected.numel() else 1.0
        tol = tolerances(x.dtype)
        torch.testing.assert_close(
            got.double(), expected, rtol=tol["rtol"], atol=tol["atol"] * max(1.0, scale),
            msg=lambda m: f"{fn} derivative {k}: {m}",
        )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", [0, 1, 2, 3, 4, 6, 8])
@pytest.mark.parametrize("fn", FUNCTIONS)
def test_kernel_matches_autograd_on_grid(fn, order, dtype, device):
    x = torch.tensor(GRID, dtype=dtype, device=device)
    x = torch.cat([x, torch.linspace(-4, 4, 41, dtype=dtype, device=device)])
    _compare(fn, x, order)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("module", MODULES, ids=repr)
def test_activation_modules_with_parameters(module, dtype, device):
    x = torch.tensor(GRID, dtype=dtype, device=device)
    _compare(module, x, 3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_polynomial_matches_autograd_and_closed_form(dtype, device):
    # The seed's x^3 + 2x, batched: y' = 3x^2 + 2, y'' = 6x, y''' = 6.
    x = 2 * torch.rand(5, 3, dtype=dtype, device=device)
    p = Polynomial([0.0, 2.0, 0.0, 1.0])
    _compare(p, x, 5)
    y, d1, d2, d3 = elementwise_derivatives(p, x, 3, backend="kernel")
    tol = tolerances(dtype)
    torch.testing.assert_close(y, x**3 + 2 * x, **tol)
    torch.testing.assert_close(d1, 3 * x**2 + 2, **tol)
    torch.testing.assert_close(d2, 6 * x, **tol)
    torch.testing.assert_close(d3, torch.full_like(x, 6.0), **tol)
    # A plain Python callable gives the same through autograd.
    for got, expected in zip(elementwise_derivatives(lambda t: t**3 + 2 * t, x, 3), (y, d1, d2, d3)):
        torch.testing.assert_close(got, expected, **tol)


def test_torch_functions_map_to_kernels():
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    for fn, name in [(torch.tanh, "tanh"), (torch.sin, "sin"), (F.silu, "silu"), (F.gelu, "gelu")]:
        got = elementwise_derivatives(fn, x, 2, backend="kernel")
        expected = elementwise_derivatives(name, x, 2, backend="kernel")
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@settings(max_examples=60, deadline=None)
@given(
    values=hnp.arrays(
        dtype="float64",
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
        elements=st.floats(-40, 40, allow_nan=False),
    ),
    fn=st.sampled_from(FUNCTIONS),
    order=st.integers(0, 5),
    transpose=st.booleans(),
)
def test_property_kernel_equals_autograd_any_shape(values, fn, order, transpose):
    x = torch.from_numpy(values.copy())
    if transpose and x.dim() >= 2:
        x = x.transpose(0, -1)  # non-contiguous input
    kernel = elementwise_derivatives(fn, x, order, backend="kernel")
    reference = elementwise_derivatives(fn, x, order, backend="autograd")
    _assert_matches_reference(fn, x, kernel, reference)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn", ["tanh", "softplus", Polynomial([0.5, -1.0, 2.0, 0.0, 3.0, 1.0])], ids=str)
def test_many_blocks_and_parallel_chunks_forward_and_backward(fn, device):
    """9001 elements: several parallel chunks (4096) and vector blocks (256) with a remainder on CPU.

    Values and the gradient of a weighted sum of every order (the backward
    kernels, with their shifts) against autograd in float64.
    """
    x = torch.linspace(-6, 6, 9001, dtype=torch.float64, device=device).requires_grad_(True)
    weights = torch.randn(4, 9001, dtype=torch.float64, device=device)
    kernel = elementwise_derivatives(fn, x, 3, backend="kernel")
    reference = elementwise_derivatives(fn, x, 3, backend="autograd")
    _assert_matches_reference(fn, x.detach(), [t.detach() for t in kernel], [t.detach() for t in reference])
    (kernel_grad,) = torch.autograd.grad((torch.stack(kernel) * weights).sum(), x)
    (reference_grad,) = torch.autograd.grad((torch.stack(reference) * weights).sum(), x)
    torch.testing.assert_close(kernel_grad, reference_grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_and_empty_inputs(dtype, device):
    base = torch.randn(6, 8, dtype=dtype, device=device)
    for x in (base.t(), base[:, ::2], base.unsqueeze(0).expand(3, 6, 8)):
        assert not x.is_contiguous()
        got = elementwise_derivatives("tanh", x, 2, backend="kernel")
        expected = elementwise_derivatives("tanh", x.contiguous(), 2, backend="kernel")
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    for shape in [(0,), (3, 0), (0, 4, 2)]:
        x = torch.empty(shape, dtype=dtype, device=device)
        for backend in ("kernel", "autograd"):
            result = elementwise_derivatives("sigmoid", x, 3, backend=backend)
            assert len(result) == 4 and all(r.shape == x.shape for r in result)
        result = elementwise_derivatives(Polynomial([1.0, 2.0]), x, 2, backend="kernel")
        assert all(r.shape == x.shape for r in result)
    scalar = torch.tensor(0.5, dtype=dtype, device=device)
    y, dy = elementwise_derivatives("tanh", scalar, 1, backend="kernel")
    assert y.shape == () and abs(dy.item() - (1 - math.tanh(0.5) ** 2)) < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", FUNCTIONS)
def test_stable_over_large_inputs(fn, dtype):
    """No NaN/Inf for |x| <= 1e4 where the true derivative is finite."""
    x = torch.tensor([-1e4, -3e3, -700.0, -100.0, -50.0, 50.0, 100.0, 700.0, 3e3, 1e4], dtype=dtype)
    if fn == "exp":  # e^x itself overflows: check only where it is representable
        x = x[x < (80 if dtype == torch.float32 else 700)]
    for k, derivative in enumerate(elementwise_derivatives(fn, x, 4, backend="kernel")):
        assert torch.isfinite(derivative).all(), f"{fn} derivative {k} not finite: {derivative}"


def test_tails_keep_relative_accuracy():
    """tanh'(x) = sech^2(x) is ~1e-17 at x = 20: not 0 as 1 - tanh^2 would give in float32."""
    x = torch.tensor([20.0, -20.0], dtype=torch.float32)
    _, dy, d2y = elementwise_derivatives("tanh", x, 2, backend="kernel")
    expected = torch.tensor([1 / math.cosh(20.0) ** 2] * 2, dtype=torch.float64)
    torch.testing.assert_close(dy.double(), expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(d2y.double().abs(), 2 * expected, rtol=1e-5, atol=0)


# ----------------------------------------------------------------------------- autograd


SMOOTH = ["tanh", "sigmoid", "softplus", "sin", "cos", "exp", "silu", "gelu", "gelu_tanh", "elu"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn", SMOOTH)
def test_gradcheck_and_gradgradcheck(fn, device):
    # Away from kinks (elu at 0), where finite differences are meaningless.
    x = (torch.rand(7, dtype=torch.float64, device=device) * 4 - 2).clamp_min(-1.9)
    x = torch.where(x.abs() < 0.05, x + 0.1, x).requires_grad_(True)

    def stacked(t: torch.Tensor) -> torch.Tensor:
        return torch.stack(elementwise_derivatives(fn, t, 2, backend="kernel"))

    assert torch.autograd.gradcheck(stacked, (x,))
    assert torch.autograd.gradgradcheck(stacked, (x,))


@pytest.mark.parametrize("device", DEVICES)
def test_polynomial_gradcheck_in_x_and_coefficients(device):
    x = torch.randn(6, dtype=torch.float64, device=device, requires_grad=True)
    coefficients = torch.randn(5, dtype=torch.float64, device=device, requires_grad=True)

    def stacked(t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.stack(elementwise_derivatives(Polynomial(c), t, 3, backend="kernel"))

    assert torch.autograd.gradcheck(stacked, (x, coefficients))
    assert torch.autograd.gradgradcheck(stacked, (x, coefficients))


@pytest.mark.parametrize("fn", ["tanh", "gelu", Polynomial([0.5, -1.0, 2.0, 0.0, 3.0, 1.0])], ids=str)
def test_differentiable_to_high_order(fn):
    """d/dx of the kernel's y^(k) is y^(k+1); a result of order m differentiates 8 - m more times."""
    x = torch.linspace(-2, 2, 11, dtype=torch.float64, requires_grad=True)
    derivatives = elementwise_derivatives(fn, x, 7, backend="kernel")
    for k in range(7):
        (next_derivative,) = torch.autograd.grad(derivatives[k].sum(), x, create_graph=True)
        torch.testing.assert_close(next_derivative, derivatives[k + 1], rtol=1e-12, atol=1e-12)
    reference = elementwise_derivatives(fn, x, 8, backend="autograd")
    current = elementwise_derivatives(fn, x, 2, backend="kernel")[0]
    for k in range(1, 7):  # order 2 + 6 levels of differentiation = 8
        (current,) = torch.autograd.grad(current.sum(), x, create_graph=True)
        torch.testing.assert_close(current, reference[k], rtol=1e-12, atol=1e-12)


def test_polynomial_coefficient_gradients_match_autograd():
    x = torch.randn(10, dtype=torch.float64)
    c1 = torch.randn(4, dtype=torch.float64, requires_grad=True)
    c2 = c1.detach().clone().requires_grad_(True)
    weights = torch.randn(4, 10, dtype=torch.float64)
    loss1 = (torch.stack(elementwise_derivatives(Polynomial(c1), x, 3, backend="kernel")) * weights).sum()
    loss2 = (torch.stack(elementwise_derivatives(Polynomial(c2), x, 3, backend="autograd")) * weights).sum()
    (g1,) = torch.autograd.grad(loss1, c1)
    (g2,) = torch.autograd.grad(loss2, c2)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)


def test_backward_past_the_kernel_order_refuses_loudly():
    x = torch.linspace(-1, 1, 5, dtype=torch.float64, requires_grad=True)
    derivatives = elementwise_derivatives("tanh", x, 8, backend="kernel")
    with pytest.raises(RuntimeError, match="order 9.*backend='autograd'"):
        derivatives[8].sum().backward()
    # The autograd backend has no such limit.
    high = elementwise_derivatives("tanh", x, 10, backend="autograd")
    assert len(high) == 11


# ----------------------------------------------------------------------------- torch.library


def _op_samples():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    coefficients = torch.randn(4, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(3, 4, 3, dtype=torch.float64, requires_grad=True)
    ops = torch.ops.hoderiv_ext
    return [
        (ops.elementwise_derivatives.default, (x, "tanh", [], 2)),
        (ops.elementwise_derivatives.default, (x, "softplus", [2.0, 10.0], 3)),
        (ops.elementwise_derivatives_backward.default, (grad, x, "gelu_tanh", [], 1)),
        (ops.polynomial_derivatives.default, (x, coefficients, 3)),
        (ops.polynomial_derivatives_backward.default, (grad, x, coefficients, 1)),
    ]


@pytest.mark.parametrize("index", range(5))
def test_opcheck(index):
    op, args = _op_samples()[index]
    torch.library.opcheck(op, args)


def test_torch_compile_fullgraph():
    torch._dynamo.reset()

    def loss_fn(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        y, dy, d2y = elementwise_derivatives("tanh", x, 2, backend="kernel")
        p, dp, _ = elementwise_derivatives(Polynomial(c), x, 2, backend="kernel")
        return (y * dy + d2y**2 + p * dp).sum()

    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    x = torch.randn(16, dtype=torch.float64, requires_grad=True)
    c = torch.randn(3, dtype=torch.float64, requires_grad=True)
    eager_grads = torch.autograd.grad(loss_fn(x, c), (x, c))
    compiled_loss = compiled(x, c)
    torch.testing.assert_close(compiled_loss, loss_fn(x, c))
    for a, b in zip(torch.autograd.grad(compiled_loss, (x, c)), eager_grads):
        torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------------- engines and errors


def test_auto_backend_uses_autograd_on_cpu(monkeypatch):
    import hoderiv_ext.api.elementwise as module

    calls = []
    original = module.autograd_elementwise_derivatives
    monkeypatch.setattr(module, "autograd_elementwise_derivatives", lambda *a: calls.append(a) or original(*a))
    elementwise_derivatives("tanh", torch.randn(3), 2)
    assert len(calls) == 1
    elementwise_derivatives("tanh", torch.randn(3), 2, backend="kernel")
    assert len(calls) == 1


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


def test_op_level_errors_name_the_argument():
    ops = torch.ops.hoderiv_ext
    x = torch.ones(3)
    with pytest.raises(RuntimeError, match="unknown function 'nope'; the kernels serve: identity, tanh"):
        ops.elementwise_derivatives(x, "nope", [], 2)
    with pytest.raises(RuntimeError, match="'softplus' takes 2 parameter"):
        ops.elementwise_derivatives(x, "softplus", [1.0], 2)
    with pytest.raises(RuntimeError, match="x must be a float32 or float64"):
        ops.elementwise_derivatives(torch.ones(3, dtype=torch.int32), "tanh", [], 2)
    with pytest.raises(RuntimeError, match="order must be in \\[0, 8\\]"):
        ops.elementwise_derivatives(x, "tanh", [], -1)
    with pytest.raises(RuntimeError, match="grad must have shape"):
        ops.elementwise_derivatives_backward(torch.ones(2, 4), x, "tanh", [], 1)
    with pytest.raises(RuntimeError, match="coefficients must be a non-empty 1-D"):
        ops.polynomial_derivatives(x, torch.ones(2, 2), 2)
    empty = torch.ones(0)
    with pytest.raises(RuntimeError, match="unknown function 'nope'"):  # checked before the empty-input return
        ops.elementwise_derivatives(empty, "nope", [], 2)
    with pytest.raises(RuntimeError, match="unknown function 'nope'"):
        ops.elementwise_derivatives_backward(torch.ones(2, 0), empty, "nope", [], 1)
    with pytest.raises(RuntimeError, match="coefficients must be a non-empty 1-D"):
        ops.polynomial_derivatives(empty, torch.ones(0), 2)
    with pytest.raises(RuntimeError, match="grad must have shape"):
        ops.polynomial_derivatives_backward(torch.ones(2, 3), empty, torch.ones(2), 1)
    with pytest.raises(RuntimeError, match="coefficients must have x's dtype"):
        ops.polynomial_derivatives(x, torch.ones(2, dtype=torch.float64), 2)


def test_kernel_backend_without_extension_is_a_clear_error(monkeypatch):
    import hoderiv_ext.ops.library as extension

    monkeypatch.setattr(extension, "_C", None)
    monkeypatch.setattr(extension, "_LOAD_ERROR", "ImportError: simulated")
    with pytest.raises(RuntimeError, match="compiled extension is not loaded.*simulated"):
        elementwise_derivatives("tanh", torch.ones(3), 2, backend="kernel")
    y, dy = elementwise_derivatives("tanh", torch.ones(3), 1)  # auto still works
    torch.testing.assert_close(dy, 1 - torch.tanh(torch.ones(3)) ** 2)
    assert hoderiv_ext.build_info()["compiled"] is False
