"""Univariate Taylor jets on the traced engine, over the traced corpus, against the autograd engine.

The traced engine carries, next to the value and the d unit tangents, the Taylor coefficients
c_1..c_K (K <= 8) of f(x + s v) along R directions (hoderiv_ext/engines/taylor/traced/series.py;
tests/engines/test_traced_rules.py checks each rule alone). They serve
``directional_derivatives(f, x, v, order, backend="kernel")`` for any traced f and the randomized
bi-Laplacian ``Bilaplacian(samples=r)`` ((1/3r) sum_k 4! c_4 along the r Gaussian directions).
Checked here: every corpus architecture, orders 0..8, shared and per-sample directions, in float64 to
1e-9 relative; the randomized bi-Laplacian against the autograd engine given the same generator
state; parameter gradients of losses on both; gradcheck in (x, v); float32; the empty batch; the
refusals (an order a rule does not serve, named; auto falls back with one warning).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn

import hoderiv_ext
from hoderiv_ext import Bilaplacian, Derivatives, NotServed, derivatives, directional_derivatives
from hoderiv_ext.api import directional as directional_api
from hoderiv_ext.engines.taylor.traced import rules as traced_rules
from hoderiv_ext.engines.taylor.traced import unary_rules
from hoderiv_ext.ops import elementwise as elementwise_ops

from test_traced_corpus import (N, Architecture, corpus, parameters_of, sample_x,  # noqa: F401 (corpus helpers)
                                third_order_reference)

ORDERS = [0, 1, 2, 3, 5, 8]


def _direction(arch: Architecture, per_sample: bool, n: int = N, dtype: torch.dtype = torch.float64) -> Tensor:
    generator = torch.Generator().manual_seed(11)
    shape = (n, arch.d) if per_sample else (arch.d,)
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


def _reference_directional(f: object, x: Tensor, v: Tensor, order: int, **kwargs: object) -> Tensor:
    """The autograd engine on f (its layer norms replaced by a twin in torch ops: pytorch/pytorch#175754),
    one output at a time (its nested passes over o outputs cost o^order: 7 minutes for o = 3 at order 8)."""
    reference = third_order_reference(f)
    probe = reference(x[:1] if x.dim() == 2 else x.reshape(1, -1))  # type: ignore[operator]
    if probe.dim() < 2 or probe.shape[-1] == 1:
        return directional_derivatives(reference, x, v, order, backend="autograd", **kwargs)
    columns = [directional_derivatives(lambda t, a=a: reference(t)[:, a],  # type: ignore[operator]
                                       x, v, order, backend="autograd", **kwargs) for a in range(probe.shape[-1])]
    return torch.stack(columns, dim=-2)


def _assert_close_per_order(got: Tensor, expected: Tensor, rtol: float) -> None:
    """Close entry by entry, each derivative order on its own scale (high orders are large)."""
    assert got.shape == expected.shape
    for k in range(expected.shape[-1]):
        a, b = got[..., k], expected[..., k]
        scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * scale, msg=lambda m: f"order {k}: {m}")


def _estimate(f: object, x: Tensor, backend: str, seed: int = 0, samples: int = 5, dims: object = None,
              **kwargs: object) -> Derivatives:
    request = Bilaplacian(samples=samples, dims=dims, generator=torch.Generator().manual_seed(seed))
    reference = third_order_reference(f) if backend == "autograd" else f
    return derivatives(reference, x, hessian=request, backend=backend, **kwargs)


# ----------------------------------------------------------------------------- directional derivatives


@pytest.mark.parametrize("per_sample", [False, True], ids=["shared-v", "per-sample-v"])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("arch", corpus())
def test_directional_float64(arch: Architecture, order: int, per_sample: bool) -> None:
    f = arch()
    x, v = sample_x(N, arch.d), _direction(arch, per_sample)
    got = directional_derivatives(f, x, v, order, backend="kernel", create_graph=False)
    expected = _reference_directional(f, x, v, order, create_graph=False)
    assert got.shape == ((N, order + 1) if arch.outputs == 1 else (N, arch.outputs, order + 1))
    _assert_close_per_order(got, expected, rtol=1e-9)


@pytest.mark.parametrize("arch", corpus("siren", "hard_boundary", "residual", "modified_mlp", "quotient",
                                        "layer_norm_mlp", "softplus_output", "vector_swish"))
def test_parameter_gradients_of_a_directional_loss(arch: Architecture) -> None:
    f = arch()
    params = parameters_of(f)
    x, v = sample_x(N, arch.d), _direction(arch, per_sample=True)

    def loss(coefficients: Tensor) -> Tensor:  # a KdV-type residual: u_vvv + u u_v, plus the value
        return (coefficients[..., 3] + coefficients[..., 0] * coefficients[..., 1]).pow(2).mean() \
            + coefficients[..., 4].pow(2).mean()

    got = torch.autograd.grad(loss(directional_derivatives(f, x, v, 4, backend="kernel", create_graph=True)),
                              params)
    expected = torch.autograd.grad(loss(_reference_directional(f, x, v, 4, create_graph=True)), params)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * max(1.0, b.abs().max().item()))


def test_gradcheck_in_x_and_v() -> None:
    arch = corpus("hard_boundary")[0].values[0]
    f = arch()
    x = sample_x(3, arch.d, scale=0.3).requires_grad_(True)
    v = _direction(arch, per_sample=True, n=3).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda t, w: directional_derivatives(f, t, w, 3, backend="kernel", create_graph=True), (x, v))


@pytest.mark.parametrize("arch", corpus("looped_mlp", "fourier_features", "product", "vector_swish",
                                        "special_functions"))
def test_directional_float32(arch: Architecture) -> None:
    x, v = sample_x(N, arch.d, torch.float32), _direction(arch, False, dtype=torch.float32)
    got = directional_derivatives(arch(torch.float32), x, v, 5, backend="kernel", create_graph=False)
    assert got.dtype == torch.float32
    expected = _reference_directional(arch(), x.double(), v.double(), 5, create_graph=False)
    _assert_close_per_order(got.double(), expected, rtol=1e-4)


@pytest.mark.parametrize("per_sample", [False, True], ids=["shared-v", "per-sample-v"])
@pytest.mark.parametrize("arch", corpus("hard_boundary", "vector_swish"))
def test_directional_empty_batch(arch: Architecture, per_sample: bool) -> None:
    x, v = sample_x(0, arch.d), _direction(arch, per_sample, n=0)
    got = directional_derivatives(arch(), x, v, 4, backend="kernel")
    assert got.shape == ((0, 5) if arch.outputs == 1 else (0, arch.outputs, 5))


def test_a_single_point_and_scalar_inputs() -> None:
    arch = corpus("siren")[0].values[0]
    f = arch()
    x, v = sample_x(1, arch.d)[0], _direction(arch, False)
    got = directional_derivatives(f, x, v, 6, backend="kernel")
    assert got.shape == (7,)
    _assert_close_per_order(got, _reference_directional(f, x, v, 6), rtol=1e-9)
    s = torch.linspace(-1, 1, 5, dtype=torch.float64)
    scalar = directional_derivatives(lambda t: torch.sin(2 * t) * t, s, torch.tensor(1.0, dtype=torch.float64), 4,
                                     backend="kernel")
    expected = directional_derivatives(lambda t: torch.sin(2 * t) * t, s, torch.tensor(1.0, dtype=torch.float64), 4,
                                       backend="autograd")
    _assert_close_per_order(scalar, expected, rtol=1e-9)


# ----------------------------------------------------------------------------- the randomized bi-Laplacian


@pytest.mark.parametrize("dims", [None, [2, 0]], ids=["all", "dims"])
@pytest.mark.parametrize("arch", corpus())
def test_randomized_bilaplacian_float64(arch: Architecture, dims: object) -> None:
    f = arch()
    x = sample_x(N, arch.d)
    dims = None if dims is None else [arch.d - 1, 0]
    got = _estimate(f, x, "kernel", dims=dims, create_graph=False)
    assert (got.engine, got.algorithm) == ("taylor", "traced")
    again = _estimate(f, x, "kernel", dims=dims, create_graph=False)  # the same generator state: the same draw
    torch.testing.assert_close(got.bilaplacian, again.bilaplacian, rtol=0, atol=0)
    expected = _estimate(f, x, "autograd", dims=dims, create_graph=False)
    assert got.bilaplacian.shape == ((N,) if arch.outputs == 1 else (N, arch.outputs))
    for field in ("value", "gradient", "bilaplacian"):
        a, b = getattr(got, field), getattr(expected, field)
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * max(1.0, b.abs().max().item()))
    other = _estimate(f, x, "kernel", seed=1, dims=dims, create_graph=False)
    assert not torch.equal(other.bilaplacian, got.bilaplacian)  # another draw


@pytest.mark.parametrize("arch", corpus("siren", "hard_boundary", "product", "layer_norm_mlp", "exp_output"))
def test_parameter_gradients_of_a_randomized_bilaplacian_loss(arch: Architecture) -> None:
    f = arch()
    params = parameters_of(f)
    x = sample_x(N, arch.d)

    def loss(result: Derivatives) -> Tensor:
        return (result.bilaplacian**2).mean() + (result.gradient**2).mean() + (result.value**2).mean()

    got = torch.autograd.grad(loss(_estimate(f, x, "kernel", create_graph=True)), params)
    expected = torch.autograd.grad(loss(_estimate(f, x, "autograd", create_graph=True)), params)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * max(1.0, b.abs().max().item()))


def test_randomized_bilaplacian_float32_empty_batch_and_gradcheck() -> None:
    arch = corpus("fourier_features")[0].values[0]
    x = sample_x(N, arch.d, torch.float32)
    got = _estimate(arch(torch.float32), x, "kernel", create_graph=False)
    expected = _estimate(arch(torch.float32), x, "autograd", create_graph=False)  # the same float32 draws
    assert got.bilaplacian.dtype == torch.float32
    scale = expected.bilaplacian.abs().max().item()
    torch.testing.assert_close(got.bilaplacian, expected.bilaplacian, rtol=1e-4, atol=1e-4 * scale)
    empty = _estimate(arch(), sample_x(0, arch.d), "kernel")
    assert empty.bilaplacian.shape == (0,) and empty.gradient.shape == (0, arch.d)
    f = corpus("hard_boundary")[0].values[0]()
    t = sample_x(3, 2, scale=0.3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda y: _estimate(f, y, "kernel", create_graph=True).bilaplacian, (t,))


def test_auto_serves_the_randomized_bilaplacian_on_the_taylor_engine() -> None:
    f = corpus("hard_boundary")[0].values[0]()
    result = _estimate(f, sample_x(N, 2), "auto")
    assert (result.engine, result.algorithm) == ("taylor", "traced")
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    assert _estimate(net, sample_x(N, 2), "auto").algorithm == "univariate"  # a plan


def test_auto_directional_uses_the_taylor_engine_from_order_three(monkeypatch: pytest.MonkeyPatch) -> None:
    arch = corpus("residual")[0].values[0]
    f, x, v = arch(), sample_x(N, 3), _direction(arch, False)
    expected = {order: _reference_directional(f, x, v, order, create_graph=False) for order in (1, 3, 7, 8)}
    calls: list[int] = []
    autograd_directional = directional_api.autograd_engine.directional

    def counted(f: object, x: Tensor, v: Tensor, order: int, **kwargs: object) -> Tensor:
        calls.append(order)
        return autograd_directional(f, x, v, order, **kwargs)

    monkeypatch.setattr(directional_api.autograd_engine, "directional", counted)
    for order, create_graph in ((1, False), (3, False), (7, True), (8, False), (8, True)):
        got = directional_derivatives(f, x, v, order, create_graph=create_graph)
        _assert_close_per_order(got, expected[order], rtol=1e-9)
    assert calls == [1, 8]  # below order 3, and a graph through order 8 (phi^(9)): the autograd engine


# ----------------------------------------------------------------------------- refusals


def _erf_from_the_table(v: Tensor, order: int) -> list[Tensor]:
    """erf^(0..order) at v from the elementwise op: a torch-op rule's phi for erf."""
    return list(elementwise_ops.elementwise_derivatives(v, "erf", (), order).unbind(0))


def _limited(phi: object, served: int) -> object:
    def limited(v: Tensor, order: int) -> list[Tensor]:
        return phi(v, order)  # type: ignore[operator]
    limited.max_order = served  # type: ignore[attr-defined]
    return limited


@pytest.fixture
def erf_to_order_four(monkeypatch: pytest.MonkeyPatch) -> None:
    """erf's rule with derivatives to order 4 only (every shipped torch-op rule serves every order)."""
    phi = _limited(_erf_from_the_table, 4)
    monkeypatch.setitem(traced_rules.RULES, torch.ops.aten.erf.default,
                        lambda slots, jet: unary_rules.torch_unary(slots, jet, phi))
    hoderiv_ext.clear_trace_cache()
    yield
    hoderiv_ext.clear_trace_cache()


class ErfNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(2, 8), nn.Linear(8, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.erf(self.hidden(x)))


def test_an_order_a_rule_does_not_serve_is_refused_naming_the_op(erf_to_order_four: None) -> None:
    torch.manual_seed(0)
    f = ErfNet().double()
    x, v = sample_x(N, 2), torch.tensor([0.3, -1.2], dtype=torch.float64)
    with pytest.raises(NotServed, match=r"order 5 are not served: .*up to order 4 \(aten\.erf\.default at "):
        directional_derivatives(f, x, v, 5, backend="kernel")
    _assert_close_per_order(directional_derivatives(f, x, v, 4, backend="kernel"),
                            directional_derivatives(f, x, v, 4, backend="autograd"), rtol=1e-9)
    assert _estimate(f, x, "kernel").algorithm == "traced"  # order 4: served
    assert derivatives(f, x, "laplacian", backend="kernel").algorithm == "traced"  # other requests unaffected
    info = [entry for entry in hoderiv_ext.trace_cache_info() if entry["function"] == "ErfNet"]
    assert info and info[0]["refused"] is None
    with pytest.warns(RuntimeWarning, match="directional_derivatives.*aten.erf.default"):
        got = directional_derivatives(f, x, v, 6)  # auto: the autograd engine, one warning
    torch.testing.assert_close(got, directional_derivatives(f, x, v, 6, backend="autograd"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        directional_derivatives(f, x, v, 6)  # the same reason: no second warning


def test_a_randomized_bilaplacian_below_order_four_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    phi = _limited(_erf_from_the_table, 3)
    monkeypatch.setitem(traced_rules.RULES, torch.ops.aten.erf.default,
                        lambda slots, jet: unary_rules.torch_unary(slots, jet, phi))
    hoderiv_ext.clear_trace_cache()
    try:
        torch.manual_seed(0)
        f = ErfNet().double()
        x = sample_x(N, 2)
        with pytest.raises(NotServed, match=r"order 4 are not served: .*aten\.erf\.default"):
            _estimate(f, x, "kernel")
        with pytest.warns(RuntimeWarning, match="aten.erf.default"):
            result = _estimate(f, x, "auto")
        assert result.engine == "autograd"
        torch.testing.assert_close(result.bilaplacian, _estimate(f, x, "autograd").bilaplacian)
    finally:
        hoderiv_ext.clear_trace_cache()


def test_other_refusals() -> None:
    arch = corpus("siren")[0].values[0]
    f, x, v = arch(), sample_x(N, 3), _direction(arch, False)
    with pytest.raises(NotServed, match="exceeds the kernels' highest order 8"):
        directional_derivatives(f, x, v, 9, backend="kernel")
    assert directional_derivatives(f, x, v, 9).shape == (N, 10)  # auto: the autograd engine
    with pytest.raises(NotServed, match=r"no Taylor rule for aten\.i0"):
        directional_derivatives(lambda t: torch.special.i0(t).sum(-1), x, v, 3, backend="kernel")
    mixing = lambda t: (t - t.mean(0)).pow(2).sum(-1)  # noqa: E731
    with pytest.raises(ValueError, match="mixes samples"):
        directional_derivatives(mixing, x, v, 3, backend="kernel")
    expected = directional_derivatives(mixing, x, v, 3, backend="autograd")
    torch.testing.assert_close(directional_derivatives(mixing, x, v, 3), expected)  # auto: as before


# ----------------------------------------------------------------------------- the fused op, when built


@pytest.mark.skipif(unary_rules.fused_univariate() is None, reason="this build has no jet_univariate op")
@pytest.mark.parametrize("arch", corpus("residual", "hard_boundary", "softplus_output"))
def test_the_fused_univariate_op_matches_the_composition(arch: Architecture, monkeypatch: pytest.MonkeyPatch) -> None:
    f = arch()
    params = parameters_of(f)
    x, v = sample_x(N, arch.d), _direction(arch, per_sample=True)
    fused = directional_derivatives(f, x, v, 6, backend="kernel")
    fused_grads = torch.autograd.grad(fused[..., -1].pow(2).sum(), params)
    monkeypatch.setattr(unary_rules, "fused_univariate", lambda: None)
    composed = directional_derivatives(f, x, v, 6, backend="kernel")
    _assert_close_per_order(fused, composed, rtol=1e-11)
    for a, b in zip(fused_grads, torch.autograd.grad(composed[..., -1].pow(2).sum(), params)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * max(1.0, b.abs().max().item()))
