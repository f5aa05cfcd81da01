"""The plan cache (hoderiv_ext/engines/taylor/plan.py): a plan is built once per network and rebuilt when
anything it depends on changes."""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

from hoderiv_ext import NotServed, derivatives
from hoderiv_ext.engines.taylor import plan as plan_module
from hoderiv_ext.engines.taylor.plan import _PLAN_ATTRIBUTES, ActivationStep, LinearStep, build_plan, clear_plan_cache


def _net(activation: nn.Module | None = None) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), activation or nn.Tanh(), nn.Linear(8, 1)).double()


def _same_plan(a, b) -> bool:
    """Plans equal step by step: the same parameter objects, the same functions."""
    if len(a.steps) != len(b.steps):
        return False
    for left, right in zip(a.steps, b.steps):
        if type(left) is not type(right):
            return False
        if isinstance(left, LinearStep) and (left.weight is not right.weight or left.bias is not right.bias):
            return False
        if isinstance(left, ActivationStep) and (left.function.name, left.function.params) != (
                right.function.name, right.function.params):
            return False
    return True


def _plan_or_reason(net: nn.Module):
    try:
        return build_plan(net)
    except NotServed as error:
        return error.reason


def _fresh_plan_or_reason(net: nn.Module):
    try:
        return plan_module._plan_of(net)
    except NotServed as error:
        return error.reason


def _agrees_with_fresh(net: nn.Module) -> bool:
    cached, fresh = _plan_or_reason(net), _fresh_plan_or_reason(net)
    if isinstance(cached, str) or isinstance(fresh, str):
        return cached == fresh
    return _same_plan(cached, fresh)


def test_a_network_is_planned_once():
    net = _net()
    assert build_plan(net) is build_plan(net)  # the same object: not rebuilt


def test_clear_plan_cache_builds_again():
    net = _net()
    first = build_plan(net)
    clear_plan_cache()
    second = build_plan(net)
    assert second is not first and _same_plan(first, second)


def test_replaced_layer_is_seen_and_results_follow_it():
    net = _net()
    x = torch.randn(5, 3, dtype=torch.float64)
    before = build_plan(net)
    net[0] = nn.Linear(3, 8).double()
    after = build_plan(net)
    assert after is not before and after.steps[0].weight is net[0].weight
    kernel = derivatives(net, x, hessian="laplacian", backend="kernel")
    reference = derivatives(net, x, hessian="laplacian", backend="autograd")
    torch.testing.assert_close(kernel.laplacian, reference.laplacian, rtol=1e-10, atol=1e-12)


def test_appended_and_deleted_layers_are_seen():
    net = _net()
    build_plan(net)
    net.append(nn.Tanh())
    assert isinstance(build_plan(net).steps[-1], ActivationStep)
    del net[-1]
    assert isinstance(build_plan(net).steps[-1], LinearStep)


def test_replaced_parameter_is_seen():
    net = _net()
    build_plan(net)
    net[2].weight = nn.Parameter(torch.randn(1, 8, dtype=torch.float64))
    assert build_plan(net).steps[-1].weight is net[2].weight


def test_in_place_updates_keep_the_plan_and_are_read_live():
    net = _net()
    x = torch.randn(4, 3, dtype=torch.float64)
    plan = build_plan(net)
    with torch.no_grad():
        net[0].weight.mul_(2.0)
    assert build_plan(net) is plan
    kernel = derivatives(net, x, hessian="full", backend="kernel")
    reference = derivatives(net, x, hessian="full", backend="autograd")
    torch.testing.assert_close(kernel.hessian, reference.hessian, rtol=1e-10, atol=1e-12)


def test_train_and_eval_switch_a_dropout_between_refused_and_served():
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 1))
    net.train()
    with pytest.raises(NotServed, match="Dropout"):
        build_plan(net)
    net.eval()
    build_plan(net)
    net.train()
    with pytest.raises(NotServed, match="Dropout"):
        build_plan(net)


def test_hooks_and_instance_forwards_are_seen():
    net = _net()
    build_plan(net)
    handle = net[1].register_forward_hook(lambda module, inputs, output: output * 2)
    with pytest.raises(NotServed, match="hooks"):
        build_plan(net)
    handle.remove()
    build_plan(net)
    net[1].forward = lambda v: torch.sin(v)
    with pytest.raises(NotServed, match="forward replaced"):
        build_plan(net)


ACTIVATIONS = [nn.Softplus(beta=2.0, threshold=15.0), nn.GELU(approximate="tanh"), nn.LeakyReLU(0.2), nn.ELU(0.7),
               nn.Flatten(), nn.Dropout(0.0), nn.AlphaDropout(0.0), nn.Tanh(), nn.SiLU(), nn.Identity()]


def _mutations(value: object) -> list[object]:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, 1]
    if isinstance(value, float):
        return [value + 0.5, 0.25]
    if isinstance(value, str):
        return ["none", "tanh", "bogus"]
    return []


@pytest.mark.parametrize("layer", ACTIVATIONS, ids=lambda layer: type(layer).__name__)
def test_every_attribute_a_layer_sets_is_seen(layer):
    """Whatever attribute of a served layer changes, the cached plan is the plan built now.

    Guards _PLAN_ATTRIBUTES: an attribute the plan reads but the cache does not compare fails here.
    """
    net = nn.Sequential(nn.Linear(3, 8), layer, nn.Linear(8, 1))
    base = frozenset(nn.Module().__dict__)
    names = [name for name, value in vars(layer).items() if name not in base and _mutations(value)]
    for name in names:
        original = getattr(layer, name)
        for value in _mutations(original):
            assert _agrees_with_fresh(net)  # cached under the current value
            setattr(layer, name, value)
            assert _agrees_with_fresh(net), f"{type(layer).__name__}.{name} = {value!r} was not seen"
        setattr(layer, name, original)
    assert set(_PLAN_ATTRIBUTES.get(type(layer), ())) <= set(vars(layer))


def test_a_deleted_network_leaves_the_cache():
    net = _net()
    build_plan(net)
    size = len(plan_module._PLAN_CACHE)
    del net
    gc.collect()
    assert len(plan_module._PLAN_CACHE) == size - 1


def test_refusals_are_cached_and_still_raise():
    class Sine(nn.Module):  # two ops: no function of the table (torch.sin(v) or torch.sin(2 * v) would be)
        def forward(self, v):
            return 2 * torch.sin(v)

    net = nn.Sequential(nn.Linear(3, 8), Sine(), nn.Linear(8, 1))
    for _ in range(2):
        with pytest.raises(NotServed, match="unsupported layer '1' \\(Sine\\)"):
            build_plan(net)
    net[1] = nn.Tanh()
    build_plan(net)


def test_a_placeholder_child_is_refused_by_name():
    net = _net()
    net.register_module("placeholder", None)  # nn.Sequential's forward would call None
    for _ in range(2):  # built, then from the cache
        with pytest.raises(NotServed, match="layer 'placeholder' is None"):
            build_plan(net)
