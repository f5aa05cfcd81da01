"""engines/select.py: which engine and algorithm serve a call.

backend="auto" takes the autograd engine on CPU and the Taylor engine on CUDA, warning once per
reason for a module it cannot serve; backend="kernel" refuses with the reason; unsupported layers,
dropout in training and forward hooks keep a network off the Taylor engine; the Taylor algorithm
(forward, mixed, forward-over-reverse) follows the request and the output width.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from hoderiv_ext import NotServed, derivatives
from hoderiv_ext.core.requests import parse_hessian_request
from hoderiv_ext.engines import select
from hoderiv_ext.engines.taylor import engine as taylor_engine
from hoderiv_ext.engines.taylor.plan import build_plan

from conftest import make_mlp, needs_cuda


def not_served_reason(f) -> str | None:
    try:
        build_plan(f)
    except NotServed as error:
        return error.reason
    return None


class Bessel(nn.Module):
    """An activation whose aten op (i0) has no jet rule."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.special.i0(h)


def test_a_network_that_is_no_plan_is_traced_and_an_untraceable_one_falls_back():
    net = nn.Sequential(nn.Linear(2, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 1)).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    reason = not_served_reason(net)  # no plan: the plan serves Linear layers and activations only
    assert reason is not None and "'1' (LayerNorm)" in reason
    served = derivatives(net, x, hessian="laplacian", backend="kernel")
    assert (served.engine, served.algorithm) == ("taylor", "traced")
    bessel = nn.Sequential(nn.Linear(2, 4), Bessel(), nn.Linear(4, 1)).double()
    with pytest.raises(RuntimeError, match=r"LayerNorm|no Taylor rule for aten\.i0"):
        derivatives(bessel, x, hessian="laplacian", backend="kernel")
    with pytest.warns(RuntimeWarning, match=r"no Taylor rule for aten\.i0.*test_select\.py"):
        assert derivatives(bessel, x, hessian="laplacian").engine == "autograd"
    assert not_served_reason(lambda t: t) is not None
    train_dropout = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Tanh()).train()
    assert "Dropout" in not_served_reason(train_dropout)


def test_forward_hooks_keep_a_network_off_the_taylor_engine():
    """A hook can change what a layer computes; the engine would skip it, so it must not serve the net."""
    net = make_mlp(2, [4], 1, nn.Tanh, torch.float64, "cpu")
    x = torch.randn(5, 2, dtype=torch.float64)
    plain = derivatives(net, x, hessian="laplacian", backend="autograd")
    handle = net[1].register_forward_hook(lambda module, args, out: 2 * out)
    try:
        reason = not_served_reason(net)
        assert reason is not None and "layer '1' has forward hooks" in reason
        with pytest.raises(RuntimeError, match="forward hooks"):
            derivatives(net, x, hessian="laplacian", backend="kernel")
        with pytest.warns(RuntimeWarning, match="forward hooks"):
            hooked = derivatives(net, x, hessian="laplacian")  # the autograd engine runs the hook
        assert not torch.allclose(hooked.value, plain.value)
        torch.testing.assert_close(hooked.value, net(x).squeeze(-1))  # net(x) runs the hook too
    finally:
        handle.remove()
    assert not_served_reason(net) is None
    pre = net.register_forward_pre_hook(lambda module, args: None)
    try:
        assert "f has forward hooks" in not_served_reason(net)
    finally:
        pre.remove()
    global_hook = nn.modules.module.register_module_forward_hook(lambda module, args, out: None)
    try:
        assert "global hook" in not_served_reason(net)
    finally:
        global_hook.remove()


def test_kernel_backend_raises_when_the_taylor_engine_cannot_serve_f() -> None:
    with pytest.raises(RuntimeError, match="backend='kernel' cannot serve.*no Taylor rule for aten.i0"):
        derivatives(lambda x: torch.special.i0(x).sum(-1), torch.randn(4, 2), "laplacian", backend="kernel")


def test_auto_uses_the_taylor_engine_on_cpu_too():
    """Regression: backend="auto" used the slower autograd engine for every CPU call."""
    net = make_mlp(2, [4], 1, nn.Tanh, torch.float32, "cpu")
    x = torch.randn(3, 2)
    assert derivatives(net, x, hessian="laplacian").engine == "taylor"
    assert derivatives(net, x, hessian="laplacian", backend="kernel").engine == "taylor"
    assert derivatives(net, x, hessian="laplacian", backend="autograd").engine == "autograd"


def test_auto_traces_plain_functions_and_falls_back_for_untraceable_ones() -> None:
    assert derivatives(lambda x: torch.tanh(x).sum(-1), torch.randn(4, 2), "laplacian").algorithm == "traced"
    assert derivatives(lambda x: torch.special.i0(x).sum(-1), torch.randn(4, 2), "laplacian").engine == "autograd"


def test_not_served_warning_is_given_once_per_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    derivatives_module = select

    monkeypatch.setattr(derivatives_module, "_WARNED_REASONS", set())
    with pytest.warns(RuntimeWarning, match="cannot serve this module \\(reason A\\)"):
        derivatives_module._warn_once_not_served("reason A")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        derivatives_module._warn_once_not_served("reason A")  # the same reason again: silent
    with pytest.warns(RuntimeWarning, match="reason B"):
        derivatives_module._warn_once_not_served("reason B")


@needs_cuda
def test_cuda_auto_uses_taylor_and_warns_once_for_unsupported_modules(fresh_not_served_warnings):
    net = make_mlp(2, [4], 1, nn.Tanh, torch.float32, "cuda")
    x = torch.randn(3, 2, device="cuda")
    served = derivatives(net, x, hessian="laplacian")
    assert (served.engine, served.algorithm) == ("taylor", "forward")
    other = nn.Sequential(nn.Linear(2, 4), nn.LayerNorm(4), nn.Linear(4, 1)).cuda()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        derivatives(other, x, hessian="laplacian")
        derivatives(other, x, hessian="laplacian")
    assert len([w for w in caught if "LayerNorm" in str(w.message)]) == 1


@needs_cuda
def test_auto_on_cuda_warns_for_a_module_the_taylor_engine_does_not_serve(fresh_not_served_warnings) -> None:
    net = nn.Sequential(nn.Linear(2, 8), nn.LayerNorm(8), nn.Linear(8, 1)).cuda()
    with pytest.warns(RuntimeWarning, match="LayerNorm"):
        result = derivatives(net, torch.randn(4, 2, device="cuda"), "laplacian")
    assert result.engine == "autograd"


def test_algorithm_choice_and_mixed_gradgradcheck():
    net = make_mlp(8, [16], 1, nn.Tanh, torch.float64, "cpu")
    plan = build_plan(net)
    assert select.taylor_algorithm(plan, parse_hessian_request([3], 8), 8) == "forward_over_reverse"
    assert select.taylor_algorithm(plan, parse_hessian_request(list(range(8)), 8), 8) == "mixed"  # all rows: full
    assert select.taylor_algorithm(plan, parse_hessian_request("full", 8), 8) == "mixed"
    assert select.taylor_algorithm(plan, parse_hessian_request("laplacian", 8), 8) == "forward"
    assert select.taylor_algorithm(plan, parse_hessian_request(None, 8), 8) == "reverse"
    vector_plan = build_plan(make_mlp(8, [16], 2, nn.Tanh, torch.float64, "cpu"))
    assert select.taylor_algorithm(vector_plan, parse_hessian_request("full", 8), 8) == "forward"
    with pytest.raises(ValueError, match="scalar-output"):
        taylor_engine.run(vector_plan, torch.randn(2, 8, dtype=torch.float64), parse_hessian_request("full", 8), True,
                   algorithm="mixed")
    small = make_mlp(3, [4, 4], 1, nn.SiLU, torch.float64, "cpu")
    small_plan = build_plan(small)
    request = parse_hessian_request("full", 3)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: taylor_engine.run(small_plan, t, request, True, algorithm="mixed")[2], (x,))
    assert torch.autograd.gradgradcheck(lambda t: taylor_engine.run(small_plan, t, request, True, algorithm="mixed")[2], (x,))


def test_operator_requests_pick_their_algorithms():
    from hoderiv_ext import Bilaplacian, Laplacian

    scalar = build_plan(make_mlp(4, [8], 1, nn.Tanh, torch.float64, "cpu"))
    vector = build_plan(make_mlp(4, [8], 2, nn.Tanh, torch.float64, "cpu"))
    weighted = parse_hessian_request(Laplacian(weights=torch.ones(4, 2, dtype=torch.float64)), 4)
    partial = parse_hessian_request(Laplacian(dims=[0, 3]), 4)
    randomized = parse_hessian_request(Laplacian(samples=3), 4)
    for request in (weighted, partial, randomized):
        assert select.taylor_algorithm(scalar, request, 4) == "collapsed_reverse"  # 2 + r slots + a reverse sweep
        assert select.taylor_algorithm(vector, request, 4) == "forward"  # 2 + d + r slots
    assert select.taylor_algorithm(scalar, parse_hessian_request(Bilaplacian(), 4), 4) == "bilaplacian"
    assert select.taylor_algorithm(scalar, parse_hessian_request(Bilaplacian(samples=2), 4), 4) == "univariate"
    net, x = make_mlp(4, [8], 1, nn.Tanh, torch.float64, "cpu"), torch.randn(3, 4, dtype=torch.float64)
    assert derivatives(net, x, hessian=Bilaplacian()).algorithm == "bilaplacian"  # auto: measured faster
    assert derivatives(net, x, hessian=Bilaplacian(samples=2)).algorithm == "univariate"  # auto: measured faster
    assert derivatives(net, x, hessian=Bilaplacian(), backend="kernel").algorithm == "bilaplacian"
    assert derivatives(net, x, hessian=Bilaplacian(samples=2), backend="kernel").algorithm == "univariate"
    assert derivatives(net, x, hessian=Laplacian(dims=[1])).algorithm == "collapsed_reverse"
