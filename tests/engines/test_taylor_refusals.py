"""Networks that do not compute what their layer types say, or do not match x, never reach the Taylor kernels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hoderiv_ext import NotServed, derivatives

from conftest import make_mlp


def _net() -> nn.Sequential:
    return make_mlp(3, [6, 6], 1, nn.Tanh, torch.float64, "cpu")


def test_an_instance_level_forward_override_is_honoured():
    """Regression: the Taylor engine ignored layer.forward = ... and differentiated another network.

    Such a network is no plan; it is traced, and the trace runs the override.
    """
    net = _net()
    x = torch.randn(5, 3, dtype=torch.float64)
    net[1].forward = lambda t: 2 * torch.tanh(t)
    result = derivatives(net, x, hessian="laplacian", backend="kernel")
    assert (result.engine, result.algorithm) == ("taylor", "traced")
    torch.testing.assert_close(result.value, net(x).squeeze(-1))
    expected = derivatives(lambda t: net(t), x, hessian="laplacian", backend="autograd")
    torch.testing.assert_close(result.laplacian, expected.laplacian)


@pytest.mark.parametrize("kind", ["full_backward", "backward_pre"])
def test_backward_hooks_keep_a_network_off_the_taylor_engine(kind):
    """Regression: full backward hooks were skipped by the Taylor engine."""
    net = _net()
    hook = lambda *args: None  # noqa: E731
    handle = (net[2].register_full_backward_hook(hook) if kind == "full_backward"
              else net[2].register_full_backward_pre_hook(hook))
    try:
        with pytest.raises(NotServed, match="layer '2' has backward hooks"):
            derivatives(net, torch.randn(4, 3, dtype=torch.float64), hessian="laplacian", backend="kernel")
    finally:
        handle.remove()
    assert derivatives(net, torch.randn(4, 3, dtype=torch.float64), hessian="laplacian").engine == "taylor"


def test_a_global_backward_hook_keeps_every_network_off_the_taylor_engine():
    net = _net()
    handle = nn.modules.module.register_module_full_backward_hook(lambda *args: None)
    try:
        with pytest.raises(NotServed, match="global hook"):
            derivatives(net, torch.randn(4, 3, dtype=torch.float64), hessian="laplacian", backend="kernel")
    finally:
        handle.remove()


@pytest.mark.parametrize("backend", ["kernel", "auto", "autograd"])
def test_parameters_on_another_device_are_refused_naming_the_layer(backend):
    """Regression: a meta bias among CPU tensors reached the fake kernel and returned uninitialised memory."""
    net = _net()
    net[4].bias = nn.Parameter(torch.randn(1, dtype=torch.float64, device="meta"))
    with pytest.raises(ValueError, match="layer '4' \\(Linear\\): its bias is on meta but x is on cpu"):
        derivatives(net, torch.randn(4, 3, dtype=torch.float64), hessian="laplacian", backend=backend)


@pytest.mark.parametrize("backend", ["kernel", "auto", "autograd"])
def test_parameters_of_another_dtype_are_refused_naming_the_layer(backend):
    """Regression: float32 x with a float64 network gave torch's raw "mat1 and mat2 must have the same dtype"."""
    with pytest.raises(TypeError, match="layer '0' \\(Linear\\): its weight is torch.float64 but x is torch.float32"):
        derivatives(_net(), torch.randn(4, 3), hessian="laplacian", backend=backend)


def test_a_network_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match="layer '0' \\(Linear\\) takes 3 inputs but receives 2"):
        derivatives(_net(), torch.randn(4, 2, dtype=torch.float64), hessian="laplacian")


def test_any_f_returning_another_dtype_or_device_is_refused():
    """Regression: an f returning float64 for float32 x gave mixed-dtype results."""
    net = _net()
    with pytest.raises(TypeError, match="f must return x's dtype torch.float32"):
        derivatives(lambda t: net(t.double()), torch.randn(4, 3), hessian="laplacian")
    with pytest.raises(ValueError, match="on x's device cpu"):
        derivatives(lambda t: t.sum(-1).to("meta"), torch.randn(4, 3), hessian=None)


def test_auto_runs_the_taylor_engine_on_cpu():
    """Issue: backend="auto" used the slow autograd engine on CPU for the networks the kernels serve."""
    net = make_mlp(3, [16, 16], 1, nn.Tanh, torch.float32, "cpu")
    x = torch.randn(8, 3)
    assert derivatives(net, x, hessian="laplacian").engine == "taylor"
    assert derivatives(net, x, hessian=None).algorithm == "reverse"
    assert derivatives(net, x, hessian=[1]).algorithm == "forward_over_reverse"
    assert derivatives(lambda t: net(t), x, hessian="laplacian").algorithm == "traced"
