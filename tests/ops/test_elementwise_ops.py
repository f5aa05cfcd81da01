"""The elementwise kernels (ops/elementwise.py) against autograd in float64.

Every function and order on a grid through the kinks and tails of its domain, pow with integer
exponents (exact at 0), negative and fractional ones, the values torch's autograd gives at the edges
of the domains (signed infinities, NaN, masked zeros), activation modules with their parameters,
polynomials (and the seed's closed form), any shape and stride (hypothesis), several parallel chunks,
empty and 0-d inputs, large inputs and tails without overflow or cancellation.
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
from hoderiv_ext.core.functions import KERNEL_FUNCTION_NAMES, by_name

from conftest import DEVICES, DTYPES, into_domain, tolerances


FUNCTIONS = [
    "identity", "tanh", "sigmoid", "softplus", "sin", "cos", "exp", "silu", "gelu", "gelu_tanh", "relu",
    "leaky_relu", "elu", "log", "log1p", "expm1", "sqrt", "rsqrt", "reciprocal", "square", "pow", "erf", "atan",
    "tan", "sinh", "cosh", "abs", "scaled_sin",
]
MODULES = [
    nn.Softplus(beta=2.0, threshold=5.0), nn.GELU(approximate="tanh"), nn.GELU(), nn.LeakyReLU(0.3),
    nn.ELU(alpha=0.6), nn.SiLU(), nn.Tanh(), nn.Sigmoid(), nn.ReLU(), nn.Identity(),
]
# Points on both sides of every kink, in the tails, and exactly at the kinks.
GRID = [-30.0, -12.5, -5.0, -2.0, -1.0, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 12.5, 20.0, 30.0]
# Functions finite on part of the line: their own grids, near the edge and far into the tails (order 8 of
# 1/x^9 at 0.05 is ~1e16: float32 still holds it).
POSITIVE_GRID = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 12.5, 30.0, 1e3, 1e6]
DOMAIN_GRIDS = {
    "log": POSITIVE_GRID, "sqrt": POSITIVE_GRID, "rsqrt": POSITIVE_GRID,
    "log1p": [x - 1.0 for x in POSITIVE_GRID] + [-0.5, 0.0, 1e6],
    "reciprocal": [-1e3, -30.0, -2.0, -0.25, -0.05, 0.05, 0.25, 2.0, 30.0, 1e3],
    "tan": [-1.5, -1.25, -0.5, 0.0, 0.3, 1.0, 1.45, 2.0, 4.0, -4.5],
}


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
    x = torch.tensor(DOMAIN_GRIDS.get(fn, GRID), dtype=dtype, device=device)
    x = torch.cat([x, into_domain(fn, torch.linspace(-4, 4, 41, dtype=dtype, device=device))])
    _compare(fn, x, order)


# x ** p: integer exponents on the whole line, 0 included (exact: x**3 at 0 is 0, 0, 0, 6, 0, ...),
# negative integers away from 0, fractional exponents on x > 0.
POWERS = [
    (0.0, GRID), (1.0, GRID), (2.0, GRID), (3.0, GRID + [1e-3, -1e-3]), (4.0, GRID), (7.0, [-3.0, -1e-3, 0.0, 0.5, 2.5]),
    (-1.0, DOMAIN_GRIDS["reciprocal"]), (-2.0, DOMAIN_GRIDS["reciprocal"]), (-3.0, [-2.0, -0.5, 0.5, 2.0]),
    (0.5, POSITIVE_GRID), (1.5, POSITIVE_GRID), (2.5, POSITIVE_GRID), (-0.5, POSITIVE_GRID), (-1.75, POSITIVE_GRID),
    (0.3, POSITIVE_GRID),
]


# sin(w x), SIREN's activation: w^k sin(w x + k pi / 2). The float64 reference rounds w x in float64, the
# kernel in x's dtype: the points keep |w x| <= 30, where float32's rounding of the argument stays far
# below the tolerance.
FREQUENCIES = [(30.0, [-1.0, -0.37, -0.01, 0.0, 0.013, 0.25, 0.5, 1.0]), (3.0, GRID[3:-3]), (-0.5, GRID),
               (0.0, GRID), (1.0, GRID)]
# The functions of the table with a parameter, at each parameter value with its points.
WITH_A_PARAMETER = ([pytest.param(by_name("pow", exponent=p), points, id=f"pow{p}") for p, points in POWERS]
                    + [pytest.param(by_name("scaled_sin", frequency=w), points, id=f"scaled_sin{w}")
                       for w, points in FREQUENCIES])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", [2, 5, 8])
@pytest.mark.parametrize(("function", "points"), WITH_A_PARAMETER)
def test_functions_with_a_parameter_match_autograd(function, points, order, dtype, device):
    x = torch.tensor(points, dtype=dtype, device=device)
    _compare(function, x, order)
    exponent = function.params[0]
    if function.name == "pow" and exponent == int(exponent) and exponent >= 0:  # a polynomial: zero past its
        derivatives = elementwise_derivatives(function, x, order, backend="kernel")  # degree, also at 0
        for k in range(int(exponent) + 1, order + 1):
            assert bool((derivatives[k] == 0).all()), (exponent, k)


def test_scaled_sin_at_order_one_is_the_frequency_times_the_cosine():
    for dtype in (torch.float32, torch.float64):
        x = torch.linspace(-2, 2, 101, dtype=dtype) + 1e-3
        value, first = elementwise_derivatives(by_name("scaled_sin", frequency=30.0), x, 1, backend="kernel")
        sine, cosine = elementwise_derivatives("sin", 30.0 * x, 1, backend="kernel")
        assert torch.equal(value, sine)  # the argument rounded as torch rounds 30 * x
        torch.testing.assert_close(first, 30.0 * cosine, rtol=2 * torch.finfo(dtype).eps, atol=0)
        eps = torch.finfo(dtype).eps  # the kernels' sine is within an ulp or two of torch's
        torch.testing.assert_close(value, torch.sin(30.0 * x), rtol=0, atol=2 * eps)


def test_scaled_sin_refuses_a_frequency_that_is_not_finite():
    with pytest.raises(ValueError, match="frequency must be finite"):
        by_name("scaled_sin", frequency=float("inf"))
    with pytest.raises(RuntimeError, match="scaled_sin parameter frequency must be finite"):
        torch.ops.hoderiv_ext.elementwise_derivatives(torch.zeros(2), "scaled_sin", [float("nan")], 1)


# (function, points, order): where torch's autograd gives infinities, NaN or masked zeros, the kernels give
# the same values (signs of infinities included).
EDGES = [
    ("sqrt", [0.0, -0.0, -2.0], 6), ("rsqrt", [0.0, -0.0, -1.0], 6), ("log", [0.0, -0.0, -2.0], 6),
    ("log1p", [-1.0, -3.0], 6), ("reciprocal", [0.0, -0.0], 6), ("abs", [0.0, -0.0, -2.0, 3.0], 4),
    ("square", [0.0, -3.0], 4), (by_name("pow", exponent=2.0), [0.0, -0.0], 5),
    (by_name("pow", exponent=3.0), [0.0], 5), (by_name("pow", exponent=0.0), [0.0, -2.0], 3),
    (by_name("pow", exponent=1.0), [0.0], 3), (by_name("pow", exponent=-1.0), [0.0], 4),
    (by_name("pow", exponent=-2.0), [0.0], 4), (by_name("pow", exponent=1.5), [0.0, -1.0], 4),
    (by_name("pow", exponent=0.5), [0.0, -1.0], 4), ("atan", [0.0], 8), ("tan", [0.0], 8), ("erf", [0.0], 8),
]


def _edge_id(case) -> str:
    fn, points, _ = case
    name = fn if isinstance(fn, str) else f"pow{fn.params[0]}"
    return f"{name}-{points}"


@pytest.mark.parametrize(("fn", "points", "order"), EDGES, ids=[_edge_id(case) for case in EDGES])
def test_edges_of_the_domains_follow_torch_autograd(fn, points, order):
    x = torch.tensor(points, dtype=torch.float64)
    kernel = elementwise_derivatives(fn, x, order, backend="kernel")
    reference = elementwise_derivatives(fn, x, order, backend="autograd")
    for k, (got, expected) in enumerate(zip(kernel, reference)):
        torch.testing.assert_close(got, expected, rtol=1e-13, atol=0, equal_nan=True, msg=lambda m: f"{fn} {k}: {m}")


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
    x = into_domain(fn, torch.from_numpy(values.copy()))
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
    limit = 80 if dtype == torch.float32 else 700
    if fn in ("exp", "expm1"):  # e^x itself overflows: check only where it is representable
        x = x[x < limit]
    elif fn in ("sinh", "cosh"):
        x = x[x.abs() < limit]
    elif fn in ("log", "sqrt", "rsqrt", "log1p"):
        x = x[x > 0]
    elif fn == "tan":  # tan of a large argument lands anywhere in its period: points a known distance from a pole
        x = torch.tensor([-1.5, 1.5, 1e4 * math.pi + 0.5], dtype=dtype)
    for k, derivative in enumerate(elementwise_derivatives(fn, x, 4, backend="kernel")):
        assert torch.isfinite(derivative).all(), f"{fn} derivative {k} not finite: {derivative}"


def test_tails_keep_relative_accuracy():
    """tanh'(x) = sech^2(x) is ~1e-17 at x = 20: not 0 as 1 - tanh^2 would give in float32."""
    x = torch.tensor([20.0, -20.0], dtype=torch.float32)
    _, dy, d2y = elementwise_derivatives("tanh", x, 2, backend="kernel")
    expected = torch.tensor([1 / math.cosh(20.0) ** 2] * 2, dtype=torch.float64)
    torch.testing.assert_close(dy.double(), expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(d2y.double().abs(), 2 * expected, rtol=1e-5, atol=0)


def test_tails_of_the_elementary_functions_keep_relative_accuracy():
    """erf'(9) ~ 7e-36, atan^(3)(1e4) ~ 6e-24 in float32 and log^(8)(1e6) ~ 5e-45: no term cancels to 0."""
    _, first = elementwise_derivatives("erf", torch.tensor([9.0, -9.0]), 1, backend="kernel")
    expected = torch.full((2,), 2 / math.sqrt(math.pi) * math.exp(-81.0), dtype=torch.float64)
    torch.testing.assert_close(first.double(), expected, rtol=1e-5, atol=0)
    third = elementwise_derivatives("atan", torch.tensor([1e4, -1e4]), 3, backend="kernel")[3]
    expected = torch.full((2,), (6 * 1e8 - 2) / (1 + 1e8) ** 3, dtype=torch.float64)
    torch.testing.assert_close(third.double(), expected, rtol=1e-5, atol=0)
    eighth = elementwise_derivatives("log", torch.tensor([1e6], dtype=torch.float64), 8, backend="kernel")[8]
    torch.testing.assert_close(eighth, torch.tensor([-5040 / 1e48], dtype=torch.float64), rtol=1e-14, atol=0)


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
