"""The elementwise kernels (ops/elementwise.py) against autograd in float64.

Every function and order on a grid through the kinks and tails, activation modules with their
parameters, polynomials (and the seed's closed form), any shape and stride (hypothesis), several
parallel chunks, empty and 0-d inputs, large inputs and tails without overflow or cancellation.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

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


def test_softplus_with_a_large_beta_stays_finite_where_the_derivative_is():
    """Regression: beta^(k-1) was formed alone and overflowed float32 (order 8 gave inf where autograd gave 4.5e37)."""
    module = nn.Softplus(beta=1e6)
    x = torch.linspace(-3e-5, 3e-5, 7)
    kernel = elementwise_derivatives(module, x, 8, backend="kernel")
    reference = elementwise_derivatives(module, x, 8, backend="autograd")  # the same float32 points and branches
    for got, expected in zip(kernel, reference):
        finite = torch.isfinite(expected)
        assert bool(torch.isfinite(got[finite]).all()), (got, expected)
        torch.testing.assert_close(got[finite], expected[finite], rtol=2e-3, atol=0)
