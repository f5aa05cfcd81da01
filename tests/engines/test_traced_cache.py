"""The traced programs' cache: traced once, reused, retraced when the structure changes, cleared on request."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hoderiv_ext
from hoderiv_ext import NotServed, derivatives
from hoderiv_ext.engines.taylor.traced import capture


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    hoderiv_ext.clear_trace_cache()


class Sine(nn.Module):
    """2 sin(h): two ops, so the network is traced (sin(h) or sin(2 h) would run the plan: traced_activation)."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return 2.0 * torch.sin(h)


def _siren() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 8), Sine(), nn.Linear(8, 1)).double()


def _traces(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    calls: list[object] = []
    original = capture._trace
    monkeypatch.setattr(capture, "_trace", lambda f, x: calls.append(f) or original(f, x))
    return calls


def test_a_function_is_traced_once_for_every_batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _traces(monkeypatch)
    net = _siren()
    for n in (5, 9, 1, 5):
        derivatives(net, torch.randn(n, 2, dtype=torch.float64), "laplacian")
    assert len(calls) == 1
    (entry,) = hoderiv_ext.trace_cache_info()
    assert entry["function"] == "Sequential" and entry["refused"] is None and entry["trace_seconds"] > 0
    hoderiv_ext.clear_trace_cache()
    assert hoderiv_ext.trace_cache_info() == []


def test_a_refusal_is_cached_and_auto_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _traces(monkeypatch)
    f = lambda x: torch.special.i0(x).sum(-1)  # noqa: E731 - i0 has no jet rule
    for _ in range(3):
        assert derivatives(f, torch.randn(4, 2, dtype=torch.float64), "laplacian").engine == "autograd"
    assert len(calls) == 1
    assert "aten.i0" in hoderiv_ext.trace_cache_info()[0]["refused"]


def test_structure_changes_retrace(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _traces(monkeypatch)
    net = _siren()
    x = torch.randn(4, 2, dtype=torch.float64)
    derivatives(net, x, "laplacian")
    net[0] = nn.Linear(2, 8).double()  # a replaced layer
    replaced = derivatives(net, x, "laplacian")
    torch.testing.assert_close(replaced.laplacian, derivatives(net, x, "laplacian", backend="autograd").laplacian)
    net.eval()  # train/eval switched
    derivatives(net, x, "laplacian")
    with torch.no_grad():
        net[0].weight.mul_(2.0)  # an in-place update: no retrace, the new values are read
    updated = derivatives(net, x, "laplacian")
    torch.testing.assert_close(updated.laplacian, derivatives(net, x, "laplacian", backend="autograd").laplacian)
    assert len(calls) == 3


def test_hooks_keep_a_module_off_the_traced_engine() -> None:
    net = _siren()
    handle = net[1].register_forward_hook(lambda module, args, out: 2 * out)
    try:
        with pytest.raises(NotServed, match="layer '1' has hooks"):
            derivatives(net, torch.randn(3, 2, dtype=torch.float64), "laplacian", backend="kernel")
    finally:
        handle.remove()


def test_inference_mode_leaves_nothing_behind() -> None:
    net = _siren()
    x = torch.randn(4, 2, dtype=torch.float64)
    with torch.inference_mode():
        inside = derivatives(net, x, "laplacian")  # traced inside inference mode
    assert inside.algorithm == "traced" and not inside.laplacian.requires_grad
    outside = derivatives(net, x, "laplacian", create_graph=True)  # the cached program, in grad mode
    (grad,) = torch.autograd.grad(outside.laplacian.sum(), net[0].weight)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(inside.laplacian, outside.laplacian.detach())


def test_in_place_ops_on_inputs_and_dtype_changes_are_not_served() -> None:
    x = torch.randn(3, 2, dtype=torch.float64)
    with pytest.raises(NotServed, match="in place"):
        derivatives(lambda t: t.mul_(2).sum(-1), x.clone(), "laplacian", backend="kernel")
    with pytest.raises(NotServed, match="converted"):
        derivatives(lambda t: t.float().double().sin().sum(-1), x, "laplacian", backend="kernel")


def test_a_new_lambda_every_step_is_traced_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the cache was keyed by the function object, so a lambda written inside a training
    loop was traced again at every step."""
    calls = _traces(monkeypatch)
    net = _siren()
    x = torch.randn(4, 2, dtype=torch.float64)
    for _ in range(4):
        derivatives(lambda t: t[:, :1] * net(t), x, "laplacian")
    assert len(calls) == 1


SCALE = 2.0


def _scaled_by_a_global(t: torch.Tensor) -> torch.Tensor:
    return SCALE * torch.sin(t).sum(-1)


def test_python_scalars_a_trace_bakes_in_are_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    """A global, a closure value or a module attribute read as a Python number is a constant of the trace:
    changing it must retrace, not return the old function's derivatives."""
    global SCALE
    x = torch.randn(4, 2, dtype=torch.float64)
    first = derivatives(_scaled_by_a_global, x, "laplacian").laplacian
    SCALE = 3.0
    try:
        again = derivatives(_scaled_by_a_global, x, "laplacian").laplacian
    finally:
        SCALE = 2.0
    torch.testing.assert_close(again, 1.5 * first)

    class Sine(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w0 = 1.0

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return torch.sin(self.w0 * h).sum(-1)

    sine = Sine()
    before = derivatives(sine, x, "laplacian").laplacian
    sine.w0 = 2.0
    after = derivatives(sine, x, "laplacian")
    torch.testing.assert_close(after.laplacian, derivatives(sine, x, "laplacian", backend="autograd").laplacian)
    assert not torch.allclose(before, after.laplacian)


def test_a_deleted_model_leaves_the_cache() -> None:
    import gc

    net = _siren()
    derivatives(net, torch.randn(3, 2, dtype=torch.float64), "laplacian")
    assert len(hoderiv_ext.trace_cache_info()) == 1
    del net
    gc.collect()
    assert hoderiv_ext.trace_cache_info() == []
