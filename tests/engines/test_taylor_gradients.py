"""Differentiating the Taylor engine's results (the jet ops' formulas in use: csrc/ops/autograd.cpp, ops/formulas.py).

Gradients of a loss on every field with respect to parameters and x, gradcheck/gradgradcheck, the
parameter Hessian-vector product of a training loss for every algorithm, third and fourth
derivatives, and no graph under create_graph=False or torch.no_grad().
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hoderiv_ext import derivatives
from hoderiv_ext.core.requests import parse_hessian_request
from hoderiv_ext.engines import select
from hoderiv_ext.engines.taylor.plan import build_plan

from conftest import DEVICES, REQUESTS, SECOND_FIELDS, make_mlp, result_fields


def _loss(result) -> torch.Tensor:
    total = (result.value**2).sum() + (result.gradient.sin()).sum()
    for name in SECOND_FIELDS:
        tensor = getattr(result, name)
        if tensor is not None:
            total = total + (tensor * tensor.detach().sign()).sum() + (tensor**2).sum()
    return total


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hessian", REQUESTS, ids=str)
def test_parameter_and_input_gradients_match_reference(hessian, device):
    net = make_mlp(3, [10, 10], 2, nn.Tanh, torch.float64, device)
    x = torch.randn(7, 3, dtype=torch.float64, device=device, requires_grad=True)
    wrt = list(net.parameters()) + [x]
    grads = []
    for backend in ("kernel", "autograd"):
        grads.append(torch.autograd.grad(_loss(derivatives(net, x, hessian=hessian, backend=backend)), wrt))
    for got, expected in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("hessian", ["full", "laplacian", [1], None], ids=str)
def test_gradcheck_and_gradgradcheck_wrt_inputs_and_parameters(hessian):
    net = make_mlp(2, [4, 3], 1, nn.Tanh, torch.float64, "cpu")
    net[2] = nn.Linear(4, 3).double()  # keep default init deterministic via make_mlp seed
    names = [name for name, _ in net.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in net.parameters())
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)

    def outputs(x_in, *param_values):
        with torch.nn.utils.stateless._reparametrize_module(net, dict(zip(names, param_values))):
            r = derivatives(net, x_in, hessian=hessian, backend="kernel")
        return tuple(result_fields(r))

    assert torch.autograd.gradcheck(outputs, (x, *params))
    assert torch.autograd.gradgradcheck(outputs, (x, *params))


@pytest.mark.parametrize(
    ("d", "hessian", "algorithm"),
    [(2, "laplacian", "forward"), (2, "full", "forward"), (2, [1], "forward_over_reverse"), (4, "full", "mixed"),
     (4, [0, 2], "forward_over_reverse")],
    ids=str,
)
def test_parameter_hessian_vector_product_of_a_training_loss_matches_reference(d, hessian, algorithm):
    """Differentiating the parameter gradient of a loss on u, grad u and second derivatives again.

    With three activation layers the incoming gradient of an activation step
    depends on that step's own input jet (through the later nonlinear
    layers), and the first layer's preactivation depends on its weight: the
    recomputed double backward must take partial derivatives with respect to
    each op input. (Before it took total derivatives, which ran -- and freed
    -- the caller's graph: this raised "backward through the graph a second
    time", and would have counted paths twice under create_graph.)
    """
    torch.manual_seed(3)
    net = make_mlp(d, [5, 4, 3], 1, nn.Tanh, torch.float64, "cpu")
    params = list(net.parameters())
    x = torch.randn(6, d, dtype=torch.float64)
    direction = [torch.randn_like(p) for p in params]
    assert select.taylor_algorithm(build_plan(net), parse_hessian_request(hessian, d), d) == algorithm

    def hessian_vector_product(backend: str, create_graph: bool) -> list[torch.Tensor]:
        r = derivatives(net, x, hessian=hessian, backend=backend, create_graph=True)
        second = next(getattr(r, name) for name in SECOND_FIELDS if getattr(r, name) is not None)
        loss = r.value.square().sum() + r.gradient.pow(3).sum() + second.square().sum()
        gradient = torch.autograd.grad(loss, params, create_graph=True)
        inner = sum((g * v).sum() for g, v in zip(gradient, direction))
        return list(torch.autograd.grad(inner, params, create_graph=create_graph))

    for create_graph in (False, True):
        kernel = hessian_vector_product("kernel", create_graph)
        reference = hessian_vector_product("autograd", create_graph)
        for got, expected in zip(kernel, reference):
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # one level further (third derivatives with respect to the parameters)
    third = [torch.autograd.grad(h.sum(), params[0], retain_graph=True)[0]
             for h in (hessian_vector_product("kernel", True)[0], hessian_vector_product("autograd", True)[0])]
    torch.testing.assert_close(third[0], third[1], rtol=1e-9, atol=1e-11)


def test_third_and_fourth_differentiation_match_reference():
    """grad(grad(grad(laplacian))) with create_graph: through the recomputed double backward."""
    net = make_mlp(2, [4, 4], 1, nn.Tanh, torch.float64, "cpu")
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    chains = []
    for backend in ("kernel", "autograd"):
        laplacian = derivatives(net, x, hessian="laplacian", backend=backend).laplacian
        (g,) = torch.autograd.grad(laplacian.sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.pow(2).sum(), x, create_graph=True)
        (ggg,) = torch.autograd.grad(gg.pow(2).sum(), x, create_graph=True)
        parameter_grads = torch.autograd.grad(ggg.sum(), list(net.parameters()), allow_unused=True, materialize_grads=True)
        chains.append((g, gg, ggg) + parameter_grads)
    for got, expected in zip(*chains):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_inference_mode_builds_no_graph():
    net = make_mlp(3, [8], 1, nn.Tanh, torch.float32, "cpu")
    x = torch.randn(4, 3, requires_grad=True)
    result = derivatives(net, x, hessian="laplacian", backend="kernel", create_graph=False)
    assert all(not t.requires_grad for t in result_fields(result))
    with torch.no_grad():
        result = derivatives(net, x, hessian="full", backend="kernel")
    assert all(not t.requires_grad for t in result_fields(result))
