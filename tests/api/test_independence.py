"""The sample-independence rule as derivatives() enforces it (core/independence.py).

Batch norm on batch statistics refused wherever f reaches it; the probe catches samples that
interact, leaves the RNG alone and works for an f that differentiates internally; random layers in
training and the Taylor engine's per-sample networks skip it; check_independence=False skips it all.
"""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from hoderiv_ext import derivatives
from hoderiv_ext.core.independence import probe_independence
from hoderiv_ext.core.validation import canonical_input

from conftest import make_mlp


BATCH_NORM_NET = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 1)).double()


def uses_global_batch_norm_net(x: torch.Tensor) -> torch.Tensor:
    return 2 * BATCH_NORM_NET(x)


class Wrapper:
    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.parametrize(
    "make_f",
    [
        pytest.param(lambda net: net, id="module"),
        pytest.param(lambda net: (lambda x: net(x) + 1), id="closure"),
        pytest.param(lambda net: uses_global_batch_norm_net, id="global"),
        pytest.param(lambda net: Wrapper(net), id="callable-object"),
        pytest.param(lambda net: nn.Sequential(nn.Identity(), net), id="nested"),
    ],
)
def test_batch_norm_in_training_mode_is_refused(make_f) -> None:
    BATCH_NORM_NET.train()
    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"BatchNorm1d.*\.eval\(\)"):
        derivatives(make_f(BATCH_NORM_NET), x, "laplacian")
    BATCH_NORM_NET.eval()
    try:
        assert derivatives(make_f(BATCH_NORM_NET), x, "laplacian").laplacian.shape == (4,)
    finally:
        BATCH_NORM_NET.train()


def test_batch_norm_without_running_statistics_is_refused_even_in_eval_mode() -> None:
    net = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 1)).eval()
    with pytest.raises(ValueError, match="batch statistics"):
        derivatives(net, torch.randn(4, 2), None)


def test_check_independence_false_skips_the_checks() -> None:
    BATCH_NORM_NET.train()
    result = derivatives(BATCH_NORM_NET, torch.randn(4, 2, dtype=torch.float64), "laplacian", check_independence=False)
    assert result.laplacian.shape == (4,)


@pytest.mark.parametrize(
    "f",
    [
        pytest.param(lambda x: x.pow(2).sum(-1, keepdim=True) + torch.sum(x**3), id="batch-sum"),
        pytest.param(lambda x: (x - x.mean(0)).pow(2).sum(-1), id="batch-mean"),
        pytest.param(lambda x: x.sum(-1) / x.shape[0], id="batch-size"),
        pytest.param(lambda x: torch.softmax(x.sum(-1), 0), id="softmax-over-batch"),
    ],
)
@pytest.mark.parametrize("backend", ["auto", "autograd"])
def test_probe_detects_samples_that_interact(f, backend) -> None:
    """backend="autograd": the probe; "auto": the trace (which names the op)."""
    x = torch.tensor([[0.5, 1.0], [1.5, -0.5], [2.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="f mixes samples: its output" if backend == "autograd" else
                       r"f mixes samples \(found in its trace\)"):
        derivatives(f, x, "laplacian", backend=backend)
    derivatives(f, x[:1], "laplacian", backend=backend)  # one sample: nothing to mix


def test_probe_sees_mixing_when_the_first_sample_contributes_nothing() -> None:
    x = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="sample 0"):
        derivatives(lambda t: t.sum(-1, keepdim=True) + torch.sum(t**3), x, None, backend="autograd")


def test_dropout_in_training_mode_skips_the_probe_and_keeps_the_rng_state() -> None:
    net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 1)).double().train()
    result = derivatives(net, torch.randn(8, 3, dtype=torch.float64), "laplacian")
    assert result.laplacian.shape == (8,)


def test_probes_do_not_consume_random_numbers() -> None:
    def draws_noise(x: torch.Tensor) -> torch.Tensor:  # deterministic value, but it consumes the RNG
        return x.pow(2).sum(-1) + 0.0 * torch.rand(1, dtype=x.dtype)

    x = torch.randn(4, 3, dtype=torch.float64)
    torch.manual_seed(123)
    batch_value = draws_noise(x)[:, None]
    torch.manual_seed(123)
    probe_independence(draws_noise, x, batch_value)
    canonical_input(draws_noise, x[0])
    after_probes = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after_probes)


def test_probes_work_for_f_that_differentiates_internally() -> None:
    """A score-model style f (the gradient of an energy) needs grad mode inside the probes too."""

    def score(x: torch.Tensor) -> torch.Tensor:  # fails under torch.no_grad()
        inner = x if x.requires_grad else x.detach().requires_grad_(True)
        energy = inner.pow(4).sum() / 4  # its gradient is x^3, entry by entry
        (gradient,) = torch.autograd.grad(energy, inner, create_graph=True)
        return gradient.sum(-1, keepdim=True)  # sum_i x_i^3: Laplacian 6 sum_i x_i

    x = torch.randn(4, 3, dtype=torch.float64)
    result = derivatives(score, x, "laplacian")
    torch.testing.assert_close(result.laplacian, 6 * x.sum(-1))


def test_per_sample_sequentials_skip_the_independence_probe(monkeypatch):
    """Both engines skip the probe for the Taylor engine's layer set; any other f is probed."""
    probed = []
    entry_module = sys.modules["hoderiv_ext.api.derivatives"]
    monkeypatch.setattr(entry_module, "probe_independence", lambda f, x, value: probed.append(f))
    net = make_mlp(2, [4], 1, nn.Tanh, torch.float64, "cpu")
    x = torch.randn(5, 2, dtype=torch.float64)
    for backend in ("auto", "autograd", "kernel"):
        derivatives(net, x, hessian="laplacian", backend=backend)
    assert probed == []
    wrapped = lambda t: net(t)  # noqa: E731 - opaque to the layer check, but traced: the trace proves it
    derivatives(wrapped, x, hessian="laplacian")
    assert probed == []
    derivatives(wrapped, x, hessian="laplacian", backend="autograd")  # the autograd engine probes
    assert probed == [wrapped]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_refused_trace_walks_the_modules_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The selection walks f's modules (batch statistics) before tracing; when the trace is refused and the
    autograd engine serves the call, its independence check reuses that walk."""
    from hoderiv_ext.core import independence
    from hoderiv_ext.engines import select

    net = make_mlp(2, [4], 1, nn.Tanh, torch.float64, "cpu")
    f = lambda x: torch.special.i0(net(x))  # noqa: E731 - no Taylor rule for i0: the trace is refused
    walks = []
    original = independence.reachable_modules

    def counting(g: object, *args: object, **kwargs: object) -> list[nn.Module]:
        walks.append(g)
        return original(g, *args, **kwargs)

    monkeypatch.setattr(independence, "reachable_modules", counting)
    monkeypatch.setattr(select, "reachable_modules", counting)
    result = derivatives(f, torch.randn(4, 2, dtype=torch.float64), "laplacian")
    assert result.engine == "autograd"
    assert walks == [f]
