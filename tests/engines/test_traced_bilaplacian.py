"""The exact bi-Laplacian on the traced Taylor engine, over the traced corpus, against the autograd engine.

The traced engine carries the full-Hessian jet over D plus the extra slots T_i = Σ_j ∂_i∂_j² v and
B = Σ_ij ∂_i²∂_j² v through every rule (hoderiv_ext.engines.taylor.bilaplacian;
tests/engines/test_traced_rules.py checks each rule alone). Checked here: every corpus architecture
for D = all inputs and a D that is not a run, in float64 to 1e-9; parameter gradients of a loss on
the bi-Laplacian; float32; the empty batch; gradcheck in x; the randomized bi-Laplacian on the
traced engine too; ``backend="auto"`` choosing the traced engine.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from hoderiv_ext import Bilaplacian, Derivatives, derivatives

from test_traced_corpus import (N, Architecture, corpus, parameters_of, sample_x,  # noqa: F401 (corpus helpers)
                                third_order_reference)


def _dims(arch: Architecture, which: str) -> list[int] | None:
    return None if which == "all" else [arch.d - 1, 0]


def _kernel(f: object, x: Tensor, request: Bilaplacian, **kwargs: object) -> Derivatives:
    result = derivatives(f, x, hessian=request, backend="kernel", **kwargs)
    assert (result.engine, result.algorithm) == ("taylor", "traced")
    return result


def _reference(f: object, x: Tensor, request: Bilaplacian, **kwargs: object) -> Derivatives:
    """The autograd engine on f (its layer norms replaced by a twin in torch ops: pytorch/pytorch#175754)."""
    result = derivatives(third_order_reference(f), x, hessian=request, backend="autograd", **kwargs)
    assert result.engine == "autograd"
    return result


def _assert_close(a: Tensor, b: Tensor, rtol: float, atol: float) -> None:
    assert a.shape == b.shape
    scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol * scale)


@pytest.mark.parametrize("which", ["all", "reversed-pair"])
@pytest.mark.parametrize("arch", corpus())
def test_bilaplacian_float64(arch: Architecture, which: str) -> None:
    f = arch()
    x = sample_x(N, arch.d)
    request = Bilaplacian(dims=_dims(arch, which))
    got = _kernel(f, x, request, create_graph=False)
    expected = _reference(f, x, request, create_graph=False)
    lead = (N,) if arch.outputs == 1 else (N, arch.outputs)
    assert got.bilaplacian.shape == lead and got.gradient.shape == lead + (arch.d,)
    for field in ("value", "gradient", "bilaplacian"):
        _assert_close(getattr(got, field), getattr(expected, field), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("arch", corpus("siren", "hard_boundary", "residual", "modified_mlp", "quotient",
                                        "layer_norm_mlp", "exp_output"))
def test_parameter_gradients_of_a_bilaplacian_loss(arch: Architecture) -> None:
    f = arch()
    params = parameters_of(f)
    x = sample_x(N, arch.d)

    def loss(result: Derivatives) -> Tensor:
        return (result.bilaplacian**2).mean() + (result.gradient**2).mean() + (result.value**2).mean()

    got = torch.autograd.grad(loss(_kernel(f, x, Bilaplacian(), create_graph=True)), params)
    expected = torch.autograd.grad(loss(_reference(f, x, Bilaplacian(), create_graph=True)), params)
    for a, b in zip(got, expected):
        _assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("arch", corpus("looped_mlp", "fourier_features", "product", "vector_swish"))
def test_float32(arch: Architecture) -> None:
    f = arch(torch.float32)
    x = sample_x(N, arch.d, torch.float32)
    got = _kernel(f, x, Bilaplacian(), create_graph=False)
    assert got.bilaplacian.dtype == torch.float32
    expected = _reference(arch(), x.double(), Bilaplacian(), create_graph=False)
    _assert_close(got.bilaplacian.double(), expected.bilaplacian, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", corpus("hard_boundary", "vector_swish"))
def test_empty_batch(arch: Architecture) -> None:
    got = _kernel(arch(), sample_x(0, arch.d), Bilaplacian())
    assert got.bilaplacian.shape == ((0,) if arch.outputs == 1 else (0, arch.outputs))


def test_gradcheck_in_x() -> None:
    arch = corpus("hard_boundary")[0].values[0]
    f = arch()
    x = sample_x(3, arch.d, scale=0.3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: _kernel(f, t, Bilaplacian(), create_graph=True).bilaplacian, (x,))


def test_auto_serves_a_traced_function_on_the_taylor_engine() -> None:
    f = corpus("siren")[0].values[0]()
    result = derivatives(f, sample_x(N, 3), hessian=Bilaplacian())
    assert (result.engine, result.algorithm) == ("taylor", "traced")


def test_the_randomized_bilaplacian_of_a_traced_function_runs_on_univariate_jets() -> None:
    """(tests/engines/test_traced_univariate.py checks it over the corpus.)"""
    f = corpus("siren")[0].values[0]()
    x = sample_x(N, 3)
    for backend in ("kernel", "auto"):
        result = derivatives(f, x, hessian=Bilaplacian(samples=4, generator=torch.Generator().manual_seed(0)),
                             backend=backend)
        assert (result.engine, result.algorithm) == ("taylor", "traced")
