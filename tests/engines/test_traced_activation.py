"""User-defined activation modules recognised by their trace (engines/taylor/traced_activation.py).

A Sequential of Linear layers and modules whose forward is ONE op of the function table, or SIREN's
sin(w0 x), runs the plan (the fused sweep, the algorithms of plain networks), with the same results as the
autograd engine; anything else stays on the traced path; what the recognition read is part of the plan
cache's snapshot.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hoderiv_ext import derivatives
from hoderiv_ext.engines.taylor import traced_activation
from hoderiv_ext.engines.taylor.plan import build_plan

from conftest import assert_engines_agree


class Sine(nn.Module):
    def __init__(self, w0: float = 1.0) -> None:
        super().__init__()
        self.w0 = w0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x) if self.w0 == 1.0 else torch.sin(self.w0 * x)


class Softplus2(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x, beta=2.0)


class Cube(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x ** 3


class GeluTanh(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


class Swish(nn.Module):  # two ops: not one function of the table
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class ScaledOutput(nn.Module):  # two ops, the scale after the function: not a function of the table
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * torch.sin(x)


class SineOfSum(nn.Module):  # sin(x + 1): the first op is not a product with a number
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x + 1.0)


class ScaledTanh(nn.Module):  # tanh(2 x): only the sine has a scaled form in the table
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(2.0 * x)


class IntegerFrequency(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x * 30)


class LearnedSine(nn.Module):  # a parameter: not recognised
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w * x)


class Branching(nn.Module):  # a branch on the values: the fake-tensor trace fails, so it is not baked in
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) if bool((x > 0).all()) else torch.sin(x)


RECOGNISED = {"sine": (Sine, ("sin", ())), "softplus": (Softplus2, ("softplus", (2.0, 20.0))),
              "cube": (Cube, ("pow", (3.0,))), "gelu_tanh": (GeluTanh, ("gelu_tanh", ())),
              "sin(30 x)": (lambda: Sine(30.0), ("scaled_sin", (30.0,))),
              "sin(-0.5 x)": (lambda: Sine(-0.5), ("scaled_sin", (-0.5,))),
              "sin(x * 30)": (IntegerFrequency, ("scaled_sin", (30.0,)))}
NOT_RECOGNISED = {"2 sin(x)": ScaledOutput, "sin(x + 1)": SineOfSum, "tanh(2 x)": ScaledTanh, "swish": Swish,
                  "learned": LearnedSine, "branch": Branching}
REQUESTS = ["laplacian", "full", [0, 2], "diagonal", None]


def _net(activation: type | object) -> nn.Sequential:
    torch.manual_seed(0)
    make = activation if callable(activation) else (lambda: activation)
    return nn.Sequential(nn.Linear(3, 8), make(), nn.Linear(8, 8), make(), nn.Linear(8, 1)).double()


@pytest.mark.parametrize("kind", list(RECOGNISED))
def test_a_one_op_activation_module_is_the_kernel_function(kind):
    module_type, (name, params) = RECOGNISED[kind]
    function = traced_activation.activation_by_trace(module_type())
    assert function is not None and (function.name, function.params) == (name, params)


@pytest.mark.parametrize("kind", list(RECOGNISED))
@pytest.mark.parametrize("hessian", REQUESTS, ids=str)
def test_a_sequential_of_them_runs_the_plan_and_agrees_with_autograd(kind, hessian):
    net = _net(RECOGNISED[kind][0])
    x = torch.rand(16, 3, dtype=torch.float64) + 0.1  # x ** 3 and softplus are smooth everywhere; any x serves
    result = derivatives(net, x, hessian=hessian, backend="kernel")
    assert result.engine == "taylor" and result.algorithm != "traced"
    assert_engines_agree(net, x, hessian, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", list(NOT_RECOGNISED))
def test_other_modules_stay_on_the_traced_path(kind):
    module = NOT_RECOGNISED[kind]()
    assert traced_activation.activation_by_trace(module) is None
    net = _net(NOT_RECOGNISED[kind])
    x = torch.rand(8, 3, dtype=torch.float64) + 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the branch goes to the autograd engine, saying so
        result = derivatives(net, x, hessian="laplacian", backend="auto")
    assert result.algorithm == "traced" or result.engine == "autograd"
    expected = derivatives(net, x, hessian="laplacian", backend="autograd")
    torch.testing.assert_close(result.laplacian, expected.laplacian, rtol=1e-10, atol=1e-12)


def test_torch_and_package_modules_are_not_traced(monkeypatch):
    calls = []
    monkeypatch.setattr(traced_activation, "_recognise", lambda module: calls.append(module))
    for module in (nn.Tanh(), nn.Hardtanh(), nn.Mish()):
        assert traced_activation.activation_by_trace(module) is None
    assert calls == []


def test_the_parameter_gradients_of_a_pinn_loss_agree():
    net = _net(Sine)
    x = torch.randn(16, 3, dtype=torch.float64)
    grads = {}
    for backend in ("kernel", "autograd"):
        result = derivatives(net, x, hessian="laplacian", backend=backend)
        loss = (result.laplacian + result.value).pow(2).mean() + result.gradient.pow(2).mean()
        grads[backend] = torch.autograd.grad(loss, list(net.parameters()))
    for a, b in zip(grads["kernel"], grads["autograd"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_changing_what_the_trace_read_builds_the_plan_again():
    net = _net(Sine)
    x = torch.randn(8, 3, dtype=torch.float64)
    assert derivatives(net, x, hessian="laplacian", backend="kernel").algorithm == "forward"
    assert build_plan(net).steps[1].function.name == "sin"
    net[1].w0 = 3.0  # its forward is now sin(3 x)
    changed = derivatives(net, x, hessian="laplacian", backend="kernel")
    assert changed.algorithm == "forward"
    assert (build_plan(net).steps[1].function.name, build_plan(net).steps[1].function.params) == ("scaled_sin", (3.0,))
    torch.testing.assert_close(changed.laplacian,
                               derivatives(net, x, hessian="laplacian", backend="autograd").laplacian)
    net[1].w0 = 1.0
    assert build_plan(net).steps[1].function.name == "sin"


def test_a_class_forward_replaced_builds_the_plan_again(monkeypatch):
    class Local(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(x)

    net = _net(Local)
    plan = build_plan(net)
    assert plan.steps[1].function.name == "tanh"
    monkeypatch.setattr(Local, "forward", lambda self, x: torch.sin(x))
    assert build_plan(net).steps[1].function.name == "sin"
    x = torch.randn(8, 3, dtype=torch.float64)
    assert_engines_agree(net, x, "laplacian", rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_a_compiled_training_step_after_an_eager_call_is_one_graph_and_matches_eager():
    torch._dynamo.reset()
    net = _net(Sine)
    x = torch.randn(16, 3, dtype=torch.float64)

    def loss(x_in: torch.Tensor) -> torch.Tensor:
        result = derivatives(net, x_in, hessian="laplacian", backend="kernel", check_independence=False)
        return (result.laplacian + result.value).pow(2).mean() + result.gradient.pow(2).mean()

    expected = loss(x)  # the eager call recognises the Sine modules
    expected_grads = torch.autograd.grad(expected, list(net.parameters()))
    explained = torch._dynamo.explain(loss)(x)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    got = compiled(x)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(got, list(net.parameters())), expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_every_op_of_the_table_names_a_kernel_function():
    from hoderiv_ext.core.functions import ATEN_FUNCTIONS, KERNEL_FUNCTION_NAMES

    aten = torch.ops.aten
    for op, function_of in ATEN_FUNCTIONS.items():
        name, params = function_of(3.0) if op is aten.pow.Tensor_Scalar else function_of()
        assert name in KERNEL_FUNCTION_NAMES and all(isinstance(p, float) for p in params), op


def test_an_unhashable_activation_module_is_recognised_without_the_cache():
    class Comparable(nn.Module):
        def __eq__(self, other):  # defines __eq__ without __hash__: instances are unhashable
            return isinstance(other, Comparable)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sin(x)

    module = Comparable()
    with pytest.raises(TypeError):
        hash(module)
    function = traced_activation.activation_by_trace(module)
    assert function is not None and function.name == "sin"


def test_switching_train_and_eval_recognises_the_module_again():
    class ModeDependent(nn.Module):  # its forward reads self.training, so train/eval changes the function
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sin(x) if self.training else torch.cos(x)

    net = _net(ModeDependent)
    assert build_plan(net).steps[1].function.name == "sin"
    net.eval()
    assert build_plan(net).steps[1].function.name == "cos"
    x = torch.randn(8, 3, dtype=torch.float64)
    assert_engines_agree(net, x, "laplacian", rtol=1e-10, atol=1e-12)
