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
