"""The autograd engine's mechanisms (engines/autograd/: func, batched, loop, auto).

Each against torch.autograd.functional and closed forms, the mechanisms against each other in
float32, the backward passes each makes (one per requested row, batched where measured faster),
the fallbacks (a loop when batching fails, nested autograd where torch.func cannot transform f),
and the results' graphs to the parameters and to x.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hoderiv_ext import HessianRequest
from hoderiv_ext.core.requests import parse_hessian_request
from hoderiv_ext.engines import select
from hoderiv_ext.engines.autograd.engine import METHODS
from hoderiv_ext.engines.autograd.engine import run as reference_derivatives

from conftest import mlp, record_grad_calls, refuse_batched_grads


MECHANISMS = [m for m in METHODS if m != "auto"]
REQUESTS = [None, "full", [2, 0], "diagonal", "laplacian"]
THREE_TWO = mlp(3, 2)


def reference_hessians(f, x: torch.Tensor) -> torch.Tensor:
    """(N, o, d, d) by torch.autograd.functional.hessian, one sample and one output at a time."""
    n, d = x.shape
    o = f(x[:1]).reshape(1, -1).shape[1]
    return torch.stack([
        torch.stack([torch.autograd.functional.hessian(lambda t, a=a: f(t[None]).reshape(-1)[a], x[i]) for a in range(o)])
        for i in range(n)
    ])


def reference_jacobians(f, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.autograd.functional.jacobian(lambda t: f(t[None]).reshape(-1), x[i]) for i in range(len(x))])


def expected_second(hessians: torch.Tensor, hessian: object) -> torch.Tensor | None:
    """The canonical second-order tensor for a request, cut from full (N, o, d, d) Hessians."""
    if hessian is None:
        return None
    if hessian == "full":
        return hessians
    if hessian == "diagonal":
        return hessians.diagonal(dim1=2, dim2=3)
    if hessian == "laplacian":
        return hessians.diagonal(dim1=2, dim2=3).sum(-1)
    return hessians[:, :, list(hessian), :]


@pytest.mark.parametrize("method", MECHANISMS)
@pytest.mark.parametrize("hessian", REQUESTS)
def test_every_mechanism_matches_autograd_functional_hessian(method: str, hessian: object) -> None:
    f = THREE_TWO
    x = torch.randn(3, 3, dtype=torch.float64)
    request = parse_hessian_request(hessian, 3)
    value, jacobian, second = reference_derivatives(f, x, request, create_graph=False, method=method)
    torch.testing.assert_close(value, f(x).detach())
    torch.testing.assert_close(jacobian, reference_jacobians(f, x))
    expected = expected_second(reference_hessians(f, x), hessian)
    if expected is None:
        assert second is None
    else:
        torch.testing.assert_close(second, expected)


@pytest.mark.parametrize("method", METHODS)
def test_closed_form_polynomial_and_sine(method: str) -> None:
    def f(x: torch.Tensor) -> torch.Tensor:  # x0^2 x1 + sin(x2)
        return x[:, 0] ** 2 * x[:, 1] + torch.sin(x[:, 2])

    x = torch.randn(6, 3, dtype=torch.float64)
    x0, x1, x2 = x.unbind(1)
    value, jacobian, hessian = reference_derivatives(f, x, HessianRequest("full"), create_graph=False, method=method)
    zero = torch.zeros_like(x0)
    torch.testing.assert_close(value[:, 0], f(x))
    torch.testing.assert_close(jacobian[:, 0], torch.stack([2 * x0 * x1, x0**2, torch.cos(x2)], 1))
    expected = torch.stack([
        torch.stack([2 * x1, 2 * x0, zero], 1),
        torch.stack([2 * x0, zero, zero], 1),
        torch.stack([zero, zero, -torch.sin(x2)], 1),
    ], 1)
    torch.testing.assert_close(hessian[:, 0], expected)


@pytest.mark.parametrize("hessian", REQUESTS)
def test_mechanisms_agree_in_float32(hessian: object) -> None:
    f = mlp(4, 2, dtype=torch.float32)
    x = torch.randn(64, 4)
    request = parse_hessian_request(hessian, 4)
    outputs = [reference_derivatives(f, x, request, create_graph=False, method=m) for m in METHODS]
    for other in outputs[1:]:
        for mine, theirs in zip(outputs[0], other):
            if mine is None:
                assert theirs is None
            else:
                torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


def test_hessian_rows_cost_grows_with_rows_not_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """One backward pass per requested row in the loop mechanism, whatever d; two passes in all when batched."""
    calls = record_grad_calls(monkeypatch)
    f = mlp(10, 1)
    x = torch.randn(5, 10, dtype=torch.float64)
    request = HessianRequest("rows", (7, 2))
    reference_derivatives(f, x, request, create_graph=False, method="loop")
    assert len(calls) == 1 + 2  # the gradient, then one pass per row
    calls.clear()
    reference_derivatives(f, x, request, create_graph=False, method="batched")
    assert calls == [False, True]  # the gradient, then all rows in one batched pass


@pytest.mark.parametrize(
    "n, d, expected_calls",
    [(64, 8, [False, True]), (64, 2, [False, False, False]), (4096, 8, [False] * 9)],
)
def test_auto_batches_the_row_passes_only_where_measured_faster(
    monkeypatch: pytest.MonkeyPatch, n: int, d: int, expected_calls: list[bool]
) -> None:
    f = mlp(d, 1, dtype=torch.float32)
    x = torch.randn(n, d)
    assert select.batch_autograd_passes(x.device, n, d) == any(expected_calls)
    calls = record_grad_calls(monkeypatch)
    reference_derivatives(f, x, HessianRequest("laplacian"), create_graph=False)
    assert calls == expected_calls


def test_batched_autograd_falls_back_to_a_loop_over_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    f = THREE_TWO
    x = torch.randn(4, 3, dtype=torch.float64)
    expected = reference_derivatives(f, x, HessianRequest("full"), create_graph=False, method="batched")
    refuse_batched_grads(monkeypatch)
    fallback = reference_derivatives(f, x, HessianRequest("full"), create_graph=False, method="batched")
    for mine, theirs in zip(expected, fallback):
        torch.testing.assert_close(mine, theirs)


def test_auto_serves_what_torch_func_cannot_transform() -> None:
    def data_dependent(x: torch.Tensor) -> torch.Tensor:
        scale = 2.0 if float(x.detach().abs().max()) < 1e6 else 1.0  # .item() under vmap: torch.func refuses
        return scale * x.pow(3).sum(-1, keepdim=True)

    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(Exception):
        reference_derivatives(data_dependent, x, HessianRequest("laplacian"), create_graph=False, method="func")
    _, _, laplacian = reference_derivatives(data_dependent, x, HessianRequest("laplacian"), create_graph=False)
    torch.testing.assert_close(laplacian[:, 0], 12 * x.sum(-1))


def _seed_style_loss(f: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The seeds' nested autograd: Laplacian and gradient penalty, differentiable in the parameters."""
    x = x.detach().requires_grad_(True)
    y = f(x)
    gradient = torch.autograd.grad(y.sum(), x, create_graph=True)[0]
    laplacian = sum(torch.autograd.grad(gradient[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))
    return (laplacian**2).mean() + (gradient**2).sum() + y.sum()


@pytest.mark.parametrize("method", METHODS)
def test_second_order_results_are_differentiable_in_the_parameters(method: str) -> None:
    f = mlp(3, 1, seed=3)
    x = torch.randn(6, 3, dtype=torch.float64)
    expected = torch.autograd.grad(_seed_style_loss(f, x), list(f.parameters()))
    value, jacobian, laplacian = reference_derivatives(f, x, HessianRequest("laplacian"), create_graph=True, method=method)
    loss = (laplacian[:, 0] ** 2).mean() + (jacobian**2).sum() + value.sum()
    for mine, theirs in zip(torch.autograd.grad(loss, list(f.parameters())), expected):
        torch.testing.assert_close(mine, theirs)


@pytest.mark.parametrize("method", METHODS)
def test_results_are_differentiable_in_x_when_x_requires_grad(method: str) -> None:
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    cube = lambda t: t.pow(3).sum(-1, keepdim=True)  # noqa: E731 - Laplacian 6 sum x, d/dx = 6
    _, _, laplacian = reference_derivatives(cube, x, HessianRequest("laplacian"), create_graph=True, method=method)
    (gradient,) = torch.autograd.grad(laplacian.sum(), x)
    torch.testing.assert_close(gradient, torch.full_like(x, 6.0))
