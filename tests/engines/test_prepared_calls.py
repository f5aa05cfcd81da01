"""Remembered choices (hoderiv_ext/engines/select.py, ``remembered_choice``; engines/taylor/forward.py,
``PreparedForward``): a plain network's engine choice is kept with its plan and replayed, forward Taylor
mode with its op arguments made once.

A replayed call must return exactly what the full selection returns (bit for bit, every request, every
algorithm, every input layout, both dtypes, N = 0, gradients with respect to the parameters),
must skip the selection, and must never be replayed when anything the choice depends on changed: the
network's structure (a layer replaced, train/eval, a hook, a global hook), the parameters' dtype or
device, the request, the width, the backend, the extension; nor for requests with per-call operator
objects, nor under torch.compile.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hoderiv_ext import Bilaplacian, Laplacian, NotServed, derivatives
from hoderiv_ext.engines import select
from hoderiv_ext.engines.taylor.plan import build_plan, clear_plan_cache

FIELDS = ("value", "gradient", "hessian", "hessian_rows", "hessian_diagonal", "laplacian")


def _net(outputs: int = 1, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 8), nn.Softplus(beta=2.0),
                         nn.Linear(8, outputs)).to(dtype)


def _fresh(net: nn.Sequential, x: torch.Tensor, hessian: object, **kwargs) -> object:
    """The call through the full selection (the plan cache emptied first: nothing prepared)."""
    clear_plan_cache()
    return derivatives(net, x, hessian, **kwargs)


def _assert_same(a, b) -> None:
    assert (a.engine, a.algorithm) == (b.engine, b.algorithm)
    for name in FIELDS:
        left, right = getattr(a, name), getattr(b, name)
        assert (left is None) == (right is None), name
        if left is not None:
            assert left.shape == right.shape and torch.equal(left, right), name


class _CountChoices:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = select.choose_engine

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(select, "choose_engine", counted)


CASES = [
    ("laplacian", 1, (5, 3)), ("diagonal", 1, (5, 3)), ("laplacian", 2, (5, 3)), ("full", 2, (5, 3)),
    ("diagonal", 3, (5, 3)), ("laplacian", 1, (3,)), ("laplacian", 1, (0, 3)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hessian, outputs, shape", CASES)
def test_a_replayed_call_equals_the_full_selection_and_skips_it(hessian, outputs, shape, dtype, monkeypatch):
    net = _net(outputs, dtype)
    x = torch.randn(*shape, dtype=dtype)
    reference = _fresh(net, x, hessian, backend="kernel")
    assert reference.engine == "taylor" and reference.algorithm == "forward"
    counter = _CountChoices(monkeypatch)
    replayed = derivatives(net, x, hessian, backend="kernel")
    assert counter.calls == 0  # served by the prepared call
    _assert_same(replayed, reference)


def test_a_replayed_call_has_the_same_parameter_gradients():
    net = _net()
    x = torch.randn(6, 3, dtype=torch.float64)
    params = list(net.parameters())

    def gradients():
        result = derivatives(net, x, "laplacian", backend="kernel")
        loss = result.value.pow(2).sum() + result.gradient.pow(2).sum() + result.laplacian.pow(2).sum()
        return torch.autograd.grad(loss, params)

    clear_plan_cache()
    first = gradients()  # prepares
    assert build_plan(net).prepared
    second = gradients()  # replays
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_grad_modes_hold_on_a_replayed_call():
    net = _net()
    x = torch.randn(4, 3, dtype=torch.float64)
    _fresh(net, x, "laplacian", backend="kernel")
    assert derivatives(net, x, "laplacian", backend="kernel").laplacian.requires_grad
    assert not derivatives(net, x, "laplacian", backend="kernel", create_graph=False).laplacian.requires_grad
    with torch.no_grad():
        assert not derivatives(net, x, "laplacian", backend="kernel").laplacian.requires_grad
    with torch.inference_mode():
        result = derivatives(net, x, "laplacian", backend="kernel")
        assert result.laplacian.is_inference() and not result.laplacian.requires_grad


def _replayed(net: nn.Module, x: torch.Tensor, hessian: object, monkeypatch: pytest.MonkeyPatch, **kwargs) -> bool:
    """Whether a call skipped the selection (was replayed)."""
    counter = _CountChoices(monkeypatch)
    derivatives(net, x, hessian, **kwargs)
    monkeypatch.undo()
    return counter.calls == 0


def test_a_changed_network_is_not_replayed(monkeypatch):
    net = _net()
    x = torch.randn(4, 3, dtype=torch.float64)
    _fresh(net, x, "laplacian", backend="kernel")
    assert _replayed(net, x, "laplacian", monkeypatch, backend="kernel")
    net[1] = nn.Sigmoid()  # a layer replaced: the new activation must be used
    assert not _replayed(net, x, "laplacian", monkeypatch, backend="kernel")
    _assert_same(derivatives(net, x, "laplacian", backend="kernel"), _fresh(net, x, "laplacian", backend="kernel"))
    handle = net[0].register_forward_hook(lambda module, args, out: out * 2)  # the Taylor engine would not run it
    with pytest.raises(NotServed, match="hooks"):
        derivatives(net, x, "laplacian", backend="kernel")
    handle.remove()
    assert not _replayed(net, x, "laplacian", monkeypatch, backend="kernel")
    assert _replayed(net, x, "laplacian", monkeypatch, backend="kernel")


def test_a_global_hook_stops_the_replay():
    net = _net()
    x = torch.randn(4, 3, dtype=torch.float64)
    _fresh(net, x, "laplacian", backend="kernel")
    handle = nn.modules.module.register_module_forward_hook(lambda module, args, out: None)
    try:
        with pytest.raises(NotServed, match="global hook"):
            derivatives(net, x, "laplacian", backend="kernel")
    finally:
        handle.remove()


def test_parameters_converted_in_place_are_checked_on_a_replayed_call():
    net = _net()
    x = torch.randn(4, 3, dtype=torch.float64)
    _fresh(net, x, "laplacian", backend="kernel")
    net.float()  # the same parameter objects, another dtype
    with pytest.raises(TypeError, match="is torch.float32 but x is torch.float64"):
        derivatives(net, x, "laplacian", backend="kernel")
    result = derivatives(net, x.float(), "laplacian", backend="kernel")
    assert result.laplacian.dtype == torch.float32


def test_the_key_separates_requests_widths_and_backends(monkeypatch):
    net = _net()
    x = torch.randn(4, 3, dtype=torch.float64)
    _fresh(net, x, "laplacian", backend="kernel")
    assert not _replayed(net, x, "diagonal", monkeypatch, backend="kernel")
    assert not _replayed(net, x, "laplacian", monkeypatch, backend="auto")
    assert _replayed(net, x, "laplacian", monkeypatch, backend="auto")
    assert not _replayed(net, x, "laplacian", monkeypatch, backend="autograd")
    assert not _replayed(net, x, "laplacian", monkeypatch, backend="autograd")  # never prepared
    assert derivatives(net, x, "laplacian", backend="autograd").engine == "autograd"


def test_requests_with_operator_objects_are_not_remembered():
    net = _net()
    x = torch.randn(4, 3, dtype=torch.float64)
    clear_plan_cache()
    derivatives(net, x, Laplacian(weights=torch.randn(3, 2, dtype=torch.float64)), backend="kernel")
    derivatives(net, x, Laplacian(samples=4), backend="kernel")
    assert not build_plan(net).prepared


def _net4() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1)).double()


@pytest.mark.parametrize("hessian, algorithm", [
    ("full", "mixed"), ([2, 0], "forward_over_reverse"), (None, "reverse"),
    (Laplacian(dims=(1, 3)), "collapsed_reverse"), (Bilaplacian(), "bilaplacian"),
])
def test_other_algorithms_are_remembered_and_replay_the_same(hessian, algorithm, monkeypatch):
    net = _net4()
    x = torch.randn(5, 4, dtype=torch.float64)
    reference = _fresh(net, x, hessian, backend="kernel")
    assert reference.algorithm == algorithm
    assert _replayed(net, x, hessian, monkeypatch, backend="kernel")
    _assert_same(derivatives(net, x, hessian, backend="kernel"), reference)
    if isinstance(hessian, Bilaplacian):
        assert torch.equal(derivatives(net, x, hessian, backend="kernel").bilaplacian, reference.bilaplacian)


def test_clear_plan_cache_drops_the_prepared_calls(monkeypatch):
    net = _net()
    x = torch.randn(4, 3, dtype=torch.float64)
    _fresh(net, x, "laplacian", backend="kernel")
    clear_plan_cache()
    assert not _replayed(net, x, "laplacian", monkeypatch, backend="kernel")


def test_the_prepared_calls_of_a_plan_are_bounded(monkeypatch):
    monkeypatch.setattr(select, "MAX_PREPARED_PER_PLAN", 4)
    net = _net(outputs=2)  # vector outputs: every request goes forward Taylor mode, rows too
    x = torch.randn(4, 3, dtype=torch.float64)
    clear_plan_cache()
    requests = [[0], [1], [2], [0, 1], [1, 0], [2, 1], "laplacian", "diagonal"]
    for hessian in requests:
        assert derivatives(net, x, hessian, backend="kernel").algorithm == "forward"
        assert 1 <= len(build_plan(net).prepared) <= 4
    assert _replayed(net, x, "diagonal", monkeypatch, backend="kernel")  # the newest is kept


def test_the_extension_missing_is_not_replayed(monkeypatch):
    import hoderiv_ext.ops.library as extension

    net = _net()
    x = torch.randn(4, 3, dtype=torch.float64)
    _fresh(net, x, "laplacian", backend="kernel")
    monkeypatch.setattr(extension, "_C", None)
    with pytest.raises(NotServed, match="not loaded"):
        derivatives(net, x, "laplacian", backend="kernel")
