"""The bi-Laplacian's extra-slot ops (ops/jet.py: jet_bilaplacian_extra, jet_bilaplacian_extra_backward).

The fused kernels against their torch-ops twin (ops/jet_composite.py, ``bilaplacian_extra_step``) in
float64, forward and backward; gradcheck and gradgradcheck; opcheck; narrowed views read without a
copy; empty batches; the errors, each naming the argument.
"""

from __future__ import annotations

import pytest
import torch

from hoderiv_ext.ops import jet as jet_ops
from hoderiv_ext.ops import jet_composite

from conftest import DEVICES

# (t, dims): every tangent, a reordered subset, one tangent, a subset of a wider jet.
LAYOUTS = {"all3": (3, [0, 1, 2]), "subset20": (3, [2, 0]), "one": (2, [1]), "wide": (5, [4, 1, 3])}
FUNCTIONS = {"tanh": [], "sin": [], "softplus": [2.0, 20.0], "gelu": [], "silu": [], "atan": [], "pow": [3.0]}


def _operands(t: int, dims: list[int], n: int = 5, m: int = 7, with_bias: bool = True,
              dtype: torch.dtype = torch.float64, device: str = "cpu", requires_grad: bool = False) -> tuple:
    p = len(dims)
    generator = torch.Generator().manual_seed(1234 + 17 * t + p)

    def randn(*shape: int) -> torch.Tensor:
        value = torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)
        return value.requires_grad_(requires_grad)

    jet = randn(n, 1 + t + p * (p + 1) // 2, m)
    extra = randn(n, p + 1, m)
    bias = randn(m) if with_bias else None
    return jet, bias, extra


def _engine_twin(jet, bias, extra, function, params, t, dims):  # type: ignore[no-untyped-def]
    """The engines' torch-ops step, fed as bilaplacian.py fed it before the fused kernel."""
    a = jet[:, 0] if bias is None else jet[:, 0] + bias
    phi = torch.ops.hoderiv_ext.elementwise_derivatives(a, function, list(params), 4)
    g = jet[:, 1 : 1 + t][:, dims]
    index = jet_composite.upper_triangle_index(len(dims), jet.device)
    return jet_composite.bilaplacian_extra_step(phi, g, jet[:, 1 + t :], extra, index)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_forward_and_backward_match_the_torch_ops_twin(layout, function, with_bias, device):
    t, dims = LAYOUTS[layout]
    params = FUNCTIONS[function]
    jet, bias, extra = _operands(t, dims, with_bias=with_bias, device=device)
    got = jet_ops.jet_bilaplacian_extra(jet, bias, extra, function, params, t, dims)
    want = _engine_twin(jet, bias, extra, function, params, t, dims)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        jet_composite.bilaplacian_extra_activation(jet, bias, extra, function, params, t, dims), want,
        rtol=1e-13, atol=1e-13)

    grad = torch.randn(got.shape, dtype=got.dtype, generator=torch.Generator().manual_seed(7)).to(device)
    grad_jet, grad_extra = jet_ops.jet_bilaplacian_extra_backward(grad, jet, bias, extra, function, params, t, dims)
    leaves = [x.detach().requires_grad_(True) for x in (jet, extra)]
    out = _engine_twin(leaves[0], bias, leaves[1], function, params, t, dims)
    want_jet, want_extra = torch.autograd.grad(out, leaves, grad)
    torch.testing.assert_close(grad_jet, want_jet, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_extra, want_extra, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_autograd_of_the_op_gives_the_jet_bias_and_extra_gradients(device):
    t, dims = LAYOUTS["subset20"]
    jet, bias, extra = _operands(t, dims, device=device, requires_grad=True)
    out = jet_ops.jet_bilaplacian_extra(jet, bias, extra, "tanh", [], t, dims)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (jet, bias, extra), grad)
    want = torch.autograd.grad(_engine_twin(jet, bias, extra, "tanh", [], t, dims), (jet, bias, extra), grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    # Without a bias, and with only extra needing its gradient.
    out = jet_ops.jet_bilaplacian_extra(jet.detach(), None, extra, "tanh", [], t, dims)
    (got_extra,) = torch.autograd.grad(out, (extra,), grad)
    (want_extra,) = torch.autograd.grad(_engine_twin(jet.detach(), None, extra, "tanh", [], t, dims), (extra,), grad)
    torch.testing.assert_close(got_extra, want_extra, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_gradcheck_and_gradgradcheck(with_bias, device):
    t, dims = 3, [2, 0]
    jet, bias, extra = _operands(t, dims, n=2, m=3, with_bias=with_bias, device=device, requires_grad=True)
    inputs = (jet, extra) if bias is None else (jet, bias, extra)

    def op(*tensors: torch.Tensor) -> torch.Tensor:
        jet_, *rest = tensors
        bias_, extra_ = (None, rest[0]) if bias is None else rest
        return jet_ops.jet_bilaplacian_extra(jet_, bias_, extra_, "gelu", [], t, dims)

    assert torch.autograd.gradcheck(op, inputs)
    assert torch.autograd.gradgradcheck(op, inputs)


@pytest.mark.parametrize("device", DEVICES)
def test_backward_op_gradcheck_in_every_argument(device):
    t, dims = 3, [1, 2]
    jet, bias, extra = _operands(t, dims, n=2, m=3, device=device, requires_grad=True)
    grad = torch.randn(2, len(dims) + 1, 3, dtype=torch.float64, device=device, requires_grad=True)

    def op(grad_, jet_, bias_, extra_):  # type: ignore[no-untyped-def]
        return jet_ops.jet_bilaplacian_extra_backward(grad_, jet_, bias_, extra_, "silu", [], t, dims)

    assert torch.autograd.gradcheck(op, (grad, jet, bias, extra))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_opcheck(with_bias, device):
    t, dims = LAYOUTS["subset20"]
    jet, bias, extra = _operands(t, dims, n=3, m=4, with_bias=with_bias, device=device, requires_grad=True)
    ops = torch.ops.hoderiv_ext
    torch.library.opcheck(ops.jet_bilaplacian_extra.default, (jet, bias, extra, "tanh", [], t, dims))
    grad = torch.randn(3, len(dims) + 1, 4, dtype=torch.float64, device=device, requires_grad=True)
    torch.library.opcheck(ops.jet_bilaplacian_extra_backward.default,
                          (grad, jet, bias, extra, "softplus", [1.0, 20.0], t, dims))


@pytest.mark.parametrize("device", DEVICES)
def test_narrowed_and_strided_views(device):
    """The traced engine passes slices of one (N, S + p + 1, m) jet; other layouts are copied first."""
    t, dims = LAYOUTS["all3"]
    jet, bias, extra = _operands(t, dims, device=device)
    whole = torch.cat([jet, extra], dim=1)
    main, tail = whole[:, : jet.shape[1]], whole[:, jet.shape[1] :]
    assert not main.is_contiguous() and not tail.is_contiguous()
    want = jet_ops.jet_bilaplacian_extra(jet, bias, extra, "tanh", [], t, dims)
    torch.testing.assert_close(jet_ops.jet_bilaplacian_extra(main, bias, tail, "tanh", [], t, dims), want,
                               rtol=0, atol=0)
    transposed = jet.transpose(0, 2).contiguous().transpose(0, 2)  # unit stride != 1
    torch.testing.assert_close(jet_ops.jet_bilaplacian_extra(transposed, bias, extra[:1].expand_as(extra), "tanh",
                                                             [], t, dims),
                               _engine_twin(jet, bias, extra[:1].expand_as(extra), "tanh", [], t, dims),
                               rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(want)
    got = jet_ops.jet_bilaplacian_extra_backward(grad, main, bias, tail, "tanh", [], t, dims)
    expected = jet_ops.jet_bilaplacian_extra_backward(grad, jet, bias, extra, "tanh", [], t, dims)
    for g, w in zip(got, expected):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_and_threads(device):
    t, dims = LAYOUTS["wide"]
    jet, bias, extra = _operands(t, dims, n=300, m=33, dtype=torch.float32, device=device)
    got = jet_ops.jet_bilaplacian_extra(jet, bias, extra, "softplus", [1.0, 20.0], t, dims)
    want = _engine_twin(jet.double(), bias.double(), extra.double(), "softplus", [1.0, 20.0], t, dims)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = jet_ops.jet_bilaplacian_extra(jet, bias, extra, "softplus", [1.0, 20.0], t, dims)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single, got)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(0, 7), (4, 0)], ids=["N=0", "m=0"])
def test_empty_inputs(shape, device):
    n, m = shape
    t, dims = LAYOUTS["subset20"]
    jet, bias, extra = _operands(t, dims, n=n, m=m, device=device)
    out = jet_ops.jet_bilaplacian_extra(jet, bias, extra, "tanh", [], t, dims)
    assert out.shape == extra.shape
    grad_jet, grad_extra = jet_ops.jet_bilaplacian_extra_backward(torch.zeros_like(extra), jet, bias, extra, "tanh",
                                                                  [], t, dims)
    assert grad_jet.shape == jet.shape and grad_extra.shape == extra.shape
    with pytest.raises(RuntimeError, match="unknown function 'tahn'"):  # checked before the empty-input return
        jet_ops.jet_bilaplacian_extra(jet, bias, extra, "tahn", [], t, dims)


def test_errors_name_the_argument():
    op = torch.ops.hoderiv_ext.jet_bilaplacian_extra
    backward = torch.ops.hoderiv_ext.jet_bilaplacian_extra_backward
    jet, extra = torch.ones(3, 7, 4), torch.ones(3, 3, 4)  # t = 3, dims = [2, 0]
    with pytest.raises(RuntimeError, match="jet must be a float32 or float64"):
        op(jet.int(), None, extra, "tanh", [], 3, [2, 0])
    with pytest.raises(RuntimeError, match="extra must have jet's dtype"):
        op(jet, None, extra.double(), "tanh", [], 3, [2, 0])
    with pytest.raises(RuntimeError, match="dims must list at least one tangent"):
        op(jet, None, extra, "tanh", [], 3, [])
    with pytest.raises(RuntimeError, match="dims\\[1\\] = 3 out of range"):
        op(jet, None, extra, "tanh", [], 3, [2, 3])
    with pytest.raises(RuntimeError, match="dims\\[0\\] = -1 out of range"):
        op(jet, None, extra, "tanh", [], 3, [-1, 0])
    with pytest.raises(RuntimeError, match="dims lists tangent 2 more than once"):
        op(jet, None, extra, "tanh", [], 3, [2, 2])
    with pytest.raises(RuntimeError, match="num_tangents must be in"):
        op(jet, None, extra, "tanh", [], 2**63 - 1, [2, 0])
    with pytest.raises(RuntimeError, match="jet must be a \\(N, S, m\\) jet"):
        op(torch.ones(3, 7), None, extra, "tanh", [], 3, [2, 0])
    with pytest.raises(RuntimeError, match="jet must have S = 1 \\+ t \\+ p\\(p\\+1\\)/2 = 1 \\+ 3 \\+ 3 = 7 slots"):
        op(torch.ones(3, 8, 4), None, extra, "tanh", [], 3, [2, 0])
    with pytest.raises(RuntimeError, match="extra must have shape \\(N, p \\+ 1, m\\) = \\(3, 3, 4\\)"):
        op(jet, None, torch.ones(3, 4, 4), "tanh", [], 3, [2, 0])
    with pytest.raises(RuntimeError, match="extra must have shape"):
        op(jet, None, torch.ones(2, 3, 4), "tanh", [], 3, [2, 0])
    with pytest.raises(RuntimeError, match="bias must have shape \\(m,\\) = \\(4,\\)"):
        op(jet, torch.ones(3), extra, "tanh", [], 3, [2, 0])
    with pytest.raises(RuntimeError, match="bias must have jet's dtype"):
        op(jet, torch.ones(4, dtype=torch.float64), extra, "tanh", [], 3, [2, 0])
    with pytest.raises(RuntimeError, match="'softplus' takes 2 parameter"):
        op(jet, None, extra, "softplus", [1.0], 3, [2, 0])
    with pytest.raises(RuntimeError, match="grad must have extra's shape"):
        backward(torch.ones(3, 2, 4), jet, None, extra, "tanh", [], 3, [2, 0])
    with pytest.raises(RuntimeError, match="jet must have grad's dtype"):
        backward(extra, jet.double(), None, extra, "tanh", [], 3, [2, 0])
    with pytest.raises(RuntimeError, match="extra is on meta but jet is on cpu"):
        op(jet, None, extra.to("meta"), "tanh", [], 3, [2, 0])


# Which tensor inputs require grad (the bias None for "no-bias").
GRAD_CASES = ["jet", "bias", "extra", "jet+bias+extra", "extra,no-bias", "jet+extra,no-bias"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", GRAD_CASES)
def test_cpp_autograd_kernel_for_every_subset_of_inputs(case, device):
    t, dims = LAYOUTS["wide"]
    names, _, bias_state = case.partition(",")
    jet, bias, extra = _operands(t, dims, n=4, m=3, with_bias=bias_state != "no-bias", device=device)
    inputs = {"jet": jet, "bias": bias, "extra": extra}
    wanted = [inputs[name].requires_grad_(True) for name in names.split("+")]
    out = jet_ops.jet_bilaplacian_extra(jet, bias, extra, "sin", [], t, dims)
    assert "JetBilaplacianExtraFunction" in out.grad_fn.name()
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, wanted, grad, create_graph=True)
    want = torch.autograd.grad(_engine_twin(jet, bias, extra, "sin", [], t, dims), wanted, grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    if names != "bias":  # the gradient comes from the backward op, itself differentiable
        assert "jet_bilaplacian_extra_backward" in type(got[0].grad_fn).__name__


@pytest.mark.parametrize("device", DEVICES)
def test_no_graph_when_nothing_needs_a_gradient(device):
    t, dims = LAYOUTS["subset20"]
    for requires_grad, grad_enabled in [(False, True), (True, False)]:
        jet, bias, extra = _operands(t, dims, device=device, requires_grad=requires_grad)
        with torch.set_grad_enabled(grad_enabled):
            out = jet_ops.jet_bilaplacian_extra(jet, bias, extra, "tanh", [], t, dims)
        assert out.grad_fn is None and not out.requires_grad
    jet, bias, extra = _operands(t, dims, device=device)
    with torch.inference_mode():
        out = jet_ops.jet_bilaplacian_extra(jet, bias, extra, "tanh", [], t, dims)
    assert out.is_inference()


def test_torch_compile_fullgraph():
    t, dims = LAYOUTS["subset20"]
    jet, bias, extra = _operands(t, dims)

    def f(jet_, bias_, extra_):  # type: ignore[no-untyped-def]
        return jet_ops.jet_bilaplacian_extra(jet_, bias_, extra_, "tanh", [], t, dims) * 2

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(jet, bias, extra), f(jet, bias, extra), rtol=0, atol=0)
