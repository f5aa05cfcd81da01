"""derivatives inside captured graphs: no dynamo graph breaks (CPU), CUDA graph capture and replay (GPU).

A compiled training step must stay one graph (``torch._dynamo.explain``), and a captured CUDA graph
must replay the call: no host synchronisation, no host-to-device copy, no allocation that changes
between calls.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from hoderiv_ext import Bilaplacian, Laplacian, derivatives, directional_derivatives

from conftest import make_mlp, needs_cuda

REQUESTS = {
    "none": None,
    "full": "full",
    "diagonal": "diagonal",
    "laplacian": "laplacian",
    "rows": [0, 2],
    "partial": Laplacian(dims=[0, 1]),
    "bilaplacian": Bilaplacian(),
}


def _second(result):
    for name in ("hessian", "hessian_rows", "hessian_diagonal", "laplacian", "bilaplacian"):
        tensor = getattr(result, name)
        if tensor is not None:
            return tensor
    return result.value


@pytest.mark.parametrize("kind", list(REQUESTS))
def test_a_training_step_is_one_graph(kind):
    torch._dynamo.reset()
    net = make_mlp(3, [8, 8], 1, nn.Tanh, torch.float32, "cpu")
    x = torch.randn(16, 3)
    request = REQUESTS[kind]

    def loss(x_in: torch.Tensor) -> torch.Tensor:
        result = derivatives(net, x_in, hessian=request, backend="kernel", check_independence=False)
        return _second(result).pow(2).mean() + result.gradient.pow(2).mean()

    explained = torch._dynamo.explain(loss)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


# Package constants a compiled call must not guard on entry by entry: every guard is checked on every call
# (dynamo's cache lookup), and a lookup in a dict keyed by dataclasses guarded on all of its 56 keys.
UNGUARDED_TABLES = ("_DROPPED_AXES", "KERNEL_FUNCTION_NAMES")


@pytest.mark.parametrize("kind", ["full", "laplacian", "rows"])
def test_a_compiled_call_guards_on_no_constant_table(kind):
    torch._dynamo.reset()
    net = make_mlp(3, [8, 8], 1, nn.Tanh, torch.float32, "cpu")
    x = torch.randn(16, 3)

    def call(x_in: torch.Tensor) -> torch.Tensor:
        result = derivatives(net, x_in, hessian=REQUESTS[kind], backend="kernel", check_independence=False)
        return _second(result)

    explained = torch._dynamo.explain(call)(x)
    assert explained.graph_count == 1
    guarded = [guard.name for guard in explained.out_guards if any(t in guard.name for t in UNGUARDED_TABLES)]
    assert not guarded, guarded[:5]


@pytest.mark.parametrize("kind", ["laplacian", "bilaplacian"])
def test_compiling_a_training_step_raises_no_warning_about_the_package(kind):
    # Regression: dynamo warned "Dynamo detected a call to a `functools.lru_cache`-wrapped function" at the
    # package's cached layouts on every compile. Dynamo warns once per process: its record is cleared first.
    torch._dynamo.reset()
    torch._dynamo.utils.warn_once_cache.clear()
    net = make_mlp(3, [8], 1, nn.Tanh, torch.float32, "cpu")
    x = torch.randn(16, 3)
    request = REQUESTS[kind]

    def loss(x_in: torch.Tensor) -> torch.Tensor:
        result = derivatives(net, x_in, hessian=request, backend="kernel", check_independence=False)
        return _second(result).pow(2).mean() + result.gradient.pow(2).mean()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = torch.compile(loss, fullgraph=True)
        compiled(x).backward()
        expected = loss(x)
    about_us = [str(w.message) for w in caught if "lru_cache" in str(w.message) or "hoderiv_ext" in str(w.message)]
    assert about_us == []
    torch.testing.assert_close(compiled(x), expected)


def test_a_weighted_laplacian_with_per_sample_sigma_is_one_graph():
    torch._dynamo.reset()
    net = make_mlp(3, [8], 1, nn.Tanh, torch.float32, "cpu")
    x, sigma = torch.randn(16, 3), torch.randn(16, 3, 2)

    def loss(x_in: torch.Tensor, sigma_in: torch.Tensor) -> torch.Tensor:
        result = derivatives(net, x_in, hessian=Laplacian(weights=sigma_in), backend="kernel",
                             check_independence=False)
        return result.laplacian.pow(2).mean()

    explained = torch._dynamo.explain(loss)(x, sigma)
    assert explained.graph_break_count == 0, explained.break_reasons


@needs_cuda
@pytest.mark.parametrize("kind", ["none", "full", "laplacian", "rows", "bilaplacian"])
def test_cuda_graph_capture_replays_the_call(kind):
    net = make_mlp(3, [64, 64], 1, nn.Tanh, torch.float32, "cuda")
    request = REQUESTS[kind]
    static_x = torch.randn(256, 3, device="cuda")

    def call() -> torch.Tensor:
        result = derivatives(net, static_x, hessian=request, backend="kernel", create_graph=False)
        return _second(result)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the graph (plan built, kernels loaded)
        for _ in range(3):
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = call()
    for _ in range(2):
        static_x.copy_(torch.randn(256, 3, device="cuda"))
        graph.replay()
        torch.cuda.synchronize()
        torch.testing.assert_close(static_out, call(), rtol=1e-5, atol=1e-5)


@needs_cuda
def test_reduce_overhead_training_step():
    torch._dynamo.reset()
    net = make_mlp(3, [64, 64], 1, nn.Tanh, torch.float32, "cuda")
    x = torch.randn(1024, 3, device="cuda")

    def loss(x_in: torch.Tensor) -> torch.Tensor:
        result = derivatives(net, x_in, hessian="laplacian", backend="kernel", check_independence=False)
        return (result.laplacian + 1).pow(2).mean() + result.gradient.pow(2).mean()

    eager = loss(x)
    eager_grads = torch.autograd.grad(eager, list(net.parameters()))
    compiled = torch.compile(loss, mode="reduce-overhead", fullgraph=True)
    for _ in range(3):
        value = compiled(x)
        grads = torch.autograd.grad(value, list(net.parameters()))
    torch.testing.assert_close(value, eager, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- traced functions


class _Sine(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


def _hard_bc_pinn() -> tuple[nn.Module, object]:
    """A SIREN-style network (custom Sine modules) under a hard boundary-condition transform: traced."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), _Sine(), nn.Linear(8, 8), _Sine(), nn.Linear(8, 1))
    return net, lambda x: x[:, :1] * (1 - x[:, :1]) * net(x)


TRACED_REQUESTS = {**REQUESTS, "weighted": Laplacian(weights=torch.randn(3, 2))}


@pytest.mark.parametrize("kind", list(TRACED_REQUESTS))
def test_a_traced_training_step_is_one_graph_once_traced(kind):
    torch._dynamo.reset()
    _, f = _hard_bc_pinn()
    x = torch.randn(16, 3)
    request = TRACED_REQUESTS[kind]

    def loss(x_in: torch.Tensor) -> torch.Tensor:
        result = derivatives(f, x_in, hessian=request, backend="kernel")
        assert result.engine == "taylor"
        return _second(result).pow(2).mean() + result.gradient.pow(2).mean()

    loss(x)  # the eager call traces f
    explained = torch._dynamo.explain(loss)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_directional_derivatives_of_a_traced_function_are_one_graph_once_traced():
    torch._dynamo.reset()
    _, f = _hard_bc_pinn()
    x, v = torch.randn(16, 3), torch.randn(3)

    def loss(x_in: torch.Tensor) -> torch.Tensor:
        return directional_derivatives(f, x_in, v, order=4, backend="kernel").pow(2).mean()

    loss(x)
    explained = torch._dynamo.explain(loss)(x)
    assert explained.graph_break_count == 0, explained.break_reasons


def test_a_compiled_traced_training_step_matches_eager():
    torch._dynamo.reset()
    net, f = _hard_bc_pinn()
    x = torch.randn(32, 3)

    def loss(x_in: torch.Tensor) -> torch.Tensor:
        result = derivatives(f, x_in, hessian="laplacian", backend="kernel")
        return (result.laplacian + result.value).pow(2).mean()

    expected = loss(x)
    expected_grads = torch.autograd.grad(expected, list(net.parameters()))
    compiled = torch.compile(loss, fullgraph=True)
    got = compiled(x)
    got_grads = torch.autograd.grad(got, list(net.parameters()))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # a training update: the compiled step reads the parameters live
        net[0].weight.mul_(0.5)
    torch.testing.assert_close(compiled(x), loss(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hessian", ["full", [0, 2, 3, 4, 5, 7]], ids=["full", "rows"])
def test_a_traced_hessian_served_eagerly_in_mixed_mode_is_one_graph_under_compile(hessian):
    """Eagerly a traced full Hessian at d = 8 (or 6 of 8 rows) runs mixed mode, whose reverse sweep dynamo
    cannot capture; under torch.compile the selection picks forward Taylor mode without a graph break."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    f = lambda x: x[:, :1] * (1 - x[:, :1]) * net(x)  # noqa: E731
    x = torch.randn(16, 8)
    field = "hessian" if hessian == "full" else "hessian_rows"
    eager = derivatives(f, x, hessian=hessian, backend="kernel")
    assert eager.algorithm == "traced_mixed"

    def loss(x_in: torch.Tensor) -> torch.Tensor:
        return getattr(derivatives(f, x_in, hessian=hessian, backend="kernel"), field).pow(2).sum()

    explained = torch._dynamo.explain(loss)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    torch._dynamo.reset()
    got = torch.compile(loss, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(got, getattr(eager, field).pow(2).sum(), rtol=1e-5, atol=1e-5)


def test_a_traced_function_not_traced_yet_says_how_to_compile_it():
    from hoderiv_ext import clear_trace_cache

    torch._dynamo.reset()
    clear_trace_cache()
    _, f = _hard_bc_pinn()

    def loss(x_in: torch.Tensor) -> torch.Tensor:
        return derivatives(f, x_in, hessian="laplacian", backend="kernel").laplacian.sum()

    with pytest.raises(Exception, match="once outside torch.compile"):
        torch.compile(loss, fullgraph=True, backend="eager")(torch.randn(8, 3))
