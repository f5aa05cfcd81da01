"""A PINN training step through derivatives(backend="kernel") under torch.compile(fullgraph=True).

The Taylor engine's ops trace into one graph (fake kernels, autograd formulas); the compiled loss
and its parameter gradients equal eager mode.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hoderiv_ext import derivatives

from conftest import make_mlp


@pytest.mark.slow
def test_training_step_under_torch_compile_fullgraph():
    torch._dynamo.reset()
    net = make_mlp(2, [8, 8], 1, nn.Tanh, torch.float64, "cpu")
    x = torch.randn(16, 2, dtype=torch.float64)

    def pinn_loss(x_in: torch.Tensor) -> torch.Tensor:
        result = derivatives(net, x_in, hessian="laplacian", backend="kernel", check_independence=False)
        return (result.laplacian + 1.0).pow(2).mean() + result.gradient.pow(2).mean() + result.value.pow(2).mean()

    compiled = torch.compile(pinn_loss, fullgraph=True, backend="aot_eager")
    eager_loss = pinn_loss(x)
    eager_grads = torch.autograd.grad(eager_loss, list(net.parameters()))
    compiled_loss = compiled(x)
    compiled_grads = torch.autograd.grad(compiled_loss, list(net.parameters()))
    torch.testing.assert_close(compiled_loss, eager_loss)
    for a, b in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("d", [4, 9])  # the fused per-sample reduction (d <= 8) and the batched matrix product
@pytest.mark.parametrize("request_kind", ["full", "all rows"])
def test_compiled_mixed_mode_contraction_equals_eager(d, request_kind):
    """Mixed mode contracts T diag(c) T^T per sample differently under torch.compile for d <= 8
    (mixed.COMPILED_REDUCTION_MAX_D): the values and the parameter gradients must equal eager mode."""
    torch._dynamo.reset()
    net = make_mlp(d, [8, 8], 1, nn.Tanh, torch.float64, "cpu")
    x = torch.randn(16, d, dtype=torch.float64)
    hessian = "full" if request_kind == "full" else list(range(d))
    assert derivatives(net, x, hessian=hessian, backend="kernel").algorithm == "mixed"

    def loss(x_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        result = derivatives(net, x_in, hessian=hessian, backend="kernel", check_independence=False)
        second = result.hessian if request_kind == "full" else result.hessian_rows
        penalty = (second * x_in.sum(1).view(-1, 1, 1)).pow(2).mean() + result.gradient.pow(2).mean()
        return second, penalty + result.value.pow(2).mean()

    eager_second, eager_loss = loss(x)
    eager_grads = torch.autograd.grad(eager_loss, list(net.parameters()))
    compiled_second, compiled_loss = torch.compile(loss, fullgraph=True, backend="aot_eager")(x)
    compiled_grads = torch.autograd.grad(compiled_loss, list(net.parameters()))
    torch.testing.assert_close(compiled_second, eager_second, rtol=1e-12, atol=1e-12)
    for a, b in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


_INDUCTOR_TRAINING = """
import sys, torch
from torch import nn
from hoderiv_ext import derivatives
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(3, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
x = torch.rand(2048, 3)
with torch.inference_mode():  # modes before the compile must not leak into the compiled graph
    derivatives(net, x, hessian="laplacian")
def loss_fn(x):
    r = derivatives(net, x, hessian="laplacian", backend="kernel", check_independence=False)
    return r.value.pow(2).mean() + r.gradient.pow(2).mean() + (r.laplacian + 1).pow(2).mean()
eager = loss_fn(x)
eager_grads = torch.autograd.grad(eager, list(net.parameters()))
compiled = torch.compile(loss_fn, fullgraph=True)
for step in range(2):
    loss = compiled(x)
    loss.backward()
torch.testing.assert_close(loss, eager)
for p, g in zip(net.parameters(), eager_grads):
    torch.testing.assert_close(p.grad, 2 * g, rtol=1e-4, atol=1e-6)
print("compiled training ok")
"""


@pytest.mark.slow
def test_inductor_training_step_twice_through_the_autograd_cache(tmp_path):
    """Regression (torch 2.13): a compiled PINN training step crashed in the AOT-autograd cache.

    Two processes share one inductor cache directory, so the second loads the
    first's cache entries; the step must give eager's loss and gradients in both.
    """
    import os
    import subprocess
    import sys

    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))
    for _ in range(2):  # cwd outside the source tree: the installed package is imported
        result = subprocess.run([sys.executable, "-c", _INDUCTOR_TRAINING], env=env, capture_output=True, text=True,
                                timeout=600, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-4000:]
        assert "compiled training ok" in result.stdout
