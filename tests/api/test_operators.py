"""Partial, weighted and randomized Laplacians, the bi-Laplacian and directional derivatives.

Every operator through both engines against torch.func in float64, parameter
gradients of losses built on them, the estimators' statistics and every bad input.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import hessian, jacfwd, vmap

from hoderiv_ext import Bilaplacian, Laplacian, NotServed, derivatives, directional_derivatives

from conftest import make_mlp

BACKENDS = ["autograd", "kernel"]
EXACT_BACKENDS = {"laplacian": BACKENDS, "bilaplacian": ["autograd"], "directional": ["autograd"]}


def _net(outputs: int = 1) -> nn.Sequential:
    return make_mlp(4, [12, 10], outputs, nn.Tanh, torch.float64, "cpu", seed=3)


def _hessians(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, o, d, d) by torch.func."""
    return vmap(hessian(lambda p: net(p.unsqueeze(0))[0]))(x)


def _bilaplacian(net: nn.Module, x: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """(N, o): sum_ij d4/dx_i^2 dx_j^2 by jacfwd of the Hessian."""
    def laplacian(p: torch.Tensor) -> torch.Tensor:
        h = hessian(lambda q: net(q.unsqueeze(0))[0])(p)
        return torch.stack([h[..., i, i] for i in dims], -1).sum(-1)

    h2 = vmap(jacfwd(jacfwd(laplacian)))(x)  # (N, o, d, d)
    return torch.stack([h2[..., i, i] for i in dims], -1).sum(-1)


@pytest.mark.parametrize("outputs", [1, 2])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dims", [[0], [1, 3], [-1, 0, 2]], ids=str)
def test_partial_laplacian(dims, backend, outputs):
    net, x = _net(outputs), torch.randn(7, 4, dtype=torch.float64)
    result = derivatives(net, x, hessian=Laplacian(dims=dims), backend=backend)
    h = _hessians(net, x)
    expected = sum(h[..., i % 4, i % 4] for i in dims)
    torch.testing.assert_close(result.laplacian, expected.squeeze(-1) if outputs == 1 else expected,
                               rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(result.gradient, derivatives(net, x, backend="autograd").gradient)


@pytest.mark.parametrize("outputs", [1, 2])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", ["shared", "per-sample"])
@pytest.mark.parametrize("r", [1, 3, 4, 6], ids=lambda r: f"r={r}")
def test_weighted_laplacian(r, shape, backend, outputs):
    """tr(sigma sigma^T H) for r < d, r = d and r > d, sigma shared (d, r) or per sample (N, d, r)."""
    net, x = _net(outputs), torch.randn(6, 4, dtype=torch.float64)
    sigma = torch.randn((4, r) if shape == "shared" else (6, 4, r), dtype=torch.float64)
    result = derivatives(net, x, hessian=Laplacian(weights=sigma), backend=backend)
    per_sample = sigma if sigma.dim() == 3 else sigma.expand(6, 4, r)
    expected = torch.einsum("noij,nik,njk->no", _hessians(net, x), per_sample, per_sample)
    torch.testing.assert_close(result.laplacian, expected.squeeze(-1) if outputs == 1 else expected,
                               rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weighted_laplacian_is_differentiable_in_parameters_x_and_sigma(backend):
    """A Kolmogorov-type residual b . grad u + 1/2 tr(sigma sigma^T H): gradients agree with the autograd engine."""
    net = _net()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    sigma = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    drift = torch.randn(4, dtype=torch.float64)
    wrt = [*net.parameters(), x, sigma]

    def residual_grads(name: str) -> tuple[torch.Tensor, ...]:
        out = derivatives(net, x, hessian=Laplacian(weights=sigma), backend=name)
        residual = out.gradient @ drift + 0.5 * out.laplacian
        return torch.autograd.grad(residual.square().mean(), wrt, allow_unused=True, materialize_grads=True)

    for got, expected in zip(residual_grads(backend), residual_grads("autograd")):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_the_hutchinson_estimate_is_unbiased_and_reproducible(distribution):
    net, x = _net(), torch.randn(3, 4, dtype=torch.float64)
    exact = torch.diagonal(_hessians(net, x), dim1=-2, dim2=-1).sum(-1)[:, 0]
    generator = torch.Generator().manual_seed(7)
    draws = torch.stack([
        derivatives(net, x, hessian=Laplacian(samples=4, distribution=distribution, generator=generator)).laplacian
        for _ in range(400)
    ])
    standard_error = draws.std(0) / math.sqrt(draws.shape[0])
    assert bool(((draws.mean(0) - exact).abs() <= 4 * standard_error + 1e-12).all()), (draws.mean(0), exact)
    again = [derivatives(net, x, hessian=Laplacian(samples=4, distribution=distribution,
                                                   generator=torch.Generator().manual_seed(11))).laplacian
             for _ in range(2)]
    torch.testing.assert_close(again[0], again[1], rtol=0, atol=0)


def test_the_hutchinson_estimate_is_the_same_on_both_engines_for_the_same_generator_state():
    net, x = _net(), torch.randn(5, 4, dtype=torch.float64)
    a = derivatives(net, x, hessian=Laplacian(samples=3, generator=torch.Generator().manual_seed(5)), backend="kernel")
    b = derivatives(net, x, hessian=Laplacian(samples=3, generator=torch.Generator().manual_seed(5)),
                    backend="autograd")
    torch.testing.assert_close(a.laplacian, b.laplacian, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("outputs", [1, 2])
@pytest.mark.parametrize("dims", [None, [0, 2]], ids=str)
def test_bilaplacian_exact(dims, outputs, backend):
    net, x = _net(outputs), torch.randn(4, 4, dtype=torch.float64)
    result = derivatives(net, x, hessian=Bilaplacian(dims=dims), backend=backend)
    assert (result.engine, result.algorithm) == (("autograd", "auto") if backend == "autograd" else ("taylor", "bilaplacian"))
    expected = _bilaplacian(net, x, list(range(4)) if dims is None else dims)
    torch.testing.assert_close(result.bilaplacian, expected.squeeze(-1) if outputs == 1 else expected,
                               rtol=1e-9, atol=1e-11)
    assert result.laplacian is None and result.hessian is None


def test_bilaplacian_parameter_gradients_and_estimate():
    net, x = _net(), torch.randn(3, 4, dtype=torch.float64)
    exact = _bilaplacian(net, x, list(range(4)))[:, 0]
    grads = []
    for backend in BACKENDS:
        loss = derivatives(net, x, hessian=Bilaplacian(), backend=backend).bilaplacian.square().sum()
        grads.append(torch.autograd.grad(loss, list(net.parameters()), allow_unused=True, materialize_grads=True))
    for got, expected in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)
    same = [derivatives(net, x, hessian=Bilaplacian(samples=5, generator=torch.Generator().manual_seed(2)),
                        backend=backend).bilaplacian for backend in BACKENDS]
    torch.testing.assert_close(same[0], same[1], rtol=1e-9, atol=1e-11)
    generator = torch.Generator().manual_seed(3)
    draws = torch.stack([derivatives(net, x, hessian=Bilaplacian(samples=8, generator=generator)).bilaplacian
                         for _ in range(300)])
    standard_error = draws.std(0) / math.sqrt(draws.shape[0])
    assert bool(((draws.mean(0) - exact).abs() <= 4 * standard_error + 1e-12).all()), (draws.mean(0), exact)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("order", [0, 1, 4, 8])
@pytest.mark.parametrize("per_sample", [False, True])
def test_directional_derivatives_to_order_eight(order, per_sample, backend):
    net = make_mlp(3, [8, 8], 2, nn.Tanh, torch.float64, "cpu", seed=1)
    x = torch.randn(5, 3, dtype=torch.float64)
    v = torch.randn((5, 3) if per_sample else (3,), dtype=torch.float64)
    got = directional_derivatives(net, x, v, order=order, backend=backend)
    assert got.shape == (5, 2, order + 1)
    for n in range(5):
        direction = v[n] if per_sample else v
        g = lambda t, n=n, direction=direction: net((x[n] + t * direction).unsqueeze(0))[0]  # noqa: E731
        expected, current = [g(torch.zeros((), dtype=torch.float64))], g
        for _ in range(order):
            current = jacfwd(current)
            expected.append(current(torch.zeros((), dtype=torch.float64)))
        torch.testing.assert_close(got[n], torch.stack(expected, -1), rtol=1e-9, atol=1e-10)


def test_directional_derivatives_shapes_and_gradients():
    net = _net()
    x = torch.randn(6, 4, dtype=torch.float64)
    v = torch.randn(4, dtype=torch.float64)
    params = list(net.parameters())
    grads = [torch.autograd.grad(directional_derivatives(net, x, v, order=3, backend=b)[:, 3].sum(), params,
                                 allow_unused=True, materialize_grads=True) for b in BACKENDS]
    for got, expected in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)
    assert directional_derivatives(net, x, v, order=3).shape == (6, 4)
    assert directional_derivatives(net, x[0], v, order=3).shape == (4,)
    third = directional_derivatives(net, x, v, order=3)[:, 3]
    grads = torch.autograd.grad(third.sum(), list(net.parameters()), allow_unused=True, materialize_grads=True)
    assert all(torch.isfinite(g).all() for g in grads)
    scalar = directional_derivatives(torch.sin, torch.linspace(0, 1, 5, dtype=torch.float64),
                                     torch.tensor(1.0, dtype=torch.float64), order=2)
    torch.testing.assert_close(scalar[:, 2], -torch.sin(torch.linspace(0, 1, 5, dtype=torch.float64)))


# ----------------------------------------------------------------------------- bad input


def test_bad_operator_arguments_are_refused_naming_the_argument():
    x = torch.randn(5, 4, dtype=torch.float64)
    net = _net()
    with pytest.raises(ValueError, match=r"Laplacian\(dims=...\): index 4 is out of range"):
        derivatives(net, x, hessian=Laplacian(dims=[4]))
    with pytest.raises(ValueError, match=r"Laplacian\(dims=...\) names the same index more than once"):
        derivatives(net, x, hessian=Laplacian(dims=[1, -3]))
    with pytest.raises(ValueError, match=r"samples=...\) must be >= 1"):
        Laplacian(samples=0)
    with pytest.raises(TypeError, match=r"samples=...\) must be an int"):
        Laplacian(samples=2.0)
    with pytest.raises(ValueError, match="distribution"):
        Laplacian(samples=2, distribution="uniform")
    with pytest.raises(ValueError, match="weights= or samples="):
        Laplacian(weights=torch.ones(4, 2), samples=2)
    with pytest.raises(ValueError, match=r"must have shape \(d, r\) = \(4, r\)"):
        derivatives(net, x, hessian=Laplacian(weights=torch.ones(3, 2, dtype=torch.float64)))
    with pytest.raises(ValueError, match=r"\(N, d, r\) = \(5, 4, r\)"):
        derivatives(net, x, hessian=Laplacian(weights=torch.ones(6, 4, 2, dtype=torch.float64)))
    with pytest.raises(TypeError, match="must have x's dtype"):
        derivatives(net, x, hessian=Laplacian(weights=torch.ones(4, 2)))
    with pytest.raises(ValueError, match="is on meta but x is on cpu"):
        derivatives(net, x, hessian=Laplacian(weights=torch.ones(4, 2, dtype=torch.float64, device="meta")))
    with pytest.raises(TypeError, match="generator"):
        Laplacian(samples=2, generator=3)
    with pytest.raises(TypeError, match="dims"):
        Bilaplacian(dims="all")
    with pytest.raises(ValueError, match="order must be non-negative"):
        directional_derivatives(net, x, x[0], order=-1)
    with pytest.raises(TypeError, match="order must be an int"):
        directional_derivatives(net, x, x[0], order=2.0)
    with pytest.raises(ValueError, match=r"v must have shape \(d,\) = \(4,\)"):
        directional_derivatives(net, x, torch.ones(3, dtype=torch.float64))
    with pytest.raises(TypeError, match="v must have x's dtype"):
        directional_derivatives(net, x, torch.ones(4))
    with pytest.raises(NotServed, match=r"not an nn.Sequential.*no Taylor rule for aten\.i0"):
        directional_derivatives(lambda t: torch.special.i0(net(t)), x, x[0], order=2, backend="kernel")
    with pytest.raises(NotServed, match="exceeds the kernels' highest order"):
        directional_derivatives(net, x, x[0], order=9, backend="kernel")
