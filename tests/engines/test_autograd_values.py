"""The autograd engine's numbers through derivatives() (its CPU default): closed forms, finite differences."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hoderiv_ext import derivatives

from conftest import mlp


def test_closed_form_quadratic_form_hessian_and_laplacian() -> None:
    torch.manual_seed(1)
    a = torch.randn(4, 4, dtype=torch.float64)
    a = a + a.T

    def f(x: torch.Tensor) -> torch.Tensor:  # 0.5 x^T A x, per sample
        return 0.5 * ((x @ a) * x).sum(-1, keepdim=True)

    x = torch.randn(5, 4, dtype=torch.float64)
    full = derivatives(f, x, "full")
    torch.testing.assert_close(full.gradient, x @ a)
    torch.testing.assert_close(full.hessian, a.expand(5, 4, 4))
    torch.testing.assert_close(derivatives(f, x, "laplacian").laplacian, torch.trace(a).expand(5))
    torch.testing.assert_close(derivatives(f, x, [3, 1]).hessian_rows, a[[3, 1]].expand(5, 2, 4))
    torch.testing.assert_close(derivatives(f, x, "diagonal").hessian_diagonal, torch.diagonal(a).expand(5, 4))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 4), d=st.integers(1, 4), o=st.integers(1, 2), seed=st.integers(0, 10_000))
def test_float64_finite_differences(n: int, d: int, o: int, seed: int) -> None:
    f = mlp(d, o, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, dtype=torch.float64, generator=generator)
    result = derivatives(f, x, "full", create_graph=False)
    jacobian = result.gradient.reshape(n, o, d)
    hessian = result.hessian.reshape(n, o, d, d)
    step = 1e-5
    for i in range(d):
        shift = torch.zeros(d, dtype=torch.float64)
        shift[i] = step
        value_difference = (f(x + shift) - f(x - shift)).detach() / (2 * step)  # (n, o)
        torch.testing.assert_close(jacobian[:, :, i], value_difference, rtol=1e-6, atol=1e-8)
        plus = derivatives(f, x + shift, None, create_graph=False).gradient.reshape(n, o, d)
        minus = derivatives(f, x - shift, None, create_graph=False).gradient.reshape(n, o, d)
        torch.testing.assert_close(hessian[:, :, i, :], (plus - minus) / (2 * step), rtol=1e-6, atol=1e-8)


def test_functions_without_parameters_or_dependence_on_x() -> None:
    x = torch.randn(3, 2, dtype=torch.float64)
    linear = derivatives(lambda t: t @ torch.tensor([[1.0], [2.0]], dtype=torch.float64), x, "full")
    torch.testing.assert_close(linear.hessian, torch.zeros(3, 2, 2, dtype=torch.float64))
    constant = derivatives(lambda t: torch.ones(t.shape[0], 1, dtype=t.dtype), x, "laplacian")
    torch.testing.assert_close(constant.gradient, torch.zeros(3, 2, dtype=torch.float64))
    torch.testing.assert_close(constant.laplacian, torch.zeros(3, dtype=torch.float64))
