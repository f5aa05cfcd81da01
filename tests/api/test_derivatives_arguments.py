"""derivatives()'s arguments: hessian= (core/requests.py), x, f's output, backend and create_graph.

Every documented hessian= form parsed, every bad one refused with a message that names it; bad x,
bad outputs of f and bad arguments refused by name; create_graph=False detaches, None follows grad mode.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hoderiv_ext import HessianRequest, derivatives
from hoderiv_ext.core.requests import parse_hessian_request
from hoderiv_ext.engines.autograd.engine import run as reference_derivatives

from conftest import mlp


THREE_ONE = mlp(3, 1)


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
        (lambda x: x[:1].sum(-1), ValueError, "same N|f mixes samples.*a slice selects samples"),
        (lambda x: x.sum(), ValueError, "f must map|f mixes samples.*over every axis"),
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
