"""Skip connections h + phi(v) in a traced graph: folded into phi's fused kernel (jet_activation's residual)
exactly when that is the same computation, and equal to the autograd engine either way.

Folded: phi has one consumer, an add of it and a jet h computed before it, of its shape and dtype. Not
folded (the add runs as its own rule): phi used twice, an add with alpha, a broadcasting add, a constant
h, an h computed after phi. On the affine prefix (phi is the first layer's activation,
jet_activation_first) the sum is taken in place on phi's fresh jet: an affine h (a Linear of x, or x
itself) adds its value and shared tangents without being materialised.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import hoderiv_ext
from hoderiv_ext import derivatives
from hoderiv_ext.engines.taylor.traced import unary_rules
from hoderiv_ext.ops import jet as jet_ops

WIDTH = 8
REQUESTS: list[object] = [None, "full", "diagonal", "laplacian", [0, 2]]
FIELDS = ("value", "gradient", "hessian", "hessian_rows", "hessian_diagonal", "laplacian")


class Skips(nn.Module):
    """h = tanh(Linear(x)), then three blocks combining h and u = tanh(Linear(h)) as ``variant`` says."""

    def __init__(self, d: int, variant: str) -> None:
        super().__init__()
        self.variant = variant
        width = d if variant == "identity" else WIDTH
        self.inp = nn.Linear(d, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(3))
        self.out = nn.Linear(width, 2)
        self.register_buffer("offset", torch.linspace(-1.0, 1.0, width))

    def forward(self, x: Tensor) -> Tensor:
        if self.variant == "identity":  # h = x: the first block's h is the seed itself
            h = x
        elif self.variant == "prefix":  # h = Linear(x): the first block's h is affine in x
            h = self.inp(x)
        else:
            h = torch.tanh(self.inp(x))
        for block in self.blocks:
            u = torch.tanh(block(h))
            if self.variant in ("residual", "prefix", "identity"):
                h = h + u
            elif self.variant == "reversed":
                h = u + h
            elif self.variant == "shared":  # u has a second consumer: the kernel must not return h + u as u
                h = (h + u) * u
            elif self.variant == "alpha":
                h = torch.add(h, u, alpha=0.5)
            elif self.variant == "broadcast":
                h = h[:, :1] + u
            elif self.variant == "constant":
                h = self.offset + u
            elif self.variant == "later":  # the other operand is computed after u
                h = 2.0 * h + u
        return self.out(h)


# The skip connections each variant folds: (into jet_activation's kernel, in place on the first layer's jet).
FOLDED = {"residual": (3, 0), "reversed": (3, 0), "prefix": (2, 1), "identity": (2, 1), "shared": (0, 0),
          "alpha": (0, 0), "broadcast": (0, 0), "constant": (0, 0), "later": (0, 0)}


def _count_folds(monkeypatch: pytest.MonkeyPatch) -> tuple[list[bool], list[bool]]:
    """Records, per jet_activation call, whether it got a residual, and per first-layer activation whether
    it added the residual in place."""
    kernel_calls: list[bool] = []
    first_calls: list[bool] = []
    original = jet_ops.jet_activation
    original_in_place = unary_rules._add_residual_in_place

    def recording(*args: object, **kwargs: object) -> Tensor:
        residual = args[5] if len(args) > 5 else kwargs.get("residual")
        kernel_calls.append(residual is not None)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    def recording_in_place(slots: object, primal: object, data: Tensor) -> None:
        original_in_place(slots, primal, data)  # type: ignore[arg-type]
        first_calls.append(slots.residual_added)  # type: ignore[attr-defined]

    monkeypatch.setattr(jet_ops, "jet_activation", recording)
    monkeypatch.setattr(unary_rules, "_add_residual_in_place", recording_in_place)
    return kernel_calls, first_calls


def _assert_same(got: object, expected: object, rtol: float = 1e-10) -> None:
    for name in FIELDS:
        a, b = getattr(got, name), getattr(expected, name)
        assert (a is None) == (b is None), name
        if a is not None:
            scale = max(1.0, b.abs().max().item())
            torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * scale, msg=lambda m: f"{name}: {m}")


@pytest.fixture(autouse=True)
def _fresh_trace_cache():
    hoderiv_ext.clear_trace_cache()
    yield
    hoderiv_ext.clear_trace_cache()


@pytest.mark.parametrize("hessian", REQUESTS, ids=str)
@pytest.mark.parametrize("variant", list(FOLDED))
def test_skip_connections_fold_exactly_when_they_may(variant: str, hessian: object,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    f = Skips(3, variant).double()
    x = torch.randn(7, 3, dtype=torch.float64)
    derivatives(f, x, hessian=hessian, backend="kernel", create_graph=False)  # traced (and dry-run) once
    kernel_calls, first_calls = _count_folds(monkeypatch)
    got = derivatives(f, x, hessian=hessian, backend="kernel", create_graph=False)
    assert (got.engine, got.algorithm) == ("taylor", "traced")
    assert (sum(kernel_calls), sum(first_calls)) == FOLDED[variant], (variant, kernel_calls, first_calls)
    _assert_same(got, derivatives(f, x, hessian=hessian, backend="autograd", create_graph=False))


@pytest.mark.parametrize("variant", ["residual", "prefix", "identity", "shared"])
def test_parameter_gradients_through_folded_skip_connections(variant: str) -> None:
    """A PINN loss's parameter gradients (the residual's identity gradient in the autograd kernel) equal the
    autograd engine's."""
    torch.manual_seed(1)
    f = Skips(2, variant).double()
    x = torch.randn(6, 2, dtype=torch.float64)
    params = list(f.parameters())

    def loss(backend: str) -> list[Tensor]:
        out = derivatives(f, x, hessian="laplacian", backend=backend)
        value = (out.laplacian ** 2).sum() + (out.gradient ** 2).sum() + out.value.sum()
        return list(torch.autograd.grad(value, params, allow_unused=True))  # "identity" leaves inp unused

    for a, b in zip(loss("kernel"), loss("autograd")):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant", ["residual", "prefix"])
def test_gradgradcheck_of_the_laplacian_through_a_folded_skip_connection(variant: str) -> None:
    torch.manual_seed(2)
    f = Skips(2, variant).double()
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)

    def laplacian(x: Tensor) -> Tensor:
        return derivatives(f, x, hessian="laplacian", backend="kernel").laplacian

    assert torch.autograd.gradcheck(laplacian, (x,))
    assert torch.autograd.gradgradcheck(laplacian, (x,))


@pytest.mark.parametrize("variant", ["residual", "prefix"])
def test_float32_skip_connections(variant: str) -> None:
    torch.manual_seed(3)
    f = Skips(4, variant)
    x = torch.randn(16, 4)
    got = derivatives(f, x, hessian="laplacian", backend="kernel", create_graph=False)
    expected = derivatives(f.double(), x.double(), hessian="laplacian", backend="autograd", create_graph=False)
    torch.testing.assert_close(got.laplacian.double(), expected.laplacian, rtol=1e-4, atol=1e-4)
