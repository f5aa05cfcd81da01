"""What the traced Taylor engine must refuse, and what backend="auto" then does.

Functions that mix samples across the batch: ValueError (the independence error) under
backend="kernel" and "auto". Randomness (dropout in training, noise drawn from x): refused under
"kernel" (ValueError or NotServed), never served by the Taylor engine under "auto". Data-dependent
Python control flow and ops without a Taylor rule: NotServed under "kernel", the autograd engine with
correct values under "auto". The same networks in eval mode are served, so the refusals are about
training mode, not the layer types.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hoderiv_ext import Derivatives, NotServed, derivatives

Function = Callable[[Tensor], Tensor]

INDEPENDENCE = "mix|independ|sample"  # the independence error (tests/api/test_independence.py: "f mixes samples")
FIELDS = ("value", "gradient", "hessian", "hessian_rows", "hessian_diagonal", "laplacian")


def sample_x(n: int = 6, d: int = 3, seed: int = 0) -> Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def assert_same_fields(got: Derivatives, expected: Derivatives) -> None:
    for name in FIELDS:
        a, b = getattr(got, name), getattr(expected, name)
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}: {m}")


def mlp_with(layer: nn.Module, d: int = 3, seed: int = 0) -> nn.Sequential:
    """Linear(d, 8), ``layer``, tanh, Linear(8, 1), float64."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 8), layer, nn.Tanh(), nn.Linear(8, 1)).double()


# ----------------------------------------------------------------------------- batch mixing


MIXING: list = [
    pytest.param(lambda: (lambda x: (x - x.mean(0)).pow(2).sum(-1)), id="centred-by-batch-mean"),
    pytest.param(lambda: (lambda x: x.sum(-1) * x[0].sum()), id="times-first-sample"),
    pytest.param(lambda: (lambda x: x.sum(-1) * x.sum()), id="times-batch-sum"),
    pytest.param(lambda: mlp_with(nn.BatchNorm1d(8)).train(), id="batch-norm-training"),
    pytest.param(lambda: (lambda x: torch.tanh(x).sum(-1) / x.shape[0]), id="divided-by-batch-size"),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("hessian", [None, "laplacian"], ids=str)
@pytest.mark.parametrize("backend", ["kernel", "auto"])
@pytest.mark.parametrize("make_f", MIXING)
def test_batch_mixing_is_refused(make_f: Callable[[], Function], backend: str, hessian: object) -> None:
    with pytest.raises(ValueError, match=INDEPENDENCE):
        derivatives(make_f(), sample_x(), hessian=hessian, backend=backend)


def test_batch_norm_in_eval_mode_is_served() -> None:
    """The refusal above is about batch statistics: with running statistics the traced engine serves it."""
    net = mlp_with(nn.BatchNorm1d(8))
    net.train()
    with torch.no_grad():
        net(sample_x(32, seed=5))  # running statistics away from 0 / 1
    net.eval()
    x = sample_x()
    got = derivatives(net, x, hessian="full", backend="kernel")
    assert got.engine == "taylor"
    assert_same_fields(got, derivatives(net, x, hessian="full", backend="autograd"))


# ----------------------------------------------------------------------------- randomness


RANDOM: list = [
    pytest.param(lambda: mlp_with(nn.Dropout(0.5)).train(), id="dropout-module-training"),
    pytest.param(lambda: (lambda x: F.dropout(torch.tanh(x), 0.5, training=True).sum(-1)), id="functional-dropout"),
    pytest.param(lambda: (lambda x: (x + torch.randn_like(x)).pow(2).sum(-1)), id="randn-like-noise"),
]


@pytest.mark.parametrize("make_f", RANDOM)
def test_randomness_is_refused_by_the_kernel_backend(make_f: Callable[[], Function]) -> None:
    with pytest.raises((ValueError, NotServed)):
        derivatives(make_f(), sample_x(), hessian="laplacian", backend="kernel")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("make_f", RANDOM)
def test_randomness_never_reaches_the_taylor_engine_under_auto(make_f: Callable[[], Function]) -> None:
    """auto either refuses (the probe sees outputs change) or runs the autograd engine, as it always has."""
    try:
        result = derivatives(make_f(), sample_x(), hessian="laplacian", backend="auto")
    except ValueError:
        return
    assert result.engine == "autograd"


def test_dropout_in_eval_mode_is_served() -> None:
    net = mlp_with(nn.Dropout(0.5)).eval()
    x = sample_x()
    got = derivatives(net, x, hessian="laplacian", backend="kernel")
    assert got.engine == "taylor"
    assert_same_fields(got, derivatives(net, x, hessian="laplacian", backend="autograd"))


# ----------------------------------------------------------------------------- data-dependent control flow


class ClipsLargeActivations(nn.Module):
    """A "safety" branch on the values of a hidden layer: Python control flow on tensor data."""

    def __init__(self, d: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.hidden = nn.Linear(d, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.hidden(x))
        if h.abs().max() > 10:  # never taken: tanh is bounded by 1
            h = h / h.abs().max()
        return self.out(h)


def branch_on_the_batch(x: Tensor) -> Tensor:
    return x.sin().sum(-1) if x.sum() > 0 else x.cos().sum(-1)


CONTROL_FLOW: list = [
    pytest.param(lambda: branch_on_the_batch, id="if-on-x-sum"),
    pytest.param(lambda: ClipsLargeActivations().double(), id="if-on-activations"),
]


@pytest.mark.parametrize("make_f", CONTROL_FLOW)
def test_data_dependent_control_flow_is_not_served_by_the_kernel_backend(make_f: Callable[[], Function]) -> None:
    x = sample_x().abs() + 0.1  # x.sum() > 0 for every subset of the batch: the branch is the same for all
    with pytest.raises(NotServed):
        derivatives(make_f(), x, hessian="laplacian", backend="kernel")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("hessian", ["laplacian", "full"])
@pytest.mark.parametrize("make_f", CONTROL_FLOW)
def test_data_dependent_control_flow_falls_back_to_autograd_under_auto(make_f: Callable[[], Function],
                                                                     hessian: str) -> None:
    f = make_f()
    x = sample_x().abs() + 0.1
    result = derivatives(f, x, hessian=hessian, backend="auto")
    assert result.engine == "autograd"
    assert_same_fields(result, derivatives(f, x, hessian=hessian, backend="autograd"))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_branch_taken_gives_the_right_values_under_auto() -> None:
    x = sample_x().abs() + 0.1
    result = derivatives(branch_on_the_batch, x, hessian="laplacian", backend="auto")
    assert result.engine == "autograd"
    torch.testing.assert_close(result.value, x.sin().sum(-1))
    torch.testing.assert_close(result.gradient, x.cos())
    torch.testing.assert_close(result.laplacian, -x.sin().sum(-1))


# ----------------------------------------------------------------------------- ops without a Taylor rule


UNSUPPORTED: list = [  # autograd differentiates these twice; no Taylor rule is expected for them
    pytest.param(lambda x: torch.special.i0(x).sum(-1), id="special.i0"),
    pytest.param(lambda x: torch.special.erfcx(torch.tanh(x)).sum(-1), id="special.erfcx"),
]


@pytest.mark.parametrize("f", UNSUPPORTED + [pytest.param(lambda x: torch.special.bessel_j0(x).sum(-1),
                                                          id="special.bessel_j0")])
def test_an_unsupported_op_is_not_served_by_the_kernel_backend(f: Function) -> None:
    with pytest.raises(NotServed, match=r"no Taylor rule for aten\.\w+\.default at .*test_traced_refusals\.py") as error:
        derivatives(f, sample_x(), hessian="laplacian", backend="kernel")
    op = str(error.value).split("no Taylor rule for ")[1].split(" ")[0]
    assert str(error.value).count(op) == 1  # the op and its line, said once


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("hessian", ["laplacian", "full", [0, 2]], ids=str)
@pytest.mark.parametrize("f", UNSUPPORTED)
def test_an_unsupported_op_falls_back_to_autograd_under_auto(f: Function, hessian: object) -> None:
    x = sample_x()
    result = derivatives(f, x, hessian=hessian, backend="auto")
    assert result.engine == "autograd"
    assert_same_fields(result, derivatives(f, x, hessian=hessian, backend="autograd"))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_i0_fallback_values_are_the_closed_forms() -> None:
    """d/dx I0 = I1 and d2/dx2 I0 = I0 - I1 / x: the fallback really differentiates the op."""
    x = sample_x().abs() + 0.1
    result = derivatives(lambda t: torch.special.i0(t).sum(-1), x, hessian="laplacian", backend="auto")
    torch.testing.assert_close(result.gradient, torch.special.i1(x))
    torch.testing.assert_close(result.laplacian, (torch.special.i0(x) - torch.special.i1(x) / x).sum(-1))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_bessel_j0_falls_back_to_autograd_under_auto() -> None:
    """torch has no derivative for bessel_j0; auto still leaves it to the autograd engine (value checked only)."""
    x = sample_x()
    result = derivatives(lambda t: torch.special.bessel_j0(t).sum(-1), x, hessian="laplacian", backend="auto")
    assert result.engine == "autograd"
    torch.testing.assert_close(result.value, torch.special.bessel_j0(x).sum(-1))
