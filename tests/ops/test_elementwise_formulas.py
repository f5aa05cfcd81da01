"""The elementwise ops' autograd formulas (ops/formulas.py).

gradcheck and gradgradcheck in x (and in a polynomial's coefficients), d/dx of y^(k) equal to
y^(k+1) up to the kernels' highest order, coefficient gradients against autograd, and the loud
refusal one order past the kernels.
"""

from __future__ import annotations

import pytest
import torch

from hoderiv_ext import Polynomial, elementwise_derivatives
from hoderiv_ext.core.functions import by_name

from conftest import DEVICES, into_domain


SMOOTH = ["tanh", "sigmoid", "softplus", "sin", "cos", "exp", "silu", "gelu", "gelu_tanh", "elu", "log", "log1p",
          "expm1", "sqrt", "rsqrt", "reciprocal", "square", "pow", "erf", "atan", "tan", "sinh", "cosh", "abs",
          "scaled_sin"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn", SMOOTH)
def test_gradcheck_and_gradgradcheck(fn, device):
    # Away from kinks (elu and abs at 0), where finite differences are meaningless; inside the domain.
    x = (torch.rand(7, dtype=torch.float64, device=device) * 4 - 2).clamp_min(-1.9)
    x = into_domain(fn, torch.where(x.abs() < 0.05, x + 0.1, x)).detach().requires_grad_(True)

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


@pytest.mark.parametrize("fn", ["tanh", "gelu", Polynomial([0.5, -1.0, 2.0, 0.0, 3.0, 1.0]),
                                by_name("scaled_sin", frequency=3.0)], ids=str)
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
