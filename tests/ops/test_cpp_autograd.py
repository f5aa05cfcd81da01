"""The C++ autograd kernels of the forward ops (csrc/ops/autograd.cpp).

elementwise_derivatives, jet_activation, jet_activation_first, jet_bilaplacian_extra and jet_univariate have their
autograd step in C++
(dispatch key Autograd, no Python per call); their backward calls the backward ops with autograd,
whose formulas stay in Python (ops/formulas.py). Checked here: where each formula is registered,
no graph when nothing needs a gradient, the gradients of every subset of inputs against the
torch-ops twins (ops/jet_composite.py), and gradcheck / gradgradcheck of each op.
"""

from __future__ import annotations

import pytest
import torch

from hoderiv_ext.ops import jet_composite
from hoderiv_ext.ops.formulas import FORMULAS
from hoderiv_ext.ops.layout import JetLayout

from conftest import DEVICES


CPP_AUTOGRAD_OPS = ("elementwise_derivatives", "jet_activation", "jet_activation_first", "jet_bilaplacian_extra",
                    "jet_univariate")
PYTHON_FORMULA_OPS = ("elementwise_derivatives_backward", "polynomial_derivatives", "polynomial_derivatives_backward",
                      "jet_activation_backward", "jet_activation_first_backward", "jet_bilaplacian_extra_backward",
                      "jet_univariate_backward", "weighted_gram")
LAYOUT = JetLayout(2, pairs=((0, 1), (1, 1)), collapsed=(0, 1))
FUNCTION, PARAMS = "softplus", [1.5, 20.0]


def _lists(layout: JetLayout) -> tuple[list[int], list[int], list[int]]:
    return layout.pair_i, layout.pair_j, list(layout.collapsed)


def _randn(*shape: int, device: str, requires_grad: bool = False) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, device=device, requires_grad=requires_grad)


def test_each_formula_is_registered_in_one_place():
    """The forward ops: a C++ Autograd kernel and no Python formula; the others: a Python formula."""
    assert not set(CPP_AUTOGRAD_OPS) & set(FORMULAS)
    assert set(FORMULAS) == set(PYTHON_FORMULA_OPS)
    for name in CPP_AUTOGRAD_OPS + PYTHON_FORMULA_OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"hoderiv_ext::{name}", "Autograd"), name
    ops = torch.ops.hoderiv_ext
    x = _randn(3, 4, device="cpu", requires_grad=True)
    out = ops.elementwise_derivatives(x, FUNCTION, PARAMS, 2)
    assert "CppNode" in out.grad_fn.name() and "ElementwiseDerivativesFunction" in out.grad_fn.name()
    (grad_x,) = torch.autograd.grad(out, x, torch.ones_like(out), create_graph=True)
    assert "GeneratedBackwardFor_hoderiv_ext_elementwise_derivatives_backward" in type(grad_x.grad_fn).__name__


@pytest.mark.parametrize("device", DEVICES)
def test_no_graph_when_nothing_needs_a_gradient(device):
    ops = torch.ops.hoderiv_ext
    for requires_grad, grad_enabled in [(False, True), (True, False)]:
        x = _randn(3, 4, device=device, requires_grad=requires_grad)
        jet = _randn(3, LAYOUT.num_slots, 4, device=device, requires_grad=requires_grad)
        bias = _randn(4, device=device, requires_grad=requires_grad)
        weight = _randn(4, LAYOUT.num_tangents, device=device, requires_grad=requires_grad)
        with torch.set_grad_enabled(grad_enabled):
            outs = [
                ops.elementwise_derivatives(x, FUNCTION, PARAMS, 2),
                ops.jet_activation(jet, bias, FUNCTION, PARAMS, LAYOUT.num_tangents, *_lists(LAYOUT)),
                ops.jet_activation(jet, None, FUNCTION, PARAMS, LAYOUT.num_tangents, *_lists(LAYOUT)),
                ops.jet_activation_first(x, weight, FUNCTION, PARAMS, *_lists(LAYOUT)),
            ]
        for out in outs:
            assert out.grad_fn is None and not out.requires_grad
    with torch.inference_mode():
        out = ops.jet_activation_first(_randn(3, 4, device=device), _randn(4, 2, device=device), FUNCTION, PARAMS,
                                       *_lists(LAYOUT))
    assert out.is_inference()


# Which tensor inputs require grad: for jet_activation (jet, bias), bias None as "absent".
JET_CASES = ["jet", "bias", "jet+bias", "jet,no-bias"]
FIRST_CASES = ["preactivation", "weight", "preactivation+weight"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", JET_CASES)
def test_jet_activation_gradients_of_any_subset(case, device):
    torch.manual_seed(0)
    jet = _randn(5, LAYOUT.num_slots, 3, device=device, requires_grad="jet" in case)
    bias = None if "no-bias" in case else _randn(3, device=device, requires_grad="bias" in case)
    cotangent = _randn(5, LAYOUT.num_slots, 3, device=device)
    out = torch.ops.hoderiv_ext.jet_activation(jet, bias, FUNCTION, PARAMS, LAYOUT.num_tangents, *_lists(LAYOUT))
    inputs = [t for t in (jet, bias) if t is not None and t.requires_grad]
    grads = torch.autograd.grad(out, inputs, cotangent)
    twin_inputs = [t.detach().requires_grad_(True) if t is not None else None for t in (jet, bias)]
    twin = jet_composite.activation_step(twin_inputs[0], twin_inputs[1], FUNCTION, PARAMS, LAYOUT)
    wanted = [a for a, t in zip(twin_inputs, (jet, bias)) if t is not None and t.requires_grad]
    expected = torch.autograd.grad(twin, wanted, cotangent)
    assert len(grads) == len(expected) == len(inputs)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", FIRST_CASES)
def test_jet_activation_first_gradients_of_any_subset(case, device):
    torch.manual_seed(0)
    preactivation = _randn(5, 3, device=device, requires_grad="preactivation" in case)
    weight = _randn(3, LAYOUT.num_tangents, device=device, requires_grad="weight" in case)
    cotangent = _randn(5, LAYOUT.num_slots, 3, device=device)
    out = torch.ops.hoderiv_ext.jet_activation_first(preactivation, weight, FUNCTION, PARAMS, *_lists(LAYOUT))
    inputs = [t for t in (preactivation, weight) if t.requires_grad]
    grads = torch.autograd.grad(out, inputs, cotangent)
    twin_inputs = [t.detach().requires_grad_(True) for t in (preactivation, weight)]
    twin = jet_composite.first_activation_step(*twin_inputs, FUNCTION, PARAMS, LAYOUT)
    expected = torch.autograd.grad(twin, [a for a, t in zip(twin_inputs, (preactivation, weight)) if t.requires_grad],
                                   cotangent)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op_case", ["elementwise", "jet", "jet-no-bias", "first"])
def test_gradcheck_and_gradgradcheck(op_case, device):
    """First and second derivatives: the C++ backward, then the backward ops' Python formulas."""
    torch.manual_seed(0)
    ops = torch.ops.hoderiv_ext
    lists = _lists(LAYOUT)
    if op_case == "elementwise":
        inputs = (_randn(2, 3, device=device, requires_grad=True),)

        def fn(x):
            return ops.elementwise_derivatives(x, FUNCTION, PARAMS, 3)
    elif op_case.startswith("jet"):
        inputs = (_randn(2, LAYOUT.num_slots, 3, device=device, requires_grad=True),)
        if op_case == "jet":
            inputs += (_randn(3, device=device, requires_grad=True),)

        def fn(jet, bias=None):
            return ops.jet_activation(jet, bias, FUNCTION, PARAMS, LAYOUT.num_tangents, *lists)
    else:
        inputs = (_randn(2, 3, device=device, requires_grad=True),
                  _randn(3, LAYOUT.num_tangents, device=device, requires_grad=True))

        def fn(preactivation, weight):
            return ops.jet_activation_first(preactivation, weight, FUNCTION, PARAMS, *lists)

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


def test_parameter_hessian_vector_product_through_the_cpp_nodes():
    """A parameter gradient of a Laplacian loss (the double backward: C++ nodes, then Python formulas)
    equals the composite twins' gradient."""
    torch.manual_seed(0)
    layout = JetLayout(2, collapsed=(0, 1))
    x = _randn(6, 2, device="cpu")
    w1 = _randn(4, 2, device="cpu", requires_grad=True)
    b1 = _randn(4, device="cpu", requires_grad=True)
    w2 = _randn(4, 4, device="cpu", requires_grad=True)
    b2 = _randn(4, device="cpu", requires_grad=True)

    def loss(first, step):
        jet = first(x @ w1.t() + b1, w1, "tanh", [], layout)
        jet = step(torch.nn.functional.linear(jet, w2), b2, "tanh", [], layout)
        return (jet[:, 0].sum() + jet[:, -1].pow(2).sum())

    def first_op(a, w, f, p, lay):
        return torch.ops.hoderiv_ext.jet_activation_first(a, w, f, p, *_lists(lay))

    def step_op(j, b, f, p, lay):
        return torch.ops.hoderiv_ext.jet_activation(j, b, f, p, lay.num_tangents, *_lists(lay))

    params = [w1, b1, w2, b2]

    def gradient_and_hvp(first, step):
        grads = torch.autograd.grad(loss(first, step), params, create_graph=True)
        return [*grads, *torch.autograd.grad(sum(g.pow(2).sum() for g in grads), params)]

    got = gradient_and_hvp(first_op, step_op)
    expected = gradient_and_hvp(jet_composite.first_activation_step, jet_composite.activation_step)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)
