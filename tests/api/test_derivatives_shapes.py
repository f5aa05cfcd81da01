"""derivatives(): the result's shapes (core/results.py's squeezing rules) for every input layout and request.

Each layout holds the canonical (N, d) numbers; a 1-D x is a point or scalar inputs depending on f;
engines must return canonical shapes; rows keep the requested order; empty batches; the public names.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hoderiv_ext
from hoderiv_ext import Derivatives, HessianRequest, derivatives
from hoderiv_ext.core.results import Layout, finalize
from hoderiv_ext.engines.autograd.engine import run as reference_derivatives

from conftest import mlp


def second_of(result: Derivatives) -> torch.Tensor | None:
    return {
        "none": None,
        "full": result.hessian,
        "rows": result.hessian_rows,
        "diagonal": result.hessian_diagonal,
        "laplacian": result.laplacian,
    }[result.request.kind]


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


@pytest.mark.parametrize("backend", ["auto", "autograd"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_shapes_follow_the_squeezing_rules(layout: str, kind: str, backend: str) -> None:
    f, x_shape, rows, shapes = LAYOUTS[layout]
    x = torch.randn(x_shape, dtype=torch.float64)
    result = derivatives(f, x, rows if kind == "rows" else kind, backend=backend)
    value_shape, gradient_shape = shapes[0], shapes[1]
    second_shape = shapes[2 + KINDS.index(kind)]
    assert tuple(result.value.shape) == value_shape
    assert tuple(result.gradient.shape) == gradient_shape
    assert result.jacobian is result.gradient
    assert tuple(second_of(result).shape) == second_shape
    others = {"full": result.hessian, "rows": result.hessian_rows, "diagonal": result.hessian_diagonal,
              "laplacian": result.laplacian}
    assert all(v is None for k, v in others.items() if k != kind)
    # auto: the Taylor engine wherever it serves (a plan for a Sequential, a traced program for any other f)
    assert result.engine == ("taylor" if backend == "auto" else "autograd")


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


def test_hessian_rows_keep_the_requested_order() -> None:
    x = torch.randn(3, 4, dtype=torch.float64)
    full = derivatives(mlp(4, 1), x, "full").hessian
    rows = derivatives(mlp(4, 1), x, [3, 0, 2]).hessian_rows
    torch.testing.assert_close(rows, full[:, [3, 0, 2], :])


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
