"""The autograd engine behind ``hoderiv_ext.derivatives``.

Shapes and squeezing for every request and input layout; values against
torch.autograd.functional.hessian, closed forms and float64 finite
differences; the torch.func and autograd mechanisms against each other;
create_graph and differentiability with respect to parameters; the
sample-independence rule; bad input; empty batches.
"""

from __future__ import annotations

import importlib
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import hoderiv_ext
from hoderiv_ext import Derivatives, HessianRequest, derivatives
from hoderiv_ext.core.validation import canonical_input
from hoderiv_ext.core.independence import check_sample_independence
from hoderiv_ext.engines import select
from hoderiv_ext.engines.autograd.engine import METHODS
from hoderiv_ext.engines.autograd.engine import run as reference_derivatives
from hoderiv_ext.core.requests import parse_hessian_request
from hoderiv_ext.core.results import Layout, finalize

from conftest import needs_cuda, record_grad_calls, refuse_batched_grads

MECHANISMS = [m for m in METHODS if m != "auto"]
REQUESTS = [None, "full", [2, 0], "diagonal", "laplacian"]


def mlp(d: int, o: int, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, 8), nn.Softplus(), nn.Linear(8, o)).to(dtype)


def reference_hessians(f, x: torch.Tensor) -> torch.Tensor:
    """(N, o, d, d) by torch.autograd.functional.hessian, one sample and one output at a time."""
    n, d = x.shape
    o = f(x[:1]).reshape(1, -1).shape[1]
    return torch.stack([
        torch.stack([torch.autograd.functional.hessian(lambda t, a=a: f(t[None]).reshape(-1)[a], x[i]) for a in range(o)])
        for i in range(n)
    ])


def reference_jacobians(f, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.autograd.functional.jacobian(lambda t: f(t[None]).reshape(-1), x[i]) for i in range(len(x))])


def expected_second(hessians: torch.Tensor, hessian: object) -> torch.Tensor | None:
    """The canonical second-order tensor for a request, cut from full (N, o, d, d) Hessians."""
    if hessian is None:
        return None
    if hessian == "full":
        return hessians
    if hessian == "diagonal":
        return hessians.diagonal(dim1=2, dim2=3)
    if hessian == "laplacian":
        return hessians.diagonal(dim1=2, dim2=3).sum(-1)
    return hessians[:, :, list(hessian), :]


def second_of(result: Derivatives) -> torch.Tensor | None:
    return {
        "none": None,
        "full": result.hessian,
        "rows": result.hessian_rows,
        "diagonal": result.hessian_diagonal,
        "laplacian": result.laplacian,
    }[result.request.kind]


# --------------------------------------------------------------------------- shapes and squeezing

ONE_ONE = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1)).double()
ONE_TWO = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 2)).double()
THREE_ONE = mlp(3, 1)
THREE_TWO = mlp(3, 2)

# name: (f, x shape, rows to ask for, expected shapes of value, gradient, full, rows, diagonal, laplacian)
LAYOUTS = {
    "batch, f -> (N, 1)": (THREE_ONE, (4, 3), [2, 0], [(4,), (4, 3), (4, 3, 3), (4, 2, 3), (4, 3), (4,)]),
    "batch, f -> (N,)": (lambda x: THREE_ONE(x)[:, 0], (4, 3), [2, 0], [(4,), (4, 3), (4, 3, 3), (4, 2, 3), (4, 3), (4,)]),
    "batch, f -> (N, o)": (THREE_TWO, (4, 3), [2, 0], [(4, 2), (4, 2, 3), (4, 2, 3, 3), (4, 2, 2, 3), (4, 2, 3), (4, 2)]),
    "point (d,), scalar f": (THREE_ONE, (3,), [2, 0], [(), (3,), (3, 3), (2, 3), (3,), ()]),
    "point (d,), o outputs": (THREE_TWO, (3,), [2, 0], [(2,), (2, 3), (2, 3, 3), (2, 2, 3), (2, 3), (2,)]),
    "scalar inputs (N,), 1-1": (ONE_ONE, (5,), [0], [(5,), (5,), (5,), (5,), (5,), (5,)]),
    "scalar inputs (N,), 1-2": (ONE_TWO, (5,), [0], [(5, 2), (5, 2), (5, 2), (5, 2), (5, 2), (5, 2)]),
    "column (N, 1), 1-1": (ONE_ONE, (5, 1), [0], [(5,), (5, 1), (5, 1, 1), (5, 1, 1), (5, 1), (5,)]),
    "0-d scalar, 1-1": (ONE_ONE, (), [0], [(), (), (), (), (), ()]),
    "one scalar input (1,), 1-1": (ONE_ONE, (1,), [0], [(1,), (1,), (1,), (1,), (1,), (1,)]),
    "batch of one (1, d)": (THREE_ONE, (1, 3), [2, 0], [(1,), (1, 3), (1, 3, 3), (1, 2, 3), (1, 3), (1,)]),
}
KINDS = ["full", "rows", "diagonal", "laplacian"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_shapes_follow_the_squeezing_rules(layout: str, kind: str) -> None:
    f, x_shape, rows, shapes = LAYOUTS[layout]
    x = torch.randn(x_shape, dtype=torch.float64)
    result = derivatives(f, x, rows if kind == "rows" else kind)
    value_shape, gradient_shape = shapes[0], shapes[1]
    second_shape = shapes[2 + KINDS.index(kind)]
    assert tuple(result.value.shape) == value_shape
    assert tuple(result.gradient.shape) == gradient_shape
    assert result.jacobian is result.gradient
    assert tuple(second_of(result).shape) == second_shape
    others = {"full": result.hessian, "rows": result.hessian_rows, "diagonal": result.hessian_diagonal,
              "laplacian": result.laplacian}
    assert all(v is None for k, v in others.items() if k != kind)
    assert result.engine == "autograd"


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_squeezed_numbers_are_the_canonical_numbers(layout: str) -> None:
    """Every layout holds the same numbers as the (N, d) batch computed directly."""
    f, x_shape, _, _ = LAYOUTS[layout]
    x = torch.randn(x_shape, dtype=torch.float64)
    result = derivatives(f, x, "full", create_graph=False)
    d = 1 if len(x_shape) == 0 or layout.startswith(("scalar", "one scalar")) else x_shape[-1]
    x2d = x.reshape(-1, d)
    value, jacobian, second = reference_derivatives(f, x2d, HessianRequest("full"), create_graph=False)
    torch.testing.assert_close(result.value.reshape(-1), value.reshape(-1))
    torch.testing.assert_close(result.gradient.reshape(-1), jacobian.reshape(-1))
    torch.testing.assert_close(result.hessian.reshape(-1), second.reshape(-1))


def test_one_dimensional_x_is_a_point_for_a_map_that_rejects_a_column() -> None:
    net = nn.Linear(2, 1).double()
    result = derivatives(net, torch.tensor([0.5, -1.0], dtype=torch.float64), "full")
    assert result.value.shape == () and result.gradient.shape == (2,) and result.hessian.shape == (2, 2)
    torch.testing.assert_close(result.gradient, net.weight[0].detach())


def test_one_dimensional_x_is_scalar_inputs_for_an_elementwise_function() -> None:
    x = torch.linspace(-2, 2, 7, dtype=torch.float64)
    result = derivatives(torch.sin, x, "full")
    torch.testing.assert_close(result.gradient, torch.cos(x))
    torch.testing.assert_close(result.hessian, -torch.sin(x))
    # x[None] is one point of R^7: a 7 x 7 Jacobian (diagonal for an elementwise map)
    as_point = derivatives(torch.sin, x[None], None)
    assert as_point.gradient.shape == (1, 7, 7)
    torch.testing.assert_close(as_point.gradient[0], torch.diag(torch.cos(x)))


def test_finalize_rejects_non_canonical_engine_output() -> None:
    request = HessianRequest("full")
    value, jacobian = torch.zeros(2, 1), torch.zeros(2, 1, 3)
    with pytest.raises(RuntimeError, match="canonical"):
        finalize(value, jacobian, torch.zeros(2, 3, 3), request, layout=Layout(), engine="taylor")
    with pytest.raises(RuntimeError, match="canonical"):
        finalize(value[:, 0], jacobian, torch.zeros(2, 1, 3, 3), request, layout=Layout(), engine="taylor")
    with pytest.raises(RuntimeError, match="not requested"):
        finalize(value, jacobian, torch.zeros(2, 1), HessianRequest("none"), layout=Layout(), engine="taylor")
    ok = finalize(value, jacobian, torch.zeros(2, 1, 3, 3), request, layout=Layout(has_output_axis=False), engine="taylor")
    assert ok.hessian.shape == (2, 3, 3) and ok.engine == "taylor"


# --------------------------------------------------------------------------- request parsing


def test_parse_hessian_request_accepts_every_documented_form() -> None:
    assert parse_hessian_request(None, 3) == HessianRequest("none")
    assert parse_hessian_request("none", 3) == HessianRequest("none")
    for kind in ("full", "diagonal", "laplacian"):
        assert parse_hessian_request(kind, 3) == HessianRequest(kind)
    assert parse_hessian_request([2, -3], 3) == HessianRequest("rows", (2, 0))
    assert parse_hessian_request((1,), 3).rows == (1,)
    assert parse_hessian_request(range(1, 3), 3).rows == (1, 2)
    assert parse_hessian_request(torch.tensor([-1, 0]), 3).rows == (2, 0)
    assert parse_hessian_request(np.array([1, 0]), 3).rows == (1, 0)
    assert parse_hessian_request([np.int64(2)], 3).rows == (2,)


@pytest.mark.parametrize(
    "hessian, error, match",
    [
        ([0, 3], ValueError, "out of range"),
        ([-4], ValueError, "out of range"),
        ([1, 1], ValueError, "more than once"),
        ([0, -3], ValueError, "more than once"),
        ([], ValueError, "at least one"),
        ("Full", ValueError, "hessian must be"),
        ("trace", ValueError, "hessian must be"),
        (1, TypeError, r"hessian=\[1\]"),
        (1.5, TypeError, "hessian must be"),
        ([0.0, 1.0], TypeError, "integer"),
        ([True], TypeError, "bool"),
        (torch.tensor([0.0]), TypeError, "integer"),
        (torch.tensor([[0, 1]]), ValueError, "1-D"),
        ({0, 1}, TypeError, "sequence"),
    ],
)
def test_parse_hessian_request_rejects_bad_values(hessian: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        parse_hessian_request(hessian, 3)


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 6), data=st.data())
def test_parse_rows_normalises_like_python_indexing(d: int, data: st.DataObject) -> None:
    rows = data.draw(st.lists(st.integers(-d, d - 1), min_size=1, max_size=d, unique_by=lambda i: i % d))
    request = parse_hessian_request(rows, d)
    assert request.rows == tuple(list(range(d))[r] for r in rows)


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("method", MECHANISMS)
@pytest.mark.parametrize("hessian", REQUESTS)
def test_every_mechanism_matches_autograd_functional_hessian(method: str, hessian: object) -> None:
    f = THREE_TWO
    x = torch.randn(3, 3, dtype=torch.float64)
    request = parse_hessian_request(hessian, 3)
    value, jacobian, second = reference_derivatives(f, x, request, create_graph=False, method=method)
    torch.testing.assert_close(value, f(x).detach())
    torch.testing.assert_close(jacobian, reference_jacobians(f, x))
    expected = expected_second(reference_hessians(f, x), hessian)
    if expected is None:
        assert second is None
    else:
        torch.testing.assert_close(second, expected)


@pytest.mark.parametrize("method", METHODS)
def test_closed_form_polynomial_and_sine(method: str) -> None:
    def f(x: torch.Tensor) -> torch.Tensor:  # x0^2 x1 + sin(x2)
        return x[:, 0] ** 2 * x[:, 1] + torch.sin(x[:, 2])

    x = torch.randn(6, 3, dtype=torch.float64)
    x0, x1, x2 = x.unbind(1)
    value, jacobian, hessian = reference_derivatives(f, x, HessianRequest("full"), create_graph=False, method=method)
    zero = torch.zeros_like(x0)
    torch.testing.assert_close(value[:, 0], f(x))
    torch.testing.assert_close(jacobian[:, 0], torch.stack([2 * x0 * x1, x0**2, torch.cos(x2)], 1))
    expected = torch.stack([
        torch.stack([2 * x1, 2 * x0, zero], 1),
        torch.stack([2 * x0, zero, zero], 1),
        torch.stack([zero, zero, -torch.sin(x2)], 1),
    ], 1)
    torch.testing.assert_close(hessian[:, 0], expected)


def test_closed_form_quadratic_form_hessian_and_laplacian() -> None:
    torch.manual_seed(1)
    a = torch.randn(4, 4, dtype=torch.float64)
    a = a + a.T

    def f(x: torch.Tensor) -> torch.Tensor:  # 0.5 x^T A x, per sample
        return 0.5 * ((x @ a) * x).sum(-1, keepdim=True)

    x = torch.randn(5, 4, dtype=torch.float64)
    full = derivatives(f, x, "full")
    torch.testing.assert_close(full.gradient, x @ a)
    torch.testing.assert_close(full.hessian, a.expand(5, 4, 4))
    torch.testing.assert_close(derivatives(f, x, "laplacian").laplacian, torch.trace(a).expand(5))
    torch.testing.assert_close(derivatives(f, x, [3, 1]).hessian_rows, a[[3, 1]].expand(5, 2, 4))
    torch.testing.assert_close(derivatives(f, x, "diagonal").hessian_diagonal, torch.diagonal(a).expand(5, 4))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 4), d=st.integers(1, 4), o=st.integers(1, 2), seed=st.integers(0, 10_000))
def test_float64_finite_differences(n: int, d: int, o: int, seed: int) -> None:
    f = mlp(d, o, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, dtype=torch.float64, generator=generator)
    result = derivatives(f, x, "full", create_graph=False)
    jacobian = result.gradient.reshape(n, o, d)
    hessian = result.hessian.reshape(n, o, d, d)
    step = 1e-5
    for i in range(d):
        shift = torch.zeros(d, dtype=torch.float64)
        shift[i] = step
        value_difference = (f(x + shift) - f(x - shift)).detach() / (2 * step)  # (n, o)
        torch.testing.assert_close(jacobian[:, :, i], value_difference, rtol=1e-6, atol=1e-8)
        plus = derivatives(f, x + shift, None, create_graph=False).gradient.reshape(n, o, d)
        minus = derivatives(f, x - shift, None, create_graph=False).gradient.reshape(n, o, d)
        torch.testing.assert_close(hessian[:, :, i, :], (plus - minus) / (2 * step), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("hessian", REQUESTS)
def test_mechanisms_agree_in_float32(hessian: object) -> None:
    f = mlp(4, 2, dtype=torch.float32)
    x = torch.randn(64, 4)
    request = parse_hessian_request(hessian, 4)
    outputs = [reference_derivatives(f, x, request, create_graph=False, method=m) for m in METHODS]
    for other in outputs[1:]:
        for mine, theirs in zip(outputs[0], other):
            if mine is None:
                assert theirs is None
            else:
                torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


def test_hessian_rows_keep_the_requested_order() -> None:
    x = torch.randn(3, 4, dtype=torch.float64)
    full = derivatives(mlp(4, 1), x, "full").hessian
    rows = derivatives(mlp(4, 1), x, [3, 0, 2]).hessian_rows
    torch.testing.assert_close(rows, full[:, [3, 0, 2], :])


def test_hessian_rows_cost_grows_with_rows_not_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """One backward pass per requested row in the loop mechanism, whatever d; two passes in all when batched."""
    calls = record_grad_calls(monkeypatch)
    f = mlp(10, 1)
    x = torch.randn(5, 10, dtype=torch.float64)
    request = HessianRequest("rows", (7, 2))
    reference_derivatives(f, x, request, create_graph=False, method="loop")
    assert len(calls) == 1 + 2  # the gradient, then one pass per row
    calls.clear()
    reference_derivatives(f, x, request, create_graph=False, method="batched")
    assert calls == [False, True]  # the gradient, then all rows in one batched pass


@pytest.mark.parametrize(
    "n, d, expected_calls",
    [(64, 8, [False, True]), (64, 2, [False, False, False]), (4096, 8, [False] * 9)],
)
def test_auto_batches_the_row_passes_only_where_measured_faster(
    monkeypatch: pytest.MonkeyPatch, n: int, d: int, expected_calls: list[bool]
) -> None:
    f = mlp(d, 1, dtype=torch.float32)
    x = torch.randn(n, d)
    assert select.batch_autograd_passes(x.device, n, d) == any(expected_calls)
    calls = record_grad_calls(monkeypatch)
    reference_derivatives(f, x, HessianRequest("laplacian"), create_graph=False)
    assert calls == expected_calls


def test_batched_autograd_falls_back_to_a_loop_over_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    f = THREE_TWO
    x = torch.randn(4, 3, dtype=torch.float64)
    expected = reference_derivatives(f, x, HessianRequest("full"), create_graph=False, method="batched")
    refuse_batched_grads(monkeypatch)
    fallback = reference_derivatives(f, x, HessianRequest("full"), create_graph=False, method="batched")
    for mine, theirs in zip(expected, fallback):
        torch.testing.assert_close(mine, theirs)


def test_auto_serves_what_torch_func_cannot_transform() -> None:
    def data_dependent(x: torch.Tensor) -> torch.Tensor:
        scale = 2.0 if float(x.detach().abs().max()) < 1e6 else 1.0  # .item() under vmap: torch.func refuses
        return scale * x.pow(3).sum(-1, keepdim=True)

    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(Exception):
        reference_derivatives(data_dependent, x, HessianRequest("laplacian"), create_graph=False, method="func")
    _, _, laplacian = reference_derivatives(data_dependent, x, HessianRequest("laplacian"), create_graph=False)
    torch.testing.assert_close(laplacian[:, 0], 12 * x.sum(-1))


def test_functions_without_parameters_or_dependence_on_x() -> None:
    x = torch.randn(3, 2, dtype=torch.float64)
    linear = derivatives(lambda t: t @ torch.tensor([[1.0], [2.0]], dtype=torch.float64), x, "full")
    torch.testing.assert_close(linear.hessian, torch.zeros(3, 2, 2, dtype=torch.float64))
    constant = derivatives(lambda t: torch.ones(t.shape[0], 1, dtype=t.dtype), x, "laplacian")
    torch.testing.assert_close(constant.gradient, torch.zeros(3, 2, dtype=torch.float64))
    torch.testing.assert_close(constant.laplacian, torch.zeros(3, dtype=torch.float64))


# --------------------------------------------------------------------------- graphs and parameters


def test_create_graph_false_returns_detached_results() -> None:
    result = derivatives(THREE_ONE, torch.randn(4, 3, dtype=torch.float64), "laplacian", create_graph=False)
    for tensor in (result.value, result.gradient, result.laplacian):
        assert not tensor.requires_grad and tensor.grad_fn is None


def test_create_graph_defaults_to_grad_mode() -> None:
    x = torch.randn(4, 3, dtype=torch.float64)
    assert derivatives(THREE_ONE, x, "laplacian").laplacian.requires_grad
    with torch.no_grad():
        inference = derivatives(THREE_ONE, x, "laplacian")
    assert not inference.laplacian.requires_grad
    torch.testing.assert_close(inference.laplacian, derivatives(THREE_ONE, x, "laplacian").laplacian.detach())


def _seed_style_loss(f: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The seeds' nested autograd: Laplacian and gradient penalty, differentiable in the parameters."""
    x = x.detach().requires_grad_(True)
    y = f(x)
    gradient = torch.autograd.grad(y.sum(), x, create_graph=True)[0]
    laplacian = sum(torch.autograd.grad(gradient[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))
    return (laplacian**2).mean() + (gradient**2).sum() + y.sum()


@pytest.mark.parametrize("method", METHODS)
def test_second_order_results_are_differentiable_in_the_parameters(method: str) -> None:
    f = mlp(3, 1, seed=3)
    x = torch.randn(6, 3, dtype=torch.float64)
    expected = torch.autograd.grad(_seed_style_loss(f, x), list(f.parameters()))
    value, jacobian, laplacian = reference_derivatives(f, x, HessianRequest("laplacian"), create_graph=True, method=method)
    loss = (laplacian[:, 0] ** 2).mean() + (jacobian**2).sum() + value.sum()
    for mine, theirs in zip(torch.autograd.grad(loss, list(f.parameters())), expected):
        torch.testing.assert_close(mine, theirs)


@pytest.mark.parametrize("method", METHODS)
def test_results_are_differentiable_in_x_when_x_requires_grad(method: str) -> None:
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    cube = lambda t: t.pow(3).sum(-1, keepdim=True)  # noqa: E731 - Laplacian 6 sum x, d/dx = 6
    _, _, laplacian = reference_derivatives(cube, x, HessianRequest("laplacian"), create_graph=True, method=method)
    (gradient,) = torch.autograd.grad(laplacian.sum(), x)
    torch.testing.assert_close(gradient, torch.full_like(x, 6.0))


# --------------------------------------------------------------------------- sample independence

BATCH_NORM_NET = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 1)).double()


def uses_global_batch_norm_net(x: torch.Tensor) -> torch.Tensor:
    return 2 * BATCH_NORM_NET(x)


class Wrapper:
    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.parametrize(
    "make_f",
    [
        pytest.param(lambda net: net, id="module"),
        pytest.param(lambda net: (lambda x: net(x) + 1), id="closure"),
        pytest.param(lambda net: uses_global_batch_norm_net, id="global"),
        pytest.param(lambda net: Wrapper(net), id="callable-object"),
        pytest.param(lambda net: nn.Sequential(nn.Identity(), net), id="nested"),
    ],
)
def test_batch_norm_in_training_mode_is_refused(make_f) -> None:
    BATCH_NORM_NET.train()
    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"BatchNorm1d.*\.eval\(\)"):
        derivatives(make_f(BATCH_NORM_NET), x, "laplacian")
    BATCH_NORM_NET.eval()
    try:
        assert derivatives(make_f(BATCH_NORM_NET), x, "laplacian").laplacian.shape == (4,)
    finally:
        BATCH_NORM_NET.train()


def test_batch_norm_without_running_statistics_is_refused_even_in_eval_mode() -> None:
    net = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 1)).eval()
    with pytest.raises(ValueError, match="batch statistics"):
        derivatives(net, torch.randn(4, 2), None)


def test_check_independence_false_skips_the_checks() -> None:
    BATCH_NORM_NET.train()
    result = derivatives(BATCH_NORM_NET, torch.randn(4, 2, dtype=torch.float64), "laplacian", check_independence=False)
    assert result.laplacian.shape == (4,)


@pytest.mark.parametrize(
    "f",
    [
        pytest.param(lambda x: x.pow(2).sum(-1, keepdim=True) + torch.sum(x**3), id="batch-sum"),
        pytest.param(lambda x: (x - x.mean(0)).pow(2).sum(-1), id="batch-mean"),
        pytest.param(lambda x: x.sum(-1) / x.shape[0], id="batch-size"),
        pytest.param(lambda x: torch.softmax(x.sum(-1), 0), id="softmax-over-batch"),
    ],
)
def test_probe_detects_samples_that_interact(f) -> None:
    x = torch.tensor([[0.5, 1.0], [1.5, -0.5], [2.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="f mixes samples"):
        derivatives(f, x, "laplacian")
    derivatives(f, x[:1], "laplacian")  # one sample: nothing to mix


def test_probe_sees_mixing_when_the_first_sample_contributes_nothing() -> None:
    x = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="sample 0"):
        derivatives(lambda t: t.sum(-1, keepdim=True) + torch.sum(t**3), x, None)


def test_dropout_in_training_mode_skips_the_probe_and_keeps_the_rng_state() -> None:
    net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 1)).double().train()
    result = derivatives(net, torch.randn(8, 3, dtype=torch.float64), "laplacian")
    assert result.laplacian.shape == (8,)


def test_probes_do_not_consume_random_numbers() -> None:
    def draws_noise(x: torch.Tensor) -> torch.Tensor:  # deterministic value, but it consumes the RNG
        return x.pow(2).sum(-1) + 0.0 * torch.rand(1, dtype=x.dtype)

    x = torch.randn(4, 3, dtype=torch.float64)
    torch.manual_seed(123)
    batch_value = draws_noise(x)[:, None]
    torch.manual_seed(123)
    check_sample_independence(draws_noise, x, batch_value)
    canonical_input(draws_noise, x[0])
    after_probes = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after_probes)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "x, error, match",
    [
        ([[1.0, 2.0]], TypeError, "x must be a torch.Tensor"),
        (torch.ones(3, 2, dtype=torch.int64), TypeError, "floating-point"),
        (torch.ones(3, 2, dtype=torch.bool), TypeError, "floating-point"),
        (torch.ones(2, 3, 2), ValueError, r"x must have shape"),
        (torch.ones(3, 0), ValueError, "at least one input coordinate"),
    ],
)
def test_bad_x_is_refused(x: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        derivatives(THREE_ONE, x, "full")


@pytest.mark.parametrize(
    "f, error, match",
    [
        (lambda x: [x], TypeError, "f must return a torch.Tensor"),
        (lambda x: (x > 0).sum(-1), TypeError, "floating-point"),
        (lambda x: x[:, :, None] * x[:, None, :], ValueError, r"\(N,\), \(N, 1\) or \(N, o\)"),
        (lambda x: x[:1].sum(-1), ValueError, "same N"),
        (lambda x: x.sum(), ValueError, "f must map"),
        (lambda x: x[:, :0], ValueError, "at least one output"),
    ],
)
def test_f_with_a_bad_output_is_refused(f, error: type, match: str) -> None:
    x = torch.randn(3, 2, dtype=torch.float64)
    with pytest.raises(error, match=match):
        derivatives(f, x, "full")
    with pytest.raises(error, match=match):  # also without the probe
        derivatives(f, x, "full", check_independence=False)


def test_bad_arguments_are_named() -> None:
    x = torch.randn(3, 2)
    with pytest.raises(TypeError, match="f must be callable"):
        derivatives("tanh", x)
    with pytest.raises(ValueError, match="backend"):
        derivatives(torch.sin, x, backend="cuda")
    with pytest.raises(ValueError, match="hessian"):
        derivatives(torch.sin, x, [0, 2])
    with pytest.raises(ValueError, match="hessian"):
        derivatives(torch.sin, x, [1, -1])
    with pytest.raises(ValueError, match="method"):
        reference_derivatives(torch.sin, x, HessianRequest("none"), create_graph=False, method="fast")
    with pytest.raises(ValueError, match=r"canonical batch of shape \(N, d\)"):
        reference_derivatives(torch.sin, x[0], HessianRequest("none"), create_graph=False)
    with pytest.raises(TypeError, match="HessianRequest"):
        reference_derivatives(torch.sin, x, "full", create_graph=False)
    with pytest.raises(ValueError, match="out of range"):
        reference_derivatives(torch.sin, x, HessianRequest("rows", (5,)), create_graph=False)


def test_kernel_backend_raises_when_the_taylor_engine_cannot_serve_f() -> None:
    with pytest.raises(RuntimeError, match="backend='kernel' cannot serve"):
        derivatives(lambda x: torch.tanh(x).sum(-1), torch.randn(4, 2), "laplacian", backend="kernel")


def test_auto_backend_on_cpu_uses_the_reference_engine() -> None:
    assert derivatives(lambda x: torch.tanh(x).sum(-1), torch.randn(4, 2), "laplacian").engine == "autograd"


# --------------------------------------------------------------------------- empty batches


@pytest.mark.parametrize("kind", KINDS + ["none"])
def test_empty_batch_gives_empty_results_of_the_right_shape(kind: str) -> None:
    hessian = {"rows": [1], "none": None}.get(kind, kind)
    result = derivatives(THREE_TWO, torch.zeros(0, 3, dtype=torch.float64), hessian)
    expected = {"full": (0, 2, 3, 3), "rows": (0, 2, 1, 3), "diagonal": (0, 2, 3), "laplacian": (0, 2)}
    assert result.value.shape == (0, 2) and result.gradient.shape == (0, 2, 3)
    if kind != "none":
        assert tuple(second_of(result).shape) == expected[kind]


def test_empty_batch_when_f_rejects_empty_input_learns_o_from_one_zero_sample() -> None:
    def picky(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:
            raise RuntimeError("no samples")
        return torch.stack([x.sum(-1), x.prod(-1), x[:, 0]], 1)

    result = derivatives(picky, torch.zeros(0, 2), "full")
    assert result.value.shape == (0, 3) and result.gradient.shape == (0, 3, 2) and result.hessian.shape == (0, 3, 2, 2)
    scalar = derivatives(torch.sin, torch.zeros(0), "laplacian")
    assert scalar.value.shape == (0,) and scalar.gradient.shape == (0,) and scalar.laplacian.shape == (0,)


def test_public_api_is_exported() -> None:
    for name in ("derivatives", "Derivatives", "hessian_rows", "newton_step", "HessianRequest"):
        assert name in hoderiv_ext.__all__ and hasattr(hoderiv_ext, name)
    assert math.isclose(float(derivatives(torch.exp, torch.tensor(0.0), "full").hessian), 1.0)


def test_probes_work_for_f_that_differentiates_internally() -> None:
    """A score-model style f (the gradient of an energy) needs grad mode inside the probes too."""

    def score(x: torch.Tensor) -> torch.Tensor:  # fails under torch.no_grad()
        inner = x if x.requires_grad else x.detach().requires_grad_(True)
        energy = inner.pow(4).sum() / 4  # its gradient is x^3, entry by entry
        (gradient,) = torch.autograd.grad(energy, inner, create_graph=True)
        return gradient.sum(-1, keepdim=True)  # sum_i x_i^3: Laplacian 6 sum_i x_i

    x = torch.randn(4, 3, dtype=torch.float64)
    result = derivatives(score, x, "laplacian")
    torch.testing.assert_close(result.laplacian, 6 * x.sum(-1))


def test_not_served_warning_is_given_once_per_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    derivatives_module = select

    monkeypatch.setattr(derivatives_module, "_WARNED_REASONS", set())
    with pytest.warns(RuntimeWarning, match="cannot serve this module \\(reason A\\)"):
        derivatives_module._warn_once_not_served("reason A")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        derivatives_module._warn_once_not_served("reason A")  # the same reason again: silent
    with pytest.warns(RuntimeWarning, match="reason B"):
        derivatives_module._warn_once_not_served("reason B")


@needs_cuda
def test_auto_on_cuda_warns_for_a_module_the_taylor_engine_does_not_serve() -> None:
    net = nn.Sequential(nn.Linear(2, 8), nn.LayerNorm(8), nn.Linear(8, 1)).cuda()
    with pytest.warns(RuntimeWarning, match="LayerNorm"):
        result = derivatives(net, torch.randn(4, 2, device="cuda"), "laplacian")
    assert result.engine == "autograd"
