"""Mixed mode of traced programs (hoderiv_ext/engines/taylor/traced/mixed.py): full Hessians and Hessian
rows from forward tangents and the adjoints of one reverse sweep, against the autograd engine.

Served (algorithm "traced_mixed" where the slot rule picks it: d = 8, full Hessian or 6 of 8 rows): the
corpus entries whose nonlinear ops are unary functions of the table or products of two jets. Refused,
named in ``trace_cache_info()`` and served by forward Taylor mode instead: layer norm, quotients of two
jets (the softmax's division too) and vector outputs. Also checked: parameter gradients of a loss on the
Hessian, the derivative in x, gradcheck / gradgradcheck, float32, the empty batch, no_grad, inference
mode, the selection boundary, and the dry run's comparison with forward Taylor mode.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import hoderiv_ext
from hoderiv_ext import derivatives
from hoderiv_ext.engines import select
from hoderiv_ext.engines.taylor.traced import mixed

from conftest import DEVICES
from test_traced_corpus import BY_NAME, Function, parameters_of, sample_x

D = 8
N = 5
ROWS = [7, 0, 3, 1, 5, 2]  # 6 of 8 rows: 9 + 33 forward slots, more than 4 (2 + d)
SERVED = ["looped_mlp", "siren", "hard_boundary", "residual", "fourier_features", "modified_mlp",
          "normalised_input", "product", "softplus_output", "exp_output", "plain_function", "special_functions"]
REFUSED = {"layer_norm_mlp": "native_layer_norm", "quotient": "aten.div", "softmax_logsumexp": "aten.div",
           "vector_swish": "one output per sample"}
REQUESTS = [pytest.param("full", id="full"), pytest.param(ROWS, id="rows")]


def _field(result: hoderiv_ext.Derivatives, hessian: object) -> Tensor:
    return result.hessian if hessian == "full" else result.hessian_rows


def _build(name: str, dtype: torch.dtype = torch.float64, device: str = "cpu") -> Function:
    hoderiv_ext.clear_trace_cache()
    return BY_NAME[name].build(D, dtype, device)


def _mixed_refusal(f: Function) -> str | None:
    (entry,) = [entry for entry in hoderiv_ext.trace_cache_info() if entry["width"] == D]
    return entry["mixed_refused"]


@pytest.mark.parametrize("hessian", REQUESTS)
@pytest.mark.parametrize("name", SERVED)
def test_served_programs_run_mixed_mode_and_match_autograd(name: str, hessian: object) -> None:
    f = _build(name)
    x = sample_x(N, D)
    got = derivatives(f, x, hessian=hessian, backend="kernel", create_graph=False)
    assert (got.engine, got.algorithm) == ("taylor", "traced_mixed")
    assert _mixed_refusal(f) is None
    expected = derivatives(f, x, hessian=hessian, backend="autograd", create_graph=False)
    for field in ("value", "gradient"):
        torch.testing.assert_close(getattr(got, field), getattr(expected, field), rtol=1e-10, atol=1e-12)
    scale = max(1.0, float(_field(expected, hessian).abs().max()))
    torch.testing.assert_close(_field(got, hessian), _field(expected, hessian), rtol=1e-10, atol=1e-12 * scale)
    assert _field(got, hessian).shape == ((N, D, D) if hessian == "full" else (N, len(ROWS), D))


@pytest.mark.parametrize("name", ["hard_boundary", "residual", "modified_mlp", "special_functions"])
def test_parameter_and_input_gradients_of_a_hessian_loss(name: str) -> None:
    f = _build(name)
    x = sample_x(N, D).requires_grad_(True)
    parameters = parameters_of(f)
    losses = []
    for backend in ("kernel", "autograd"):
        out = derivatives(f, x, hessian="full", backend=backend)
        assert backend == "autograd" or out.algorithm == "traced_mixed"
        loss = out.value.square().sum() + out.hessian.square().sum() + out.hessian.diagonal(0, 1, 2).sum()
        losses.append(torch.autograd.grad(loss, [x, *parameters]))
    for got, expected in zip(*losses):
        scale = max(1.0, float(expected.abs().max()))
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10 * scale)


def test_gradcheck_and_gradgradcheck_of_the_hessian_in_x() -> None:
    f = _build("hard_boundary")
    x = sample_x(2, D).requires_grad_(True)

    def hessian(t: Tensor) -> Tensor:
        out = derivatives(f, t, hessian="full", backend="kernel")
        assert out.algorithm == "traced_mixed"
        return out.hessian

    assert torch.autograd.gradcheck(hessian, (x,))
    assert torch.autograd.gradgradcheck(hessian, (x,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["residual", "hard_boundary", "fourier_features"])
def test_float32(name: str, device: str) -> None:
    f = _build(name, torch.float32, device)
    x = sample_x(64, D, torch.float32, device)
    got = derivatives(f, x, hessian="full", backend="kernel")
    assert got.algorithm == "traced_mixed"
    f64 = BY_NAME[name].build(D, torch.float64, device)
    expected = derivatives(f64, x.double(), hessian="full", backend="autograd")
    scale = max(1.0, float(expected.hessian.detach().abs().max()))
    torch.testing.assert_close(got.hessian.double(), expected.hessian, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("hessian", REQUESTS)
def test_empty_batch(hessian: object) -> None:
    f = _build("residual")
    derivatives(f, sample_x(N, D), hessian=hessian, backend="kernel")  # traced on a real batch
    got = derivatives(f, sample_x(0, D), hessian=hessian, backend="kernel")
    assert got.algorithm == "traced_mixed"
    assert _field(got, hessian).shape == ((0, D, D) if hessian == "full" else (0, len(ROWS), D))


def test_no_grad_and_inference_mode() -> None:
    f = _build("residual")
    x = sample_x(N, D)
    expected = derivatives(f, x, hessian="full", backend="autograd", create_graph=False)
    with torch.no_grad():
        got = derivatives(f, x, hessian="full", backend="kernel")
    assert got.algorithm == "traced_mixed" and not got.hessian.requires_grad
    torch.testing.assert_close(got.hessian, expected.hessian, rtol=1e-10, atol=1e-12)
    with torch.inference_mode():  # no reverse sweep there: forward Taylor mode
        inference = derivatives(f, x, hessian="full", backend="kernel")
    assert inference.algorithm == "traced"
    torch.testing.assert_close(inference.hessian, expected.hessian, rtol=1e-10, atol=1e-12)
    with torch.inference_mode():
        x_inference = x.clone()
    got = derivatives(f, x_inference, hessian="full", backend="kernel", create_graph=False)  # outside the mode
    assert got.algorithm == "traced_mixed"
    torch.testing.assert_close(got.hessian, expected.hessian, rtol=1e-10, atol=1e-12)


def test_first_call_in_inference_mode_still_dry_runs_mixed_mode() -> None:
    f = _build("residual")
    x = sample_x(N, D)
    with torch.inference_mode():
        derivatives(f, x, hessian="laplacian", backend="kernel")  # traces the program
    assert _mixed_refusal(f) is None
    assert derivatives(f, x, hessian="full", backend="kernel").algorithm == "traced_mixed"


@pytest.mark.parametrize("name, reason", list(REFUSED.items()))
def test_refused_programs_are_served_by_forward_taylor_mode(name: str, reason: str) -> None:
    f = _build(name)
    x = sample_x(N, D)
    got = derivatives(f, x, hessian="full", backend="kernel", create_graph=False)
    assert got.algorithm == "traced"
    refusal = _mixed_refusal(f)
    assert refusal is not None and reason in refusal, refusal
    expected = derivatives(f, x, hessian="full", backend="autograd", create_graph=False)
    scale = max(1.0, float(expected.hessian.abs().max()))
    torch.testing.assert_close(got.hessian, expected.hessian, rtol=1e-10, atol=1e-12 * scale)


@pytest.mark.parametrize("d, hessian, algorithm", [
    (4, "full", "traced"), (8, "full", "traced_mixed"), (8, [0, 1, 2, 3], "traced"), (8, ROWS, "traced_mixed"),
    (8, "diagonal", "traced"), (8, "laplacian", "traced"), (8, None, "traced"),
])
def test_the_slot_rule_picks_the_algorithm(d: int, hessian: object, algorithm: str) -> None:
    hoderiv_ext.clear_trace_cache()
    f = BY_NAME["residual"].build(d, torch.float64, "cpu")
    assert derivatives(f, sample_x(N, d), hessian=hessian, backend="kernel").algorithm == algorithm


def test_a_wrong_mixed_result_on_the_dry_run_refuses_mixed_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    original = mixed._contract
    monkeypatch.setattr(mixed, "_contract", lambda term, *args: 1.5 * original(term, *args))
    f = _build("residual")
    x = sample_x(N, D)
    got = derivatives(f, x, hessian="full", backend="kernel", create_graph=False)
    assert got.algorithm == "traced"
    assert "differs from forward Taylor mode" in (_mixed_refusal(f) or "")
    expected = derivatives(f, x, hessian="full", backend="autograd", create_graph=False)
    torch.testing.assert_close(got.hessian, expected.hessian, rtol=1e-10, atol=1e-12)


def test_not_under_torch_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    f = _build("residual")
    derivatives(f, sample_x(N, D), hessian="full", backend="kernel")
    (program,) = [entry for _, entry in hoderiv_ext.engines.taylor.traced.capture._CACHE.values()]
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    request = hoderiv_ext.core.requests.parse_hessian_request("full", D)
    assert select.traced_algorithm(program, request, D) == "traced"
