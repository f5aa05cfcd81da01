"""The exact bi-Laplacian sweep (engines/taylor/bilaplacian.py) against the autograd engine."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hoderiv_ext import Bilaplacian, derivatives
from hoderiv_ext.engines.taylor.bilaplacian import bilaplacian_sweep
from hoderiv_ext.engines.taylor.plan import build_plan

ACTIVATIONS = [nn.Tanh, nn.Softplus, nn.SiLU, nn.GELU, nn.Sigmoid]


def _compare(net: nn.Module, x: torch.Tensor, dims: list[int] | None) -> None:
    fast = derivatives(net, x, hessian=Bilaplacian(dims=dims), backend="kernel")
    reference = derivatives(net, x, hessian=Bilaplacian(dims=dims), backend="autograd")
    assert fast.algorithm == "bilaplacian"
    for name in ("value", "gradient", "bilaplacian"):
        torch.testing.assert_close(getattr(fast, name), getattr(reference, name), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: a.__name__)
@pytest.mark.parametrize("dims", [None, [0, 2], [3, 1]], ids=str)
@pytest.mark.parametrize("outputs", [1, 2])
def test_matches_the_autograd_engine(activation, dims, outputs):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 7), activation(), nn.Linear(7, 5), activation(), nn.Linear(5, 6),
                        activation(), nn.Linear(6, outputs)).double()
    _compare(net, torch.randn(5, 4, dtype=torch.float64), dims)


@pytest.mark.parametrize("layers", [
    lambda: [nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)],  # one activation: the first-layer step only
    lambda: [nn.Linear(3, 4), nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 4), nn.Linear(4, 5), nn.Sigmoid(),
             nn.Linear(5, 1)],  # two Linears in a row, before and after the first activation
    lambda: [nn.Tanh(), nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1)],  # an activation on x itself
], ids=["one-activation", "linears-in-a-row", "activation-first"])
def test_layer_arrangements(layers):
    torch.manual_seed(1)
    _compare(nn.Sequential(*layers()).double(), torch.randn(6, 3, dtype=torch.float64), None)


def test_an_affine_network_has_zero_bilaplacian():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    value, tangents, bilaplacian = bilaplacian_sweep(build_plan(net), x, None)
    torch.testing.assert_close(value, net(x))
    assert torch.equal(bilaplacian, torch.zeros(5, 2, dtype=torch.float64))
    assert tangents.shape == (5, 3, 2)


def test_gradcheck_and_gradgradcheck_in_x():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4), nn.Softplus(), nn.Linear(4, 1)).double()

    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda x: derivatives(net, x, hessian=Bilaplacian(), backend="kernel",
                                                   create_graph=True).bilaplacian, (x,))
    torch.autograd.gradgradcheck(lambda x: derivatives(net, x, hessian=Bilaplacian(), backend="kernel",
                                                       create_graph=True).bilaplacian, (x,))


def test_float32_agrees_with_float64():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
    x = torch.randn(32, 3)
    single = derivatives(net, x, hessian=Bilaplacian(), backend="kernel").bilaplacian
    double = derivatives(net.double(), x.double(), hessian=Bilaplacian(), backend="kernel").bilaplacian
    torch.testing.assert_close(single.double(), double, rtol=1e-4, atol=1e-4)


def test_empty_batch():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    result = derivatives(net, torch.zeros(0, 3, dtype=torch.float64), hessian=Bilaplacian(), backend="kernel")
    assert result.bilaplacian.shape == (0,)
