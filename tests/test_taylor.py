"""The Taylor-mode engine (compiled jet kernels) against the autograd engine."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

import hoderiv_ext
from hoderiv_ext import NotServed, derivatives
from hoderiv_ext.core.requests import parse_hessian_request
from hoderiv_ext.engines import select
from hoderiv_ext.engines.autograd import engine as autograd_engine
from hoderiv_ext.engines.taylor import engine as taylor_engine
from hoderiv_ext.engines.taylor.plan import build_plan
from hoderiv_ext.engines.taylor.slots import layout_for
from hoderiv_ext.ops import jet_composite
from hoderiv_ext.ops.layout import JetLayout

from conftest import DEVICES, DTYPES

ACTIVATIONS = [
    nn.Tanh, nn.Sigmoid, lambda: nn.Softplus(beta=1.5, threshold=8.0), nn.SiLU, nn.GELU,
    lambda: nn.GELU(approximate="tanh"), lambda: nn.ELU(alpha=0.7), lambda: nn.LeakyReLU(0.1), nn.ReLU,
]
REQUESTS = [None, "full", "diagonal", "laplacian", [0], [1, 0], [-1, 0, 1]]
SECOND_FIELDS = ("hessian", "hessian_rows", "hessian_diagonal", "laplacian")


def not_served_reason(f) -> str | None:
    try:
        build_plan(f)
    except NotServed as error:
        return error.reason
    return None


def make_mlp(d: int, widths: list[int], outputs: int, activation, dtype, device, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    previous = d
    for width in widths:
        layers += [nn.Linear(previous, width), activation()]
        previous = width
    layers.append(nn.Linear(previous, outputs))
    return nn.Sequential(*layers).to(dtype=dtype, device=device)


def _fields(result) -> list[torch.Tensor]:
    return [result.value, result.gradient] + [getattr(result, f) for f in SECOND_FIELDS if getattr(result, f) is not None]


def assert_engines_agree(net, x, hessian, *, rtol=None, atol=None) -> None:
    kernel = derivatives(net, x, hessian=hessian, backend="kernel")
    reference = derivatives(net, x, hessian=hessian, backend="autograd")
    assert kernel.engine == "taylor" and reference.engine == "autograd"
    if rtol is None:
        rtol, atol = (1e-10, 1e-12) if x.dtype == torch.float64 else (1e-4, 1e-5)
    for name in ("value", "gradient") + SECOND_FIELDS:
        got, expected = getattr(kernel, name), getattr(reference, name)
        assert (got is None) == (expected is None), name
        if got is None:
            continue
        assert got.shape == expected.shape, (name, got.shape, expected.shape)
        scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
        torch.testing.assert_close(got, expected, rtol=rtol, atol=atol * scale, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hessian", REQUESTS, ids=str)
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: type(a()).__name__ + str(getattr(a(), "approximate", "")))
def test_every_activation_and_request(activation, hessian, dtype, device):
    net = make_mlp(4, [16, 12], 1, activation, dtype, device)
    x = torch.randn(33, 4, dtype=dtype, device=device)
    assert_engines_agree(net, x, hessian)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hessian", REQUESTS, ids=str)
def test_vector_outputs_and_batch_sizes(hessian, device):
    net = make_mlp(3, [8, 8, 8], 3, nn.Tanh, torch.float64, device)
    for n in (0, 1, 257):
        x = torch.randn(n, 3, dtype=torch.float64, device=device)
        assert_engines_agree(net, x, hessian)


@settings(max_examples=25, deadline=None)
@given(
    d=st.integers(1, 16),
    widths=st.lists(st.integers(1, 24), min_size=0, max_size=3),
    outputs=st.integers(1, 3),
    activation=st.sampled_from(ACTIVATIONS),
    hessian=st.sampled_from(["none", "full", "diagonal", "laplacian", "rows"]),
    n=st.integers(0, 9),
    seed=st.integers(0, 2**16),
)
def test_property_random_networks(d, widths, outputs, activation, hessian, n, seed):
    net = make_mlp(d, widths, outputs, activation, torch.float64, "cpu", seed)
    if hessian == "rows":
        hessian = sorted({seed % d, (seed // 7) % d})
    x = torch.randn(n, d, dtype=torch.float64)
    assert_engines_agree(net, x, hessian)


def test_layouts_single_point_scalar_inputs_and_noncontiguous():
    net = make_mlp(1, [8], 1, nn.Sigmoid, torch.float64, "cpu")
    assert_engines_agree(net, torch.tensor([2.0], dtype=torch.float64), "full")  # a point (d,)
    assert_engines_agree(net, torch.linspace(-1, 1, 7, dtype=torch.float64), "laplacian")  # (N,) scalars
    net3 = make_mlp(3, [8], 2, nn.Tanh, torch.float64, "cpu")
    x = torch.randn(3, 10, dtype=torch.float64).t()  # (10, 3), non-contiguous
    assert not x.is_contiguous()
    assert_engines_agree(net3, x, "full")
    assert_engines_agree(net3, torch.randn(20, 3, dtype=torch.float64)[::2], [2])


def test_supported_structure_variants():
    torch.manual_seed(0)
    nets = [
        nn.Sequential(nn.Tanh(), nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)),  # activation first
        nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 4), nn.Softplus(), nn.Linear(4, 2), nn.Linear(2, 1)),
        nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.GELU(), nn.Identity(), nn.Dropout(0.0)), nn.Linear(4, 1)),
        nn.Sequential(nn.Linear(3, 4), nn.SiLU(), nn.Flatten()),  # ends with an activation
        nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1)),  # affine: zero Hessian
        nn.Sequential(nn.Linear(3, 6, bias=False), nn.Tanh(), nn.Linear(6, 1, bias=False)),
    ]
    for net in nets:
        net = net.double().eval()
        for hessian in REQUESTS:
            assert_engines_agree(net, torch.randn(5, 3, dtype=torch.float64), hessian)


# ----------------------------------------------------------------------------- gradients


def _loss(result) -> torch.Tensor:
    total = (result.value**2).sum() + (result.gradient.sin()).sum()
    for name in SECOND_FIELDS:
        tensor = getattr(result, name)
        if tensor is not None:
            total = total + (tensor * tensor.detach().sign()).sum() + (tensor**2).sum()
    return total


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hessian", REQUESTS, ids=str)
def test_parameter_and_input_gradients_match_reference(hessian, device):
    net = make_mlp(3, [10, 10], 2, nn.Tanh, torch.float64, device)
    x = torch.randn(7, 3, dtype=torch.float64, device=device, requires_grad=True)
    wrt = list(net.parameters()) + [x]
    grads = []
    for backend in ("kernel", "autograd"):
        grads.append(torch.autograd.grad(_loss(derivatives(net, x, hessian=hessian, backend=backend)), wrt))
    for got, expected in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("hessian", ["full", "laplacian", [1], None], ids=str)
def test_gradcheck_and_gradgradcheck_wrt_inputs_and_parameters(hessian):
    net = make_mlp(2, [4, 3], 1, nn.Tanh, torch.float64, "cpu")
    net[2] = nn.Linear(4, 3).double()  # keep default init deterministic via make_mlp seed
    names = [name for name, _ in net.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in net.parameters())
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)

    def outputs(x_in, *param_values):
        result = derivatives(lambda t: functional_call(net, dict(zip(names, param_values)), (t,)), x_in,
                             hessian=hessian, backend="autograd") if False else None
        del result
        with torch.nn.utils.stateless._reparametrize_module(net, dict(zip(names, param_values))):
            r = derivatives(net, x_in, hessian=hessian, backend="kernel")
        return tuple(_fields(r))

    assert torch.autograd.gradcheck(outputs, (x, *params))
    assert torch.autograd.gradgradcheck(outputs, (x, *params))


@pytest.mark.parametrize(
    ("d", "hessian", "algorithm"),
    [(2, "laplacian", "forward"), (2, "full", "forward"), (2, [1], "forward_over_reverse"), (4, "full", "mixed"),
     (4, [0, 2], "forward_over_reverse")],
    ids=str,
)
def test_parameter_hessian_vector_product_of_a_training_loss_matches_reference(d, hessian, algorithm):
    """Differentiating the parameter gradient of a loss on u, grad u and second derivatives again.

    With three activation layers the incoming gradient of an activation step
    depends on that step's own input jet (through the later nonlinear
    layers), and the first layer's preactivation depends on its weight: the
    recomputed double backward must take partial derivatives with respect to
    each op input. (Before it took total derivatives, which ran -- and freed
    -- the caller's graph: this raised "backward through the graph a second
    time", and would have counted paths twice under create_graph.)
    """
    torch.manual_seed(3)
    net = make_mlp(d, [5, 4, 3], 1, nn.Tanh, torch.float64, "cpu")
    params = list(net.parameters())
    x = torch.randn(6, d, dtype=torch.float64)
    direction = [torch.randn_like(p) for p in params]
    assert select.taylor_algorithm(build_plan(net), parse_hessian_request(hessian, d), d) == algorithm

    def hessian_vector_product(backend: str, create_graph: bool) -> list[torch.Tensor]:
        r = derivatives(net, x, hessian=hessian, backend=backend, create_graph=True)
        second = next(getattr(r, name) for name in SECOND_FIELDS if getattr(r, name) is not None)
        loss = r.value.square().sum() + r.gradient.pow(3).sum() + second.square().sum()
        gradient = torch.autograd.grad(loss, params, create_graph=True)
        inner = sum((g * v).sum() for g, v in zip(gradient, direction))
        return list(torch.autograd.grad(inner, params, create_graph=create_graph))

    for create_graph in (False, True):
        kernel = hessian_vector_product("kernel", create_graph)
        reference = hessian_vector_product("autograd", create_graph)
        for got, expected in zip(kernel, reference):
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # one level further (third derivatives with respect to the parameters)
    third = [torch.autograd.grad(h.sum(), params[0], retain_graph=True)[0]
             for h in (hessian_vector_product("kernel", True)[0], hessian_vector_product("autograd", True)[0])]
    torch.testing.assert_close(third[0], third[1], rtol=1e-9, atol=1e-11)


def test_third_and_fourth_differentiation_match_reference():
    """grad(grad(grad(laplacian))) with create_graph: through the recomputed double backward."""
    net = make_mlp(2, [4, 4], 1, nn.Tanh, torch.float64, "cpu")
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    chains = []
    for backend in ("kernel", "autograd"):
        laplacian = derivatives(net, x, hessian="laplacian", backend=backend).laplacian
        (g,) = torch.autograd.grad(laplacian.sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.pow(2).sum(), x, create_graph=True)
        (ggg,) = torch.autograd.grad(gg.pow(2).sum(), x, create_graph=True)
        parameter_grads = torch.autograd.grad(ggg.sum(), list(net.parameters()), allow_unused=True, materialize_grads=True)
        chains.append((g, gg, ggg) + parameter_grads)
    for got, expected in zip(*chains):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_inference_mode_builds_no_graph():
    net = make_mlp(3, [8], 1, nn.Tanh, torch.float32, "cpu")
    x = torch.randn(4, 3, requires_grad=True)
    result = derivatives(net, x, hessian="laplacian", backend="kernel", create_graph=False)
    assert all(not t.requires_grad for t in _fields(result))
    with torch.no_grad():
        result = derivatives(net, x, hessian="full", backend="kernel")
    assert all(not t.requires_grad for t in _fields(result))


# ----------------------------------------------------------------------------- ops


def _jet_op_samples():
    torch.manual_seed(0)
    n, m, d = 3, 4, 2
    layout = layout_for(parse_hessian_request("full", d), d)
    pair_i, pair_j = torch.tensor(layout.pair_i), torch.tensor(layout.pair_j)
    slots = 1 + d + layout.num_second
    jet = torch.randn(n, slots, m, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(m, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(n, slots, m, dtype=torch.float64, requires_grad=True)
    pre = torch.randn(n, m, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(m, d, dtype=torch.float64, requires_grad=True)
    collapsed_jet = torch.randn(n, 2 + d, m, dtype=torch.float64, requires_grad=True)
    first_grad = torch.randn(n, slots, m, dtype=torch.float64, requires_grad=True)  # the output jet's gradient
    collapsed_grad = torch.randn(n, 2 + d, m, dtype=torch.float64, requires_grad=True)
    empty = torch.empty(0, dtype=torch.int64)
    ops = torch.ops.hoderiv_ext
    return [
        (ops.jet_activation.default, (jet, bias, "tanh", [], pair_i, pair_j, d, False)),
        (ops.jet_activation.default, (collapsed_jet, None, "softplus", [2.0, 20.0], empty, empty, d, True)),
        (ops.jet_activation_backward.default, (grad, jet, bias, "gelu", [], pair_i, pair_j, d, False)),
        (ops.jet_activation_first.default, (pre, weight, "silu", [], pair_i, pair_j, False)),
        (ops.jet_activation_first.default, (pre, weight, "tanh", [], empty, empty, True)),
        (ops.jet_activation_first_backward.default, (first_grad, pre, weight, "silu", [], pair_i, pair_j, False)),
        (ops.jet_activation_first_backward.default, (collapsed_grad, pre, weight, "tanh", [], empty, empty, True)),
    ]


def _typed(args: tuple) -> tuple:
    """The raw op arguments (..., function, params, pair_i, pair_j, [num_tangents,] collapsed) as the twins take them."""
    *tensors, function, params, pair_i, pair_j = args[: len(args) - (2 if isinstance(args[-2], int) else 1)]
    num_tangents = args[-2] if isinstance(args[-2], int) else tensors[-1].shape[1]
    collapsed = tuple(range(num_tangents)) if args[-1] else ()
    layout = JetLayout(num_tangents, tuple(zip(pair_i.tolist(), pair_j.tolist())), collapsed)
    return (*tensors, function, params, layout)


@pytest.mark.parametrize("index", range(7))
def test_opcheck_jet_ops(index):
    op, args = _jet_op_samples()[index]
    torch.library.opcheck(op, args)


@pytest.mark.parametrize("index", [0, 1, 3, 4, 5, 6])
def test_fused_kernels_match_torch_reference(index):
    ops = torch.ops.hoderiv_ext
    op, args = _jet_op_samples()[index]
    got = op(*args)
    twin = {
        ops.jet_activation.default: jet_composite.activation_step,
        ops.jet_activation_first.default: jet_composite.first_activation_step,
        ops.jet_activation_first_backward.default: jet_composite.first_activation_step_backward,
    }[op]
    torch.testing.assert_close(got, twin(*_typed(args)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("collapsed", [True, False])
@pytest.mark.parametrize("n", [0, 1, 4000])
def test_first_layer_backward_kernel_any_batch(n, collapsed, device):
    """Empty, single and multi-chunk batches (the kernels sum per-chunk partials) against the reference;
    the result does not depend on the number of threads."""
    d, m = 3, 5
    layout = layout_for(parse_hessian_request("laplacian" if collapsed else [2, 0], d), d)
    pair_i = torch.tensor(layout.pair_i, dtype=torch.int64, device=device)
    pair_j = torch.tensor(layout.pair_j, dtype=torch.int64, device=device)
    grad = torch.randn(n, 1 + d + layout.num_second, m, dtype=torch.float64, device=device)
    pre = torch.randn(n, m, dtype=torch.float64, device=device)
    weight = torch.randn(m, d, dtype=torch.float64, device=device)
    args = (grad, pre, weight, "gelu", [], pair_i, pair_j, collapsed)
    grad_a, grad_weight = torch.ops.hoderiv_ext.jet_activation_first_backward(*args)
    expected_a, expected_weight = jet_composite.first_activation_step_backward(*_typed(args))
    torch.testing.assert_close(grad_a, expected_a, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_weight, expected_weight, rtol=1e-11, atol=1e-11)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = torch.ops.hoderiv_ext.jet_activation_first_backward(*args)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single[0], grad_a) and torch.equal(single[1], grad_weight)


def test_jet_op_errors_name_the_argument():
    ops = torch.ops.hoderiv_ext
    empty = torch.empty(0, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="jet must be a \\(N, S, m\\) jet"):
        ops.jet_activation(torch.ones(3, 4), None, "tanh", [], empty, empty, 2, True)
    with pytest.raises(RuntimeError, match="must have S = 1 \\+ d \\+ s = 4 slots"):
        ops.jet_activation(torch.ones(3, 5, 4), None, "tanh", [], empty, empty, 2, True)
    with pytest.raises(RuntimeError, match="pair 0 = \\(0, 7\\) out of range"):
        ops.jet_activation(torch.ones(3, 4, 4), None, "tanh", [], torch.tensor([0]), torch.tensor([7]), 2, False)
    with pytest.raises(RuntimeError, match="bias must have shape \\(m,\\)"):
        ops.jet_activation(torch.ones(3, 4, 4), torch.ones(3), "tanh", [], empty, empty, 2, True)
    with pytest.raises(RuntimeError, match="pair_i and pair_j must be int64"):
        ops.jet_activation(torch.ones(3, 4, 4), None, "tanh", [], torch.tensor([0.0]), torch.tensor([1.0]), 2, False)
    with pytest.raises(RuntimeError, match="weight must be \\(m, d\\)"):
        ops.jet_activation_first(torch.ones(3, 4), torch.ones(5, 2), "tanh", [], empty, empty, True)
    with pytest.raises(RuntimeError, match="grad must be the output jet's gradient"):
        ops.jet_activation_first_backward(torch.ones(2, 4, 4), torch.ones(3, 4), torch.ones(4, 2), "tanh", [],
                                          empty, empty, True)
    with pytest.raises(RuntimeError, match="grad must have S = 1 \\+ d \\+ s = 4 slots"):
        ops.jet_activation_first_backward(torch.ones(3, 5, 4), torch.ones(3, 4), torch.ones(4, 2), "tanh", [],
                                          empty, empty, True)
    with pytest.raises(RuntimeError, match="grad must have the preactivation's dtype"):
        ops.jet_activation_first_backward(torch.ones(3, 4, 4, dtype=torch.float64), torch.ones(3, 4),
                                          torch.ones(4, 2), "tanh", [], empty, empty, True)


@pytest.mark.parametrize("n", [0, 3])
def test_jet_ops_reject_an_unknown_function_for_every_batch_size(n):
    """An empty batch returns early, but not before the function name is checked."""
    ops = torch.ops.hoderiv_ext
    empty = torch.empty(0, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="unknown function 'tahn'"):
        ops.jet_activation(torch.ones(n, 4, 4), None, "tahn", [], empty, empty, 2, True)
    with pytest.raises(RuntimeError, match="unknown function 'tahn'"):
        ops.jet_activation_backward(torch.ones(n, 4, 4), torch.ones(n, 4, 4), None, "tahn", [], empty, empty, 2, True)
    with pytest.raises(RuntimeError, match="unknown function 'tahn'"):
        ops.jet_activation_first(torch.ones(n, 4), torch.ones(4, 2), "tahn", [], empty, empty, True)
    with pytest.raises(RuntimeError, match="unknown function 'tahn'"):
        ops.jet_activation_first_backward(torch.ones(n, 4, 4), torch.ones(n, 4), torch.ones(4, 2), "tahn", [],
                                          empty, empty, True)


# ----------------------------------------------------------------------------- engine choice


def test_unsupported_layer_falls_back_with_one_warning_or_errors_under_kernel():
    net = nn.Sequential(nn.Linear(2, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 1)).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    reason = not_served_reason(net)
    assert reason is not None and "'1' (LayerNorm)" in reason
    with pytest.raises(RuntimeError, match="LayerNorm"):
        derivatives(net, x, hessian="laplacian", backend="kernel")
    assert derivatives(net, x, hessian="laplacian").engine == "autograd"  # auto on CPU: autograd, no warning
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
        hooked = derivatives(net, x, hessian="laplacian")  # the autograd engine runs the hook
        assert not torch.allclose(hooked.value, plain.value)
        torch.testing.assert_close(hooked.value, net(x).squeeze(-1))  # net(x) runs the hook too
    finally:
        handle.remove()
    assert not_served_reason(net) is None
    pre = net.register_forward_pre_hook(lambda module, args: None)
    try:
        assert "f (or every module" in not_served_reason(net)
    finally:
        pre.remove()
    global_hook = nn.modules.module.register_module_forward_hook(lambda module, args, out: None)
    try:
        assert "global hook" in not_served_reason(net)
    finally:
        global_hook.remove()


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
    wrapped = lambda t: net(t)  # noqa: E731 - opaque to the layer check
    derivatives(wrapped, x, hessian="laplacian")
    assert probed == [wrapped]


def test_auto_uses_autograd_on_cpu_and_kernel_when_asked():
    net = make_mlp(2, [4], 1, nn.Tanh, torch.float32, "cpu")
    x = torch.randn(3, 2)
    assert derivatives(net, x, hessian="laplacian").engine == "autograd"
    assert derivatives(net, x, hessian="laplacian", backend="kernel").engine == "taylor"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_auto_uses_taylor_and_warns_once_for_unsupported_modules():
    net = make_mlp(2, [4], 1, nn.Tanh, torch.float32, "cuda")
    x = torch.randn(3, 2, device="cuda")
    assert derivatives(net, x, hessian="laplacian").engine == "forward"
    other = nn.Sequential(nn.Linear(2, 4), nn.LayerNorm(4), nn.Linear(4, 1)).cuda()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        derivatives(other, x, hessian="laplacian")
        derivatives(other, x, hessian="laplacian")
    assert len([w for w in caught if "LayerNorm" in str(w.message)]) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("hessian", REQUESTS, ids=str)
def test_cuda_kernels_match_cpu_kernels(hessian):
    net = make_mlp(5, [32, 32], 2, nn.Tanh, torch.float64, "cpu")
    x = torch.randn(100, 5, dtype=torch.float64)
    cpu = derivatives(net, x, hessian=hessian, backend="kernel")
    gpu = derivatives(net.cuda(), x.cuda(), hessian=hessian, backend="kernel")
    for a, b in zip(_fields(cpu), _fields(gpu)):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-12, atol=1e-12)


def test_training_step_under_torch_compile_fullgraph():
    torch._dynamo.reset()
    net = make_mlp(2, [8, 8], 1, nn.Tanh, torch.float64, "cpu")
    x = torch.randn(16, 2, dtype=torch.float64)

    def pinn_loss(x_in: torch.Tensor) -> torch.Tensor:
        result = derivatives(net, x_in, hessian="laplacian", backend="kernel", check_independence=False)
        return (result.laplacian + 1.0).pow(2).mean() + result.gradient.pow(2).mean() + result.value.pow(2).mean()

    compiled = torch.compile(pinn_loss, fullgraph=True, backend="aot_eager")
    eager_loss = pinn_loss(x)
    eager_grads = torch.autograd.grad(eager_loss, list(net.parameters()))
    compiled_loss = compiled(x)
    compiled_grads = torch.autograd.grad(compiled_loss, list(net.parameters()))
    torch.testing.assert_close(compiled_loss, eager_loss)
    for a, b in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------------- mixed mode


def _two_affine_blocks(activation, device: str) -> nn.Sequential:
    """4 -> 12 -> act -> 6 -> 10 (two Linear layers in a row) -> act -> 1, float64."""
    return nn.Sequential(nn.Linear(4, 12), activation(), nn.Linear(12, 6), nn.Linear(6, 10), activation(),
                         nn.Linear(10, 1)).double().to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hessian", REQUESTS, ids=str)
@pytest.mark.parametrize("activation", [nn.Tanh, nn.SiLU, lambda: nn.Softplus(beta=2.0)], ids=["tanh", "silu", "softplus"])
def test_mixed_mode_matches_reference_and_taylor(activation, hessian, device):
    torch.manual_seed(1)
    net = _two_affine_blocks(activation, device)
    x = torch.randn(9, 4, dtype=torch.float64, device=device, requires_grad=True)
    request = parse_hessian_request(hessian, 4)
    plan = build_plan(net)
    mixed = taylor_engine.run(plan, x, request, True, algorithm="mixed")
    forward = taylor_engine.run(plan, x, request, True, algorithm="forward")
    for a, b in zip(mixed, forward):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # Gradients of a loss with respect to parameters and x agree with the autograd engine.
    wrt = list(net.parameters()) + [x]
    loss_mixed = sum((t**2).sum() for t in mixed if t is not None)
    loss_forward = sum((t**2).sum() for t in forward if t is not None)
    for a, b in zip(torch.autograd.grad(loss_mixed, wrt), torch.autograd.grad(loss_forward, wrt)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rows", [[0], [3, 1], [2, 0, 1]], ids=str)
@pytest.mark.parametrize("activation", [nn.Tanh, nn.SiLU, lambda: nn.Softplus(beta=2.0)], ids=["tanh", "silu", "softplus"])
def test_forward_over_reverse_rows_match_the_reference(activation, rows, device):
    """Values, and gradients of a loss on them with respect to parameters and x, against the autograd engine."""
    torch.manual_seed(2)
    net = _two_affine_blocks(activation, device)
    x = torch.randn(9, 4, dtype=torch.float64, device=device, requires_grad=True)
    request = parse_hessian_request(rows, 4)
    plan = build_plan(net)
    assert select.taylor_algorithm(plan, request, 4) == "forward_over_reverse"
    fast = taylor_engine.run(plan, x, request, True, algorithm="forward_over_reverse")
    reference = autograd_engine.run(net, x, request, create_graph=True)
    for a, b in zip(fast, reference):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    wrt = list(net.parameters()) + [x]
    loss_fast = sum((t**2).sum() for t in fast)
    loss_reference = sum((t**2).sum() for t in reference)
    for a, b in zip(torch.autograd.grad(loss_fast, wrt), torch.autograd.grad(loss_reference, wrt)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_forward_over_reverse_gradgradcheck_affine_nets_and_refusals():
    small_plan = build_plan(make_mlp(3, [4, 4], 1, nn.SiLU, torch.float64, "cpu"))
    request = parse_hessian_request([2, 0], 3)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)

    def rows_of(t: torch.Tensor) -> torch.Tensor:
        return taylor_engine.run(small_plan, t, request, True, algorithm="forward_over_reverse")[2]

    assert torch.autograd.gradcheck(rows_of, (x,))
    assert torch.autograd.gradgradcheck(rows_of, (x,))
    affine = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 1)).double()
    value, jacobian, second = taylor_engine.run(build_plan(affine), x, request, False, algorithm="forward_over_reverse")
    torch.testing.assert_close(jacobian[:, 0], (affine[1].weight @ affine[0].weight).expand(2, 3))
    assert second.shape == (2, 1, 2, 3) and not second.any()
    with pytest.raises(ValueError, match="rows"):
        taylor_engine.run(small_plan, x, parse_hessian_request("full", 3), True, algorithm="forward_over_reverse")
    vector_plan = build_plan(make_mlp(3, [4], 2, nn.Tanh, torch.float64, "cpu"))
    assert select.taylor_algorithm(vector_plan, request, 3) == "forward"
    with pytest.raises(ValueError, match="scalar-output"):
        taylor_engine.run(vector_plan, x, request, True, algorithm="forward_over_reverse")


def test_algorithm_choice_and_mixed_gradgradcheck():
    net = make_mlp(8, [16], 1, nn.Tanh, torch.float64, "cpu")
    plan = build_plan(net)
    assert select.taylor_algorithm(plan, parse_hessian_request([3], 8), 8) == "forward_over_reverse"
    assert select.taylor_algorithm(plan, parse_hessian_request(list(range(8)), 8), 8) == "mixed"  # all rows: full
    assert select.taylor_algorithm(plan, parse_hessian_request("full", 8), 8) == "mixed"
    assert select.taylor_algorithm(plan, parse_hessian_request("laplacian", 8), 8) == "forward"
    assert select.taylor_algorithm(plan, parse_hessian_request(None, 8), 8) == "forward"
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
