"""Results in every autograd mode: inference mode, no_grad, and nothing carried from one mode into the next."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hoderiv_ext import derivatives, elementwise_derivatives

from conftest import make_mlp

REQUESTS = [None, "full", "diagonal", "laplacian", [1], [0, 2]]


def cube(t: torch.Tensor) -> torch.Tensor:
    return (t**3).sum(-1)


@pytest.mark.parametrize("backend", ["autograd", "kernel", "auto"])
@pytest.mark.parametrize("hessian", REQUESTS, ids=str)
def test_inference_mode_gives_the_derivatives_of_normal_mode(backend, hessian):
    """Regression: the autograd engine returned all-zero gradients and Hessians in inference mode."""
    net = make_mlp(3, [8, 8], 1, nn.Tanh, torch.float64, "cpu")
    x = torch.randn(6, 3, dtype=torch.float64)
    expected = derivatives(net, x, hessian=hessian, backend="autograd", create_graph=False)
    with torch.inference_mode():
        got = derivatives(net, x, hessian=hessian, backend=backend)
    for name in ("value", "gradient", "hessian", "hessian_rows", "hessian_diagonal", "laplacian"):
        a, b = getattr(got, name), getattr(expected, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert not a.requires_grad
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_inference_mode_for_any_callable_and_elementwise():
    x = torch.randn(5, 3, dtype=torch.float64)
    with torch.inference_mode():
        x_inference = torch.randn(5, 3, dtype=torch.float64)
        result = derivatives(cube, x, hessian="laplacian")
        result_of_inference_tensor = derivatives(cube, x_inference, hessian="full")
        y, dy, d2y = elementwise_derivatives(torch.sin, x, 2, backend="autograd")
    torch.testing.assert_close(result.gradient, 3 * x**2)
    torch.testing.assert_close(result.laplacian, 6 * x.sum(-1))
    torch.testing.assert_close(result_of_inference_tensor.hessian, torch.diag_embed(6 * x_inference))
    torch.testing.assert_close(d2y, -torch.sin(x))


def test_nothing_computed_in_inference_mode_breaks_a_later_normal_call():
    """Regression: lru_cached index tensors made in inference mode broke every later call that saves them."""
    net = make_mlp(3, [8], 2, nn.Tanh, torch.float64, "cpu")
    x = torch.randn(4, 3, dtype=torch.float64)
    with torch.inference_mode():
        for hessian in REQUESTS:
            for backend in ("autograd", "kernel"):
                derivatives(net, x, hessian=hessian, backend=backend)
                derivatives(cube, x, hessian=hessian, backend="autograd")
    for hessian in REQUESTS:
        for backend in ("autograd", "kernel"):
            out = derivatives(net, x, hessian=hessian, backend=backend, create_graph=True)
            loss = out.value.sum() + out.gradient.sum()
            torch.autograd.grad(loss, list(net.parameters()))
            out = derivatives(cube, x.requires_grad_(True), hessian=hessian, backend="autograd")
            torch.autograd.grad(out.gradient.sum(), x)
            x = x.detach()


def test_create_graph_true_is_refused_in_inference_mode():
    net = make_mlp(2, [4], 1, nn.Tanh, torch.float64, "cpu")
    with torch.inference_mode(), pytest.raises(ValueError, match="inference_mode"):
        derivatives(net, torch.randn(3, 2, dtype=torch.float64), hessian="laplacian", create_graph=True)


def test_parameters_made_in_inference_mode_give_a_clear_error_on_the_autograd_engine():
    with torch.inference_mode():
        net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))
    with pytest.raises(RuntimeError, match="created inside torch.inference_mode"):
        derivatives(lambda t: net(t), torch.randn(3, 2), hessian="laplacian", backend="autograd")
    with torch.inference_mode():  # inside inference mode the Taylor engine serves it
        result = derivatives(net, torch.randn(3, 2), hessian="laplacian", backend="kernel")
    assert result.laplacian.shape == (3,)


@pytest.mark.parametrize("create_graph", ["yes", 1, 0.0])
def test_create_graph_must_be_a_bool(create_graph):
    """Regression: create_graph="yes" was accepted."""
    with pytest.raises(TypeError, match="create_graph must be True, False or None"):
        derivatives(cube, torch.randn(3, 2), hessian="laplacian", create_graph=create_graph)
