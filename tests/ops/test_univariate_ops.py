"""The univariate Taylor step ops (ops/jet.py: jet_univariate, jet_univariate_backward).

The fused kernels against their torch-ops twin (ops/jet_composite.py, ``univariate_activation``) for
every function of the table and orders 1..8 in float64, forward and backward; float32; the C++
autograd kernel; gradcheck and gradgradcheck; opcheck; narrowed views read without a copy; empty
batches; the errors, each naming the argument; torch.compile.
"""

from __future__ import annotations

import pytest
import torch

from hoderiv_ext.core.functions import KERNEL_FUNCTION_NAMES, by_name
from hoderiv_ext.ops import jet as jet_ops
from hoderiv_ext.ops import jet_composite

from conftest import DEVICES, into_domain

# Non-default parameters where a function takes them, so they are seen to arrive.
PARAMS = {name: list(by_name(name).params) for name in KERNEL_FUNCTION_NAMES}
PARAMS.update({"softplus": [1.5, 20.0], "leaky_relu": [0.1], "elu": [0.7], "pow": [3.0]})
ORDERS = list(range(1, 9))
SHAPES = [(t, r) for t in (0, 2) for r in (0, 1, 3)]  # (num_tangents, directions)


def _jet(n: int, t: int, r: int, order: int, m: int, *, dtype: torch.dtype = torch.float64, device: str = "cpu",
         seed: int = 0, requires_grad: bool = False) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed + 101 * order + 11 * t + r)
    jet = 0.7 * torch.randn(n, 1 + t + r * order, m, generator=generator, dtype=torch.float64)
    return jet.to(dtype=dtype, device=device).requires_grad_(requires_grad)


def _in_domain(function: str, jet: torch.Tensor) -> torch.Tensor:
    """The jet with its values (slot 0) inside ``function``'s domain (far enough that the bias keeps them there)."""
    return torch.cat([into_domain(function, jet[:, :1]), jet[:, 1:]], dim=1)


def _bias(m: int, *, dtype: torch.dtype = torch.float64, device: str = "cpu", requires_grad: bool = False):
    bias = 0.3 * torch.randn(m, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return bias.to(dtype=dtype, device=device).requires_grad_(requires_grad)


def _close(got: torch.Tensor, want: torch.Tensor, rtol: float, atol: float) -> None:
    """assert_close with atol relative to the largest entry (high-order coefficients grow like k!)."""
    scale = max(1.0, want.abs().max().item()) if want.numel() else 1.0
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol * scale)


def _twin_backward(grad, jet, bias, function, params, t, order):  # type: ignore[no-untyped-def]
    leaf = jet.detach().requires_grad_(True)
    out = jet_composite.univariate_activation(leaf, bias, function, params, t, order)
    return torch.autograd.grad(out, leaf, grad)[0]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("function", KERNEL_FUNCTION_NAMES)
def test_forward_and_backward_match_the_torch_ops_twin(function, order, with_bias, device):
    params = PARAMS[function]
    bias = _bias(7, device=device) if with_bias else None
    for t, r in SHAPES:
        jet = _in_domain(function, _jet(4, t, r, order, 7, device=device))
        got = jet_ops.jet_univariate(jet, bias, function, params, t, order)
        want = jet_composite.univariate_activation(jet, bias, function, params, t, order)
        _close(got, want, rtol=1e-12, atol=1e-12)
        if order == 8:
            continue
        grad = torch.randn(got.shape, dtype=got.dtype, generator=torch.Generator().manual_seed(3)).to(device)
        got_grad = jet_ops.jet_univariate_backward(grad, jet, bias, function, params, t, order)
        _close(got_grad, _twin_backward(grad, jet, bias, function, params, t, order), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("order", [2, 4, 7, 8])
@pytest.mark.parametrize("function", ["tanh", "gelu", "softplus", "sin"])
def test_float32_against_float64(function, order, device):
    params = PARAMS[function]
    jet = _jet(40, 3, 2, order, 33, dtype=torch.float32, device=device)
    bias = _bias(33, dtype=torch.float32, device=device)
    got = jet_ops.jet_univariate(jet, bias, function, params, 3, order)
    want = jet_composite.univariate_activation(jet.double(), bias.double(), function, params, 3, order)
    _close(got.double(), want, rtol=1e-4, atol=1e-5)
    if order < 8:
        grad = torch.randn_like(got)
        got_grad = jet_ops.jet_univariate_backward(grad, jet, bias, function, params, 3, order)
        want_grad = _twin_backward(grad.double(), jet.double(), bias.double(), function, params, 3, order)
        _close(got_grad.double(), want_grad, rtol=1e-4, atol=1e-5)


# Which tensor inputs require grad (the bias None for "no-bias").
GRAD_CASES = ["jet", "bias", "jet+bias", "jet,no-bias"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", GRAD_CASES)
def test_cpp_autograd_kernel_for_every_subset_of_inputs(case, device):
    names, _, bias_state = case.partition(",")
    t, order = 2, 4
    jet = _jet(4, t, 3, order, 5, device=device)
    bias = _bias(5, device=device) if bias_state != "no-bias" else None
    inputs = {"jet": jet, "bias": bias}
    wanted = [inputs[name].requires_grad_(True) for name in names.split("+")]
    out = jet_ops.jet_univariate(jet, bias, "silu", [], t, order)
    assert "JetUnivariateFunction" in out.grad_fn.name()
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, wanted, grad, create_graph=True)
    want = torch.autograd.grad(jet_composite.univariate_activation(jet, bias, "silu", [], t, order), wanted, grad)
    for g, w in zip(got, want):
        _close(g, w, rtol=1e-12, atol=1e-12)
    if names != "bias":  # the gradient comes from the backward op, itself differentiable
        assert "jet_univariate_backward" in type(got[0].grad_fn).__name__


@pytest.mark.parametrize("device", DEVICES)
def test_no_graph_when_nothing_needs_a_gradient(device):
    for requires_grad, grad_enabled in [(False, True), (True, False)]:
        jet = _jet(3, 1, 1, 3, 4, device=device, requires_grad=requires_grad)
        bias = _bias(4, device=device, requires_grad=requires_grad)
        with torch.set_grad_enabled(grad_enabled):
            out = jet_ops.jet_univariate(jet, bias, "tanh", [], 1, 3)
        assert out.grad_fn is None and not out.requires_grad
    with torch.inference_mode():
        out = jet_ops.jet_univariate(_jet(3, 1, 1, 3, 4, device=device), None, "tanh", [], 1, 3)
    assert out.is_inference()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize(("function", "order"), [("tanh", 1), ("gelu", 3), ("softplus", 4), ("elu", 6)])
def test_gradcheck_and_gradgradcheck(function, order, with_bias, device):
    t, params = 1, PARAMS[function]
    directions = 2 if order <= 4 else 1
    jet = _jet(2, t, directions, order, 2, device=device, requires_grad=True)
    bias = _bias(2, device=device, requires_grad=True) if with_bias else None
    inputs = (jet,) if bias is None else (jet, bias)

    def op(*tensors: torch.Tensor) -> torch.Tensor:
        return jet_ops.jet_univariate(tensors[0], tensors[1] if len(tensors) > 1 else None, function, params, t, order)

    assert torch.autograd.gradcheck(op, inputs)
    assert torch.autograd.gradgradcheck(op, inputs)  # order + 2 <= 8: through the twin of the backward op


@pytest.mark.parametrize("device", DEVICES)
def test_backward_op_gradcheck_in_every_argument(device):
    t, order = 2, 5
    jet = _jet(2, t, 1, order, 3, device=device, requires_grad=True)
    bias = _bias(3, device=device, requires_grad=True)
    grad = torch.randn(jet.shape, dtype=torch.float64, device=device, requires_grad=True)

    def op(grad_, jet_, bias_):  # type: ignore[no-untyped-def]
        return jet_ops.jet_univariate_backward(grad_, jet_, bias_, "gelu_tanh", [], t, order)

    assert torch.autograd.gradcheck(op, (grad, jet, bias))


@pytest.mark.parametrize("device", DEVICES)
def test_order_8_is_not_differentiable(device):
    jet = _jet(2, 1, 1, 8, 3, device=device, requires_grad=True)
    out = jet_ops.jet_univariate(jet, None, "tanh", [], 1, 8)  # the forward serves order 8
    with pytest.raises(RuntimeError, match="order must be in \\[1, 7\\], got 8.*order-8 coefficients are not "
                                           "differentiable again"):
        out.sum().backward()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_opcheck(with_bias, device):
    t, order = 1, 2
    jet = _jet(2, t, 1, order, 3, device=device, requires_grad=True)
    bias = _bias(3, device=device, requires_grad=True) if with_bias else None
    ops = torch.ops.hoderiv_ext
    torch.library.opcheck(ops.jet_univariate.default, (jet, bias, "tanh", [], t, order))
    grad = torch.randn(jet.shape, dtype=torch.float64, device=device, requires_grad=True)
    torch.library.opcheck(ops.jet_univariate_backward.default, (grad, jet, bias, "softplus", [1.0, 20.0], t, order))


@pytest.mark.parametrize("device", DEVICES)
def test_narrowed_and_strided_views(device):
    """A slice of a wider jet (slot stride m, unit stride 1) is read as it is; other layouts are copied first."""
    t, r, order = 2, 2, 3
    jet = _jet(5, t, r, order, 6, device=device)
    bias = _bias(6, device=device)
    wider = torch.cat([jet, torch.randn(5, 3, 6, dtype=jet.dtype, device=device)], dim=1)[:, : jet.shape[1]]
    assert not wider.is_contiguous()
    want = jet_ops.jet_univariate(jet, bias, "tanh", [], t, order)
    torch.testing.assert_close(jet_ops.jet_univariate(wider, bias, "tanh", [], t, order), want, rtol=0, atol=0)
    transposed = jet.transpose(0, 2).contiguous().transpose(0, 2)  # unit stride != 1
    torch.testing.assert_close(jet_ops.jet_univariate(transposed, bias, "tanh", [], t, order), want, rtol=0, atol=0)
    grad = torch.randn_like(want)
    expected = jet_ops.jet_univariate_backward(grad, jet, bias, "tanh", [], t, order)
    for view in (wider, transposed):
        torch.testing.assert_close(jet_ops.jet_univariate_backward(grad, view, bias, "tanh", [], t, order), expected,
                                   rtol=0, atol=0)
    broadcast = jet[:1].expand_as(jet)  # sample stride 0
    _close(jet_ops.jet_univariate(broadcast, bias, "tanh", [], t, order),
           jet_composite.univariate_activation(broadcast, bias, "tanh", [], t, order), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_results_do_not_depend_on_the_number_of_threads(device):
    jet = _jet(600, 3, 2, 5, 150, dtype=torch.float32, device=device)  # m > one CPU block of columns
    bias = _bias(150, dtype=torch.float32, device=device)
    grad = torch.randn_like(jet)
    out = jet_ops.jet_univariate(jet, bias, "gelu", [], 3, 5)
    grad_jet = jet_ops.jet_univariate_backward(grad, jet, bias, "gelu", [], 3, 5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(jet_ops.jet_univariate(jet, bias, "gelu", [], 3, 5), out)
        assert torch.equal(jet_ops.jet_univariate_backward(grad, jet, bias, "gelu", [], 3, 5), grad_jet)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(0, 7), (4, 0)], ids=["N=0", "m=0"])
def test_empty_inputs(shape, device):
    n, m = shape
    jet = _jet(n, 2, 1, 4, m, device=device)
    bias = _bias(m, device=device)
    out = jet_ops.jet_univariate(jet, bias, "tanh", [], 2, 4)
    assert out.shape == jet.shape
    grad_jet = jet_ops.jet_univariate_backward(torch.zeros_like(jet), jet, bias, "tanh", [], 2, 4)
    assert grad_jet.shape == jet.shape
    with pytest.raises(RuntimeError, match="unknown function 'tahn'"):  # checked before the empty-input return
        jet_ops.jet_univariate(jet, bias, "tahn", [], 2, 4)
    with pytest.raises(RuntimeError, match="order must be in \\[1, 8\\], got 9"):
        jet_ops.jet_univariate(jet, bias, "tanh", [], 2, 9)


def test_errors_name_the_argument():
    op = torch.ops.hoderiv_ext.jet_univariate
    backward = torch.ops.hoderiv_ext.jet_univariate_backward
    jet = torch.ones(3, 1 + 2 + 2 * 3, 4)  # t = 2, R = 2, order 3
    with pytest.raises(RuntimeError, match="jet_univariate: jet must be a float32 or float64"):
        op(jet.int(), None, "tanh", [], 2, 3)
    with pytest.raises(RuntimeError, match="bias must have jet's dtype"):
        op(jet, torch.ones(4, dtype=torch.float64), "tanh", [], 2, 3)
    with pytest.raises(RuntimeError, match="bias must have shape \\(m,\\) = \\(4,\\), got \\[3\\]"):
        op(jet, torch.ones(3), "tanh", [], 2, 3)
    with pytest.raises(RuntimeError, match="bias must have shape"):
        op(jet, torch.ones(1, 4), "tanh", [], 2, 3)
    with pytest.raises(RuntimeError, match="order must be in \\[1, 8\\], got 0"):
        op(jet, None, "tanh", [], 2, 0)
    with pytest.raises(RuntimeError, match="order must be in \\[1, 8\\], got 9"):
        op(jet, None, "tanh", [], 2, 9)
    with pytest.raises(RuntimeError, match="jet must have S = 1 \\+ t \\+ R \\* order slots .* got S = 9: "
                                           "7 coefficient slots are not a multiple of order"):
        op(jet, None, "tanh", [], 1, 3)
    with pytest.raises(RuntimeError, match="num_tangents = 9 leaves no room in jet's S = 9 slots"):
        op(jet, None, "tanh", [], 9, 3)
    with pytest.raises(RuntimeError, match="num_tangents must be in"):
        op(jet, None, "tanh", [], -1, 3)
    with pytest.raises(RuntimeError, match="jet must be a \\(N, S, m\\) jet"):
        op(torch.ones(3, 9), None, "tanh", [], 2, 3)
    with pytest.raises(RuntimeError, match="'softplus' takes 2 parameter"):
        op(jet, None, "softplus", [1.0], 2, 3)
    with pytest.raises(RuntimeError, match="bias is on meta but jet is on cpu"):
        op(jet, torch.ones(4, device="meta"), "tanh", [], 2, 3)
    with pytest.raises(RuntimeError, match="jet_univariate_backward: order must be in \\[1, 7\\], got 8: the gradient "
                                           "of order-K coefficients needs phi\\^\\(K \\+ 1\\)"):
        backward(torch.ones(3, 11, 4), torch.ones(3, 11, 4), None, "tanh", [], 2, 8)
    with pytest.raises(RuntimeError, match="order must be in \\[1, 7\\], got 0"):
        backward(jet, jet, None, "tanh", [], 2, 0)
    with pytest.raises(RuntimeError, match="grad must have jet's shape"):
        backward(torch.ones(3, 9, 5), jet, None, "tanh", [], 2, 3)
    with pytest.raises(RuntimeError, match="jet must have grad's dtype"):
        backward(jet, jet.double(), None, "tanh", [], 2, 3)
    with pytest.raises(RuntimeError, match="jet_univariate_backward: grad must be a float32 or float64"):
        backward(jet.int(), jet, None, "tanh", [], 2, 3)


def test_fake_kernels_check_shapes():
    jet = torch.empty(3, 9, 4, device="meta")
    assert jet_ops.jet_univariate(jet, torch.empty(4, device="meta"), "tanh", [], 2, 3).shape == jet.shape
    with pytest.raises(RuntimeError, match="jet must have S = 1 \\+ t \\+ R \\* order slots"):
        jet_ops.jet_univariate(jet, None, "tanh", [], 1, 3)
    with pytest.raises(RuntimeError, match="jet_univariate_backward: order must be in \\[1, 7\\]"):
        jet_ops.jet_univariate_backward(jet, jet, None, "tanh", [], 2, 8)
    with pytest.raises(RuntimeError, match="bias must have shape \\(m,\\)"):
        jet_ops.jet_univariate(jet, torch.empty(3, device="meta"), "tanh", [], 2, 3)


def _compile_smoke(device: str) -> None:
    t, order = 2, 4
    jet = _jet(3, t, 2, order, 5, device=device)
    bias = _bias(5, device=device)

    def f(jet_, bias_):  # type: ignore[no-untyped-def]
        return jet_ops.jet_univariate(jet_, bias_, "tanh", [], t, order) * 2

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(jet, bias), f(jet, bias), rtol=0, atol=0)

    def g(jet_, bias_):  # type: ignore[no-untyped-def]
        out = jet_ops.jet_univariate(jet_, bias_, "tanh", [], t, order)
        return torch.autograd.grad(out.sum(), (jet_, bias_), create_graph=True)

    leaves = (jet.clone().requires_grad_(True), bias.clone().requires_grad_(True))
    want = g(*leaves)
    got = torch.compile(g, backend="aot_eager")(*leaves)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_torch_compile_fullgraph():
    _compile_smoke("cpu")


@pytest.mark.cuda
def test_torch_compile_fullgraph_cuda():
    _compile_smoke("cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("order", ORDERS)
def test_cuda_matches_cpu(order):
    jet = _jet(50, 3, 2, order, 37)
    bias = _bias(37)
    cpu = jet_ops.jet_univariate(jet, bias, "gelu", [], 3, order)
    cuda = jet_ops.jet_univariate(jet.cuda(), bias.cuda(), "gelu", [], 3, order)
    _close(cuda.cpu(), cpu, rtol=1e-12, atol=1e-12)
    if order < 8:
        grad = torch.randn_like(jet)
        cpu_grad = jet_ops.jet_univariate_backward(grad, jet, bias, "gelu", [], 3, order)
        cuda_grad = jet_ops.jet_univariate_backward(grad.cuda(), jet.cuda(), bias.cuda(), "gelu", [], 3, order)
        _close(cuda_grad.cpu(), cpu_grad, rtol=1e-12, atol=1e-12)
