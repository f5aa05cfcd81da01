"""The whole-network sweep op ``network_jet`` (csrc/ops/network_jet.cpp, ops/jet.py).

It runs the Taylor engine's forward sweep of a plain network in one op call. It must equal the
Python sweep it replaces (engines/taylor/sweep.py, ``python_forward_sweep``) to the bit -- value,
tangents, second-order slots, and the gradients autograd takes through them -- for every layout and
every shape of plan (an activation first, two Linear layers in a row, no bias, two activations in a
row, activations with parameters, N = 0); it must be recorded as ONE autograd node, keep autograd's
safety checks, be differentiable twice (gradcheck and gradgradcheck in float64, double backward equal
to the Python sweep's), pass opcheck, refuse bad arguments naming them, and be what ``derivatives``
runs eagerly on a plain network.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hoderiv_ext import derivatives
from hoderiv_ext.engines.taylor.plan import build_plan
from hoderiv_ext.engines.taylor.sweep import forward_sweep, python_forward_sweep
from hoderiv_ext.ops import jet as jet_ops
from hoderiv_ext.ops.layout import JetLayout

from conftest import DEVICES

D = 3
LAYOUTS = {
    "first-order": JetLayout(D),
    "laplacian": JetLayout(D, collapsed=(0, 1, 2)),
    "partial": JetLayout(D, collapsed=(2, 0)),
    "diagonal": JetLayout(D, pairs=((0, 0), (1, 1), (2, 2))),
    "full": JetLayout(D, pairs=tuple((i, j) for i in range(D) for j in range(i, D))),
    "rows-and-collapsed": JetLayout(D, pairs=((1, 0), (1, 1), (1, 2)), collapsed=(0, 1)),
}


def _networks() -> dict[str, nn.Sequential]:
    torch.manual_seed(0)
    return {
        "mlp": nn.Sequential(nn.Linear(D, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 1)),
        "activation-first": nn.Sequential(nn.Softplus(beta=2.0), nn.Linear(D, 4), nn.SiLU(), nn.Linear(4, 2)),
        "two-linears": nn.Sequential(nn.Linear(D, 4), nn.Linear(4, 5), nn.GELU(), nn.Linear(5, 3),
                                     nn.Linear(3, 2, bias=False), nn.Sigmoid(), nn.Linear(2, 1)),
        "no-bias": nn.Sequential(nn.Linear(D, 4, bias=False), nn.ELU(alpha=0.7), nn.Linear(4, 3, bias=False)),
        "activations-in-a-row": nn.Sequential(nn.Linear(D, 4), nn.Tanh(), nn.Sigmoid(), nn.Linear(4, 1)),
        "ends-with-activation": nn.Sequential(nn.Linear(D, 4), nn.Tanh(), nn.Linear(4, 2), nn.Tanh()),
    }


NETWORKS = list(_networks())


def _both_sweeps(net: nn.Sequential, x: torch.Tensor, layout: JetLayout):
    plan = build_plan(net)
    fused = forward_sweep(plan, x, layout)
    reference = python_forward_sweep(plan, x, layout)
    return fused, reference


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("x_requires_grad", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout_name", list(LAYOUTS))
@pytest.mark.parametrize("network", NETWORKS)
def test_network_jet_equals_the_python_sweep_bit_for_bit(network, layout_name, dtype, x_requires_grad, device):
    net = _networks()[network].to(device=device, dtype=dtype)
    x = torch.randn(7, D, dtype=dtype, device=device, requires_grad=x_requires_grad)
    fused, reference = _both_sweeps(net, x, LAYOUTS[layout_name])
    for name in ("value", "tangents", "second"):
        assert torch.equal(getattr(fused, name), getattr(reference, name)), name
    # The gradients autograd takes through the op's inner ops are the Python sweep's.
    params = [x, *net.parameters()] if x_requires_grad else list(net.parameters())
    weights = [torch.randn_like(getattr(fused, name)) for name in ("value", "tangents", "second")]

    def loss(jet) -> torch.Tensor:
        return sum((w * getattr(jet, name)).sum() for w, name in zip(weights, ("value", "tangents", "second")))

    fused_grads = torch.autograd.grad(loss(fused), params, allow_unused=True)
    reference_grads = torch.autograd.grad(loss(reference), params, allow_unused=True)
    for got, want in zip(fused_grads, reference_grads):
        assert (got is None) == (want is None)
        if got is not None:
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def _loss(jet, weights) -> torch.Tensor:
    names = ("value", "tangents", "second")
    return sum((w * getattr(jet, name)).sum() for w, name in zip(weights, names))


def test_network_jet_records_one_autograd_node():
    """The whole sweep is one node whose inputs are x and the parameters themselves (no inner nodes)."""
    net = _networks()["two-linears"]
    x = torch.randn(3, D, requires_grad=True)
    jet, value = jet_ops.network_jet(x, build_plan(net).network_jet_arguments(), LAYOUTS["full"])
    assert jet.grad_fn is value.grad_fn
    assert "NetworkJetFunction" in jet.grad_fn.name()
    leaves = [next_fn for next_fn, _ in jet.grad_fn.next_functions]
    assert all(type(node).__name__ == "AccumulateGrad" for node in leaves), leaves
    assert {id(node.variable) for node in leaves} == {id(x), *(id(p) for p in net.parameters())}


@pytest.mark.parametrize("network", NETWORKS)
def test_network_jet_double_backward_equals_the_python_sweeps(network):
    """create_graph: the gradient is differentiable again, with respect to x and every parameter, biases included."""
    net = _networks()[network].double()
    x = torch.randn(4, D, dtype=torch.float64, requires_grad=True)
    layout = LAYOUTS["rows-and-collapsed"]
    fused, reference = _both_sweeps(net, x, layout)
    weights = [torch.randn_like(getattr(fused, name)) for name in ("value", "tangents", "second")]
    params = list(net.parameters())
    results = []
    for jet in (fused, reference):
        grads = torch.autograd.grad(_loss(jet, weights), [x, *params], create_graph=True)
        second = sum((g * g).sum() for g in grads)
        results.append(torch.autograd.grad(second, [x, *params], allow_unused=True))
    for got, want in zip(*results):
        assert (got is None) == (want is None)
        if got is not None:
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_network_jet_serves_frozen_layers_and_a_frozen_x():
    """Only what requires grad gets a gradient, equal to the Python sweep's."""
    net = _networks()["mlp"]
    net[0].weight.requires_grad_(False)
    net[2].bias.requires_grad_(False)
    x = torch.randn(5, D)
    fused, reference = _both_sweeps(net, x, LAYOUTS["laplacian"])
    weights = [torch.randn_like(getattr(fused, name)) for name in ("value", "tangents", "second")]
    trainable = [p for p in net.parameters() if p.requires_grad]
    got = torch.autograd.grad(_loss(fused, weights), trainable)
    want = torch.autograd.grad(_loss(reference, weights), trainable)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_network_jet_keeps_autograd_safety_checks():
    """A second backward without retain_graph and a parameter changed in place before backward both raise."""
    net = _networks()["mlp"]
    arguments = build_plan(net).network_jet_arguments()
    x = torch.randn(2, D)
    jet, value = jet_ops.network_jet(x, arguments, LAYOUTS["laplacian"])
    loss = jet.sum() + value.sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()
    jet, value = jet_ops.network_jet(x, arguments, LAYOUTS["laplacian"])
    with torch.no_grad():
        net[2].weight.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (jet.sum() + value.sum()).backward()


def test_network_jet_serves_an_empty_batch():
    net = _networks()["mlp"]
    x = torch.zeros(0, D)
    fused, reference = _both_sweeps(net, x, LAYOUTS["full"])
    assert fused.value.shape == reference.value.shape == (0, 1)
    assert fused.second.shape == reference.second.shape == (0, 6, 1)
    # The one node's backward at N = 0: zero parameter gradients, as the op-by-op graph gives.
    params = list(net.parameters())
    got = torch.autograd.grad(fused.value.sum() + fused.second.sum(), params)
    want = torch.autograd.grad(reference.value.sum() + reference.second.sum(), params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@pytest.mark.parametrize("network", ["mlp", "two-linears"])
def test_network_jet_gradcheck_and_gradgradcheck(network):
    net = _networks()[network].double()
    arguments = build_plan(net).network_jet_arguments()
    layout = LAYOUTS["rows-and-collapsed"]
    x = torch.randn(2, D, dtype=torch.float64, requires_grad=True)
    weights = [w.detach().clone().requires_grad_(True) for w in arguments.weights]

    def f(x, *weights):
        replaced = type(arguments)(arguments.steps, list(weights), arguments.biases, arguments.params,
                                   arguments.param_counts)
        jet, value = jet_ops.network_jet(x, replaced, layout)
        return jet, value

    assert torch.autograd.gradcheck(f, (x, *weights))
    assert torch.autograd.gradgradcheck(f, (x, *weights))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_network_jet(device):
    net = _networks()["two-linears"].double().to(device)
    arguments = build_plan(net).network_jet_arguments()
    layout = LAYOUTS["laplacian"]
    x = torch.randn(4, D, dtype=torch.float64, device=device, requires_grad=True)
    torch.library.opcheck(
        torch.ops.hoderiv_ext.network_jet.default,
        (x, arguments.weights, arguments.biases, arguments.steps, arguments.params, arguments.param_counts,
         layout.num_tangents, layout.pair_i, layout.pair_j, list(layout.collapsed)),
    )


def _call(x, weights, biases, steps, params=(), counts=(1,), t=D):
    return torch.ops.hoderiv_ext.network_jet(x, weights, biases, steps, list(params), list(counts), t, [], [], [])


def test_network_jet_refuses_bad_arguments_naming_them():
    x = torch.randn(2, D)
    w = torch.randn(4, D)
    with pytest.raises(RuntimeError, match="x must be \\(N, d\\)"):
        _call(torch.randn(D), [w], [None], "linear tanh", counts=(0,))
    with pytest.raises(RuntimeError, match="num_tangents must be d"):
        _call(x, [w], [None], "linear tanh", counts=(0,), t=D + 1)
    with pytest.raises(RuntimeError, match="one entry per Linear"):
        _call(x, [w], [None, None], "linear tanh", counts=(0,))
    with pytest.raises(RuntimeError, match="2 'linear' steps but 1 weights"):
        _call(x, [w], [None], "linear tanh linear", counts=(0,))
    with pytest.raises(RuntimeError, match="param_counts must have one entry per activation"):
        _call(x, [w], [None], "linear tanh", counts=(0, 0))
    with pytest.raises(RuntimeError, match="no activation"):
        _call(x, [w], [None], "linear", counts=())
    with pytest.raises(RuntimeError, match="param_counts\\[0\\] = 3 is negative or runs past"):
        _call(x, [w], [None], "linear softplus", params=(1.0, 20.0), counts=(3,))
    with pytest.raises(RuntimeError, match="param_counts\\[0\\] = -1"):
        _call(x, [w], [None], "linear softplus", params=(1.0, 20.0), counts=(-1,))
    with pytest.raises(RuntimeError, match="param_counts sum to 1 but 2 params"):
        _call(x, [w], [None], "linear softplus", params=(1.0, 20.0), counts=(1,))
    with pytest.raises(RuntimeError, match="weights\\[0\\] must be \\(out, in\\)"):
        _call(x, [torch.randn(4)], [None], "linear tanh", counts=(0,))
    with pytest.raises(RuntimeError, match="unknown|function"):  # the jet op names the function
        _call(x, [w], [None], "linear no_such_function", counts=(0,))


def test_derivatives_runs_a_plain_network_through_network_jet_eagerly():
    net = _networks()["mlp"]
    x = torch.randn(5, D)
    with torch.profiler.profile() as profile:
        result = derivatives(net, x, hessian="laplacian", backend="kernel")
    names = {event.name for event in profile.events()}
    assert "hoderiv_ext::network_jet" in names
    reference = derivatives(net, x, hessian="laplacian", backend="autograd")
    torch.testing.assert_close(result.laplacian, reference.laplacian, rtol=1e-5, atol=1e-5)
